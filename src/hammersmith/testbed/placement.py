"""A real Placement (behind Keystone; SQLite, or a database URL) for the testbed's full tier.

Nova's Ironic driver keeps one resource provider per Ironic node in Placement, and a provider
left behind by a deleted node is a fault operators meet; only a real Placement shows what
hammersmith reads there. Same pattern as Keystone: its own cached virtualenv, 127.0.0.1,
stopped by PID, served by gunicorn. No shim: Placement's WSGI module hands oslo.config an
empty argv, and finds its config through OS_PLACEMENT_CONFIG_DIR.
"""

from __future__ import annotations

from pathlib import Path

from hammersmith.testbed import keystone, process, venvs

PLACEMENT_VERSION = "16.0.0"
USER = "placement"
SERVICE_TYPE = "placement"
#: its account's roles in the service project: `service` lets keystonemiddleware validate tokens,
#: and is what Placement's defaults ask of the services (Nova) that write providers
ROLES = ("service",)

PLACEMENT_CONF = """\
# written by hammersmith testbed
[DEFAULT]
log_file = {dir}/placement.log

[placement_database]
connection = {database_url}

[api]
auth_strategy = keystone

{keystone}"""


def venv_dir() -> Path:
    return venvs.venv_path("openstack-placement", PLACEMENT_VERSION)


def ensure_venv() -> Path:
    """pymysql: for a later tier's MariaDB `database_url`."""
    return venvs.ensure("openstack-placement", PLACEMENT_VERSION, "gunicorn", "pymysql")


class Placement:
    """One Placement API with its config (and SQLite database, unless given another) under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.log = self.dir / "placement.stdout"

    def _sync(self) -> None:
        conf = str(self.dir / "placement.conf")
        process.run(
            [str(venv_dir() / "bin" / "placement-manage"), "--config-file", conf, "db", "sync"],
            "placement-manage db sync",
        )

    def prepare(self, auth_url: str, password: str, database_url: str | None = None) -> None:
        """Config (Keystone auth with the `placement` account) and a schema: on `database_url` by its migrations,
        else a fresh SQLite database copied from a template cached beside the venv (made once by db sync)."""
        ensure_venv()
        self.dir.mkdir(parents=True, exist_ok=True)
        db = self.dir / "placement.sqlite"
        (self.dir / "placement.conf").write_text(
            PLACEMENT_CONF.format(
                dir=self.dir,
                database_url=database_url or f"sqlite:///{db}",
                keystone=keystone.authtoken_section(auth_url, USER, password),
            )
        )
        if database_url:
            self._sync()
            return
        venvs.cached_schema(db, venv_dir() / "empty-placement.sqlite", self._sync)

    def start(self, port: int, timeout: float = 60.0) -> int:
        env = {"OS_PLACEMENT_CONFIG_DIR": str(self.dir)}
        argv = venvs.gunicorn(venv_dir(), self.dir, port, "placement.wsgi.api:application", threads=4, timeout=60)
        # 401: the app is loaded with its Keystone middleware (the root document needs no token)
        return process.serve(
            "Placement", argv, self.log, self.dir, env, f"http://127.0.0.1:{port}/resource_providers", (401,), timeout
        )
