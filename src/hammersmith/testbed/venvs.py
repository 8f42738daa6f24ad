"""Cached virtualenvs for the testbed's OpenStack services: never the project's own environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from hammersmith.errors import TestbedError


def cache_dir() -> Path:
    return Path(os.environ.get("HAMMERSMITH_CACHE", Path.home() / ".cache" / "hammersmith"))


def venv_path(name: str, version: str) -> Path:
    return cache_dir() / f"{name}-{version}"


def ensure(name: str, version: str, *extra: str) -> Path:
    """Install `name==version` (plus `extra` packages) into its cached virtualenv unless a finished one exists.

    A marker written last (naming the extras) means an interrupted install is redone, not half-used.
    """
    venv = venv_path(name, version)
    marker = venv / ".hammersmith-complete"
    wanted = "\n".join(sorted(extra))
    if marker.exists() and marker.read_text() == wanted:
        return venv
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / f"{name}-{version}-install.log"
    pip = [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check"]
    # a venv made for fewer extras (an older hammersmith's) only gets what it lacks
    steps = (
        [[*pip, *extra]]
        if marker.exists()
        else [[sys.executable, "-m", "venv", "--clear", str(venv)], [*pip, f"{name}=={version}", *extra]]
    )
    with log.open("ab" if marker.exists() else "wb") as out:
        for argv in steps:
            if subprocess.run(argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode:
                raise TestbedError(
                    f"installing {name} {version} failed: {' '.join(argv[:3])}",
                    hint=f"see {log}; pip needs to reach the package index",
                )
    marker.write_text(wanted)
    return venv


def gunicorn(venv: Path, directory: Path, port: int, app: str, threads: int, timeout: int) -> list[str]:
    """The command serving a WSGI service of the testbed: one worker on 127.0.0.1, nothing written outside
    `directory` (gunicorn's control socket would go to ~/.gunicorn)."""
    return [
        str(venv / "bin" / "gunicorn"),
        "--no-control-socket",
        "--chdir",
        str(directory),
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        "1",
        "--threads",
        str(threads),
        "--timeout",
        str(timeout),
        app,
    ]


def cached_schema(db: Path, template: Path, make: Callable[[], None]) -> None:
    """A fresh SQLite database at `db`, copied from `template` beside the venv; `make` (which writes the schema to
    `db` through the service's own migrations) runs once per venv, so a testbed start costs a file copy."""
    db.unlink(missing_ok=True)
    if not template.exists():
        make()
        shutil.copyfile(db, template.with_suffix(".tmp"))
        template.with_suffix(".tmp").replace(template)
    shutil.copyfile(template, db)
