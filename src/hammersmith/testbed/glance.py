"""A real Glance (behind Keystone; SQLite, or a database URL; file store) for the testbed's full tier.

Nova validates every boot's image against Glance, so the full tier's launches onto Ironic need
one. Same pattern as Keystone: its own cached virtualenv, 127.0.0.1, stopped by PID, served by
gunicorn (Glance has no standalone server any more). No shim: Glance's WSGI module hands
oslo.config an empty argv, and finds its config through OS_GLANCE_CONFIG_DIR.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hammersmith.testbed import keystone, process, venvs

GLANCE_VERSION = "33.0.0"
USER = "glance"
SERVICE_TYPE = "image"
#: its account's roles in the service project: `service` lets keystonemiddleware validate tokens
ROLES = ("service",)

GLANCE_CONF = """\
# written by hammersmith testbed
[DEFAULT]
log_file = {dir}/glance-api.log
enabled_backends = fs:file

[database]
connection = {database_url}

[glance_store]
default_backend = fs

[fs]
filesystem_store_datadir = {dir}/images

[os_glance_staging_store]
filesystem_store_datadir = {dir}/staging

[os_glance_tasks_store]
filesystem_store_datadir = {dir}/tasks

[paste_deploy]
flavor = keystone
config_file = {dir}/glance-api-paste.ini

[oslo_concurrency]
lock_path = {dir}/lock

{keystone}"""
#: every directory the config names: the image store and Glance's own reserved stores
DIRECTORIES = ("images", "staging", "tasks", "lock")


def venv_dir() -> Path:
    return venvs.venv_path("glance", GLANCE_VERSION)


def ensure_venv() -> Path:
    """pymysql: for a later tier's MariaDB `database_url`."""
    return venvs.ensure("glance", GLANCE_VERSION, "gunicorn", "pymysql")


class Glance:
    """One Glance API with its config, image files (and SQLite database, unless given another) under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.log = self.dir / "glance.stdout"

    def _sync(self) -> None:
        process.run(
            [str(venv_dir() / "bin" / "glance-manage"), "--config-file", str(self.dir / "glance-api.conf"), "db_sync"],
            "glance-manage db_sync",
        )

    def prepare(self, auth_url: str, password: str, database_url: str | None = None) -> None:
        """Config (Keystone auth with the `glance` account), an empty image store and a schema: on `database_url`
        by its migrations, else a fresh SQLite database copied from a template cached beside the venv (made
        once by db_sync, which runs Glance's migrations on SQLite too)."""
        ensure_venv()
        for name in DIRECTORIES:
            shutil.rmtree(self.dir / name, ignore_errors=True)
            (self.dir / name).mkdir(parents=True)
        db = self.dir / "glance.sqlite"
        (self.dir / "glance-api.conf").write_text(
            GLANCE_CONF.format(
                dir=self.dir,
                database_url=database_url or f"sqlite:///{db}",
                keystone=keystone.authtoken_section(auth_url, USER, password),
            )
        )
        shutil.copyfile(venv_dir() / "etc" / "glance" / "glance-api-paste.ini", self.dir / "glance-api-paste.ini")
        if database_url:
            self._sync()
            return
        venvs.cached_schema(db, venv_dir() / "empty-glance.sqlite", self._sync)

    def start(self, port: int, timeout: float = 60.0) -> int:
        env = {"OS_GLANCE_CONFIG_DIR": str(self.dir)}
        argv = venvs.gunicorn(venv_dir(), self.dir, port, "glance.wsgi.api:application", threads=4, timeout=120)
        # 401: the app is loaded with its Keystone middleware
        return process.serve(
            "Glance", argv, self.log, self.dir, env, f"http://127.0.0.1:{port}/v2/images", (401,), timeout
        )
