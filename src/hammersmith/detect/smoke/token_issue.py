"""token-issue: a user's first call, a fresh password login."""

from __future__ import annotations

from hammersmith.detect.smoke import Skip, SmokeContext, scenario


@scenario("token-issue", set="cheap")
def token_issue(ctx: SmokeContext) -> None:
    """Log in afresh through clouds.yaml (skipped for auth_type none)."""
    auth_type = str(ctx.connection.conn.config.config.get("auth_type") or "password")
    if auth_type in ("none", "noauth", "admin_token"):
        raise Skip(f"auth_type {auth_type}: the site issues no tokens")
    ctx.connection.login()
