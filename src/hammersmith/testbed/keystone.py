"""An optional real Keystone (SQLite, fernet tokens) for the testbed: `testbed up --with keystone`.

Production clouds authenticate every request, and Ironic's and Neutron's new-default RBAC
decide what a token may see; only a real Keystone shows whether hammersmith's account can read
the whole fleet and act on it. Same pattern as Neutron: its own cached virtualenv, 127.0.0.1,
stopped by PID, served by gunicorn through a shim (oslo.config reads sys.argv).
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import openstack
from openstack.connection import Connection

from hammersmith.errors import TestbedError
from hammersmith.testbed import process, venvs

KEYSTONE_VERSION = "30.0.0"
REGION = "RegionOne"
#: the project of the services' own accounts; Ironic gives its `service` role elevated access
SERVICE_PROJECT = "service"
#: account -> roles in the service project (admin: Keystone's bootstrap admin, in project admin)
ROLES = {
    "ironic": ("admin", "service"),
    "neutron": ("admin", "service"),
    # least privilege, as docs/config.md tells operators: service for Ironic's elevated access (every
    # node, port and allocation; maintenance, provision actions, extra, VIF detach), every Neutron port and
    # Placement; member (implies reader) for the smoke's own network and port. Never admin: a project's
    # admin is Keystone's admin too. Floating IPs of every project come from a Neutron policy override.
    "hammersmith": ("member", "service"),
}

KEYSTONE_CONF = """\
# written by hammersmith testbed
[DEFAULT]
log_file = {dir}/keystone.log

[database]
connection = {database_url}

[token]
provider = fernet

[fernet_tokens]
key_repository = {dir}/fernet-keys

[credential]
key_repository = {dir}/credential-keys

[identity]
# the fewest bcrypt rounds: a testbed login need not cost a production password hash
password_hash_rounds = 4

[oslo_policy]
policy_file = {dir}/policy.yaml
"""
#: docs/config.md's override: hammersmith's `service` role lists every project (by default only an admin, who is
#: every project's admin, or a system- or domain-scoped reader may; hammersmith logs in scoped to one project)
POLICY = (
    '"identity:list_projects": "(rule:admin_required) or (role:reader and system_scope:all)'
    ' or (role:reader and domain_id:%(target.domain_id)s) or role:service"\n'
    # disabled users (orphans) and the e-mail addresses notices go to
    '"identity:list_users": "(rule:admin_required) or (role:reader and system_scope:all)'
    ' or (role:reader and domain_id:%(target.domain_id)s) or role:service"\n'
    '"identity:get_user": "(rule:admin_required) or (role:reader and system_scope:all)'
    ' or (role:reader and token.domain.id:%(target.user.domain_id)s) or user_id:%(target.user.id)s or role:service"\n'
    '"identity:get_project": "(rule:admin_required) or (role:reader and system_scope:all)'
    " or (role:reader and domain_id:%(target.project.domain_id)s) or project_id:%(target.project.id)s"
    ' or role:service"\n'
)
SHIM = """\
import sys
sys.argv = sys.argv[:1]  # oslo.config parses argv; gunicorn's are not Keystone's
from keystone.wsgi.api import application  # noqa: E402,F401
"""


def venv_dir() -> Path:
    return venvs.venv_path("keystone", KEYSTONE_VERSION)


def ensure_venv() -> Path:
    """pymysql: the full tier's Keystone is on MariaDB."""
    return venvs.ensure("keystone", KEYSTONE_VERSION, "gunicorn", "pymysql")


def auth_options(auth_url: str, user: str, password: str) -> str:
    """The oslo.config lines a service logs in to Keystone with (keystonemiddleware, keystoneauth)."""
    return (
        f"auth_type = password\nauth_url = {auth_url}\nusername = {user}\npassword = {password}\n"
        f"project_name = {SERVICE_PROJECT}\nuser_domain_name = Default\nproject_domain_name = Default\n"
        f"region_name = {REGION}\n"
    )


def authtoken_section(auth_url: str, user: str, password: str) -> str:
    """keystonemiddleware's section: how a service validates the tokens it is sent."""
    return f"[keystone_authtoken]\nwww_authenticate_uri = {auth_url}\n" + auth_options(auth_url, user, password)


def admin_auth(auth_url: str, password: str, system: bool = False) -> dict[str, Any]:
    """openstack.connect arguments for the bootstrap admin: project-scoped (Keystone, Neutron) or
    system-scoped (Ironic)."""
    scope = {"system_scope": "all"} if system else {"project_name": "admin", "project_domain_name": "Default"}
    return {
        "auth_type": "v3password",
        "auth": {
            "auth_url": auth_url,
            "username": "admin",
            "password": password,
            "user_domain_name": "Default",
            **scope,
        },
        "region_name": REGION,
        "identity_api_version": "3",
    }


def admin(auth_url: str, password: str, system: bool = False) -> Connection:
    return openstack.connect(load_yaml_config=False, load_envvars=False, **admin_auth(auth_url, password, system))


def token(auth_url: str, password: str) -> str:
    """A system-scoped admin token, for the testbed's own readiness checks."""
    conn = admin(auth_url, password, system=True)
    try:
        return str(conn.auth_token)
    finally:
        conn.close()


def register(
    auth_url: str,
    passwords: dict[str, str],
    endpoints: dict[str, str],
    accounts: Mapping[str, tuple[str, ...]] = ROLES,
) -> None:
    """The catalog (service type -> URL, public/internal/admin) and the service project's accounts
    (`accounts`: user -> roles; a tier with more services passes theirs too)."""
    conn = admin(auth_url, passwords["admin"])
    try:
        ident = conn.identity
        for service_type, url in endpoints.items():
            service = ident.create_service(name=service_type, type=service_type)
            for interface in ("public", "internal", "admin"):
                ident.create_endpoint(service_id=service.id, interface=interface, url=url, region_id=REGION)
        # a tier registers its services in steps: the service project may exist already
        project = ident.find_project(SERVICE_PROJECT, domain_id="default") or ident.create_project(
            name=SERVICE_PROJECT, domain_id="default"
        )
        roles = {role.name: role.id for role in ident.roles()}
        for name, granted in accounts.items():
            user = ident.create_user(name=name, password=passwords[name], domain_id="default")
            for role in granted:
                ident.assign_project_role_to_user(project.id, user.id, roles[role])
    finally:
        conn.close()


def set_password(auth_url: str, admin_password: str, user: str, password: str) -> None:
    conn = admin(auth_url, admin_password)
    try:
        conn.identity.update_user(conn.identity.find_user(user, ignore_missing=False), password=password)
    finally:
        conn.close()


class Keystone:
    """One Keystone with its config, SQLite database and keys under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.log = self.dir / "keystone.stdout"

    def _manage(self, *commands: list[str]) -> None:
        """Run keystone-manage commands concurrently (they must be independent); fail if any failed."""
        base = [str(venv_dir() / "bin" / "keystone-manage"), "--config-file", str(self.dir / "keystone.conf")]
        procs = [
            subprocess.Popen(
                [*base, *command], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True
            )
            for command in commands
        ]
        outputs = [proc.communicate()[0] for proc in procs]
        for command, proc, output in zip(commands, procs, outputs, strict=True):
            if proc.returncode:
                raise TestbedError(f"keystone-manage {command[0]} failed", hint=output[-2000:])

    def prepare(self, port: int, admin_password: str, database_url: str | None = None) -> None:
        """Config, a fresh database, new keys, bootstrap. The database: `database_url` by db_sync (the full tier's
        MariaDB: a dozen services logging in at once lock SQLite, and Keystone answers 500), else SQLite from a
        schema cached beside the venv (made once by db_sync)."""
        ensure_venv()
        for stale in ("fernet-keys", "credential-keys"):
            shutil.rmtree(self.dir / stale, ignore_errors=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        sqlite = self.dir / "keystone.sqlite"
        (self.dir / "keystone.conf").write_text(
            KEYSTONE_CONF.format(dir=self.dir, database_url=database_url or f"sqlite:///{sqlite}")
        )
        (self.dir / "policy.yaml").write_text(POLICY)
        (self.dir / "ks_wsgi.py").write_text(SHIM)
        if database_url:
            self._manage(["db_sync"])
        else:
            venvs.cached_schema(sqlite, venv_dir() / "empty-keystone.sqlite", lambda: self._manage(["db_sync"]))
        owner = [
            "--keystone-user",
            pwd.getpwuid(os.getuid()).pw_name,
            "--keystone-group",
            grp.getgrgid(os.getgid()).gr_name,
        ]
        self._manage(["fernet_setup", *owner], ["credential_setup", *owner])
        url = f"http://127.0.0.1:{port}/v3/"
        self._manage(  # it checks the fernet key repository
            [
                "bootstrap",
                f"--bootstrap-password={admin_password}",
                f"--bootstrap-region-id={REGION}",
                *(f"--bootstrap-{interface}-url={url}" for interface in ("admin", "internal", "public")),
            ]
        )

    def start(self, port: int, timeout: float = 60.0) -> int:
        env = {"OS_KEYSTONE_CONFIG_FILES": str(self.dir / "keystone.conf")}
        argv = venvs.gunicorn(venv_dir(), self.dir, port, "ks_wsgi:application", threads=4, timeout=60)
        return process.serve("Keystone", argv, self.log, self.dir, env, f"http://127.0.0.1:{port}/v3", (200,), timeout)
