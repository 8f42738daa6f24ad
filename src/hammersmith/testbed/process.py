"""Start and stop the testbed's own processes, always by PID (process group)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from hammersmith.errors import TestbedError


def start(argv: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    """Start argv in its own session (so its workers die with it) and return the PID."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
    return proc.pid


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child of ours is not alive
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def stop(pid: int | None, timeout: float = 10.0, hard: bool = False) -> None:
    """Stop the process group led by pid: SIGTERM, bounded wait, then SIGKILL (or SIGKILL at once)."""
    if not alive(pid):
        return
    assert pid is not None
    try:
        os.killpg(pid, signal.SIGKILL if hard else signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(pid)
        if not alive(pid):
            break
        time.sleep(0.1)
    else:
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _reap(pid)
    # the group's workers may outlive the leader (Ironic's worker drains its tasks): bounded, then SIGKILL
    for signum in (None, signal.SIGKILL):
        if signum is not None:
            try:
                os.killpg(pid, signum)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            _reap(pid)  # a zombie leader still counts as a group member until reaped
            try:
                os.killpg(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)
    raise TestbedError(f"process group {pid} did not stop, even after SIGKILL")


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
