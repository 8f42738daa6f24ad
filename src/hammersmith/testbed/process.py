"""Start and stop the testbed's own processes, always by PID (process group), and tell them from others' (/proc)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

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


def run(argv: list[str], what: str, timeout: float = 600.0) -> None:
    """A set-up command (a schema sync, a data directory) that must succeed: its output's tail is the error."""
    try:
        result = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TestbedError(f"{what} did not finish within {timeout:.0f} s") from None
    if result.returncode:
        raise TestbedError(f"{what} failed", hint=(result.stdout + result.stderr)[-2000:])


def serve(
    title: str,
    argv: list[str],
    log: Path,
    cwd: Path,
    env: dict[str, str],
    url: str,
    ready: Collection[int],
    timeout: float,
) -> int:
    """Start a server and wait until `url` answers one of the `ready` statuses (bounded); its PID.

    A server that exits or never gets ready is stopped and reported with the tail of its log.
    """
    pid = start(argv, log, cwd, env)
    deadline = time.monotonic() + timeout
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if not alive(pid):
                raise TestbedError(f"{title} exited during start-up", hint=tail(log))
            try:
                if http.get(url).status_code in ready:
                    return pid
            except httpx.TransportError:
                pass
            time.sleep(0.2)
    stop(pid)
    raise TestbedError(f"{title} did not become ready within {timeout:.0f} s", hint=tail(log))


def alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = _stat(pid)
    return bool(fields) and fields[0] != "Z"  # a zombie child of ours is not alive


def _stat(pid: int) -> list[str]:
    """/proc/<pid>/stat after the command name: state, ppid, pgrp, session, ... ([] if gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def group(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[2]) if fields else None


def owned(pid: int | None, directory: Path) -> bool:
    """pid is still the process `start` gave us for `directory`: alive, leading its own session, working in it.

    A recorded PID the kernel has since given to another process fails this, so nothing else is signalled.
    The command line can't tell: Ironic and gunicorn rewrite their process titles.
    """
    if not pid or not alive(pid):
        return False
    try:
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return False
    fields = _stat(pid)
    return bool(fields) and int(fields[3]) == pid and cwd == str(directory)


def listeners(port: int) -> dict[str, set[int]]:
    """Every TCP socket listening on `port` (any address) -> the PIDs holding it that this user may inspect.

    An empty set is a socket of another user's process: /proc hides its descriptors.
    """
    sockets: dict[str, set[int]] = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            rows = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                sockets[f"socket:[{fields[9]}]"] = set()
    if not sockets:
        return sockets
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fds = os.listdir(f"/proc/{entry.name}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{entry.name}/fd/{fd}")
            except OSError:
                continue
            if target in sockets:
                sockets[target].add(int(entry.name))
    return sockets


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


def stop_owned(pids: Iterable[int | None], directory: Path) -> None:
    """Stop a service's processes by PID, all at once (each shuts down gracefully for seconds), each only while it
    is still the one started in `directory`."""
    ours = [pid for pid in pids if owned(pid, directory)]
    if ours:
        with ThreadPoolExecutor(len(ours)) as pool:
            list(pool.map(stop, ours))


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
