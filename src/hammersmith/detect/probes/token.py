"""token: a fresh password login through the site's clouds.yaml, as any user's first call."""

from __future__ import annotations

from hammersmith.detect.probes import ProbeContext, ProbeResult, probe, result, timed


@probe("token")
def token(ctx: ProbeContext) -> ProbeResult:
    """Issue a token: a fresh login (the cached one dropped first), timed."""
    if ctx.auth_type in ("none", "noauth", "admin_token"):
        return ProbeResult("token", "skipped", reason=f"auth_type {ctx.auth_type}: the site issues no tokens")
    step, _ = timed("issue", ctx.connection.login)
    return result("token", [step])
