"""`hammersmith user add|passwd|remove|list`: the real command line on a real store in a tmp state dir."""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest

from hammersmith import config
from hammersmith.store import Store, open_store
from tests.conftest import hammersmith
from tests.web.test_auth import write_config


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    return write_config(tmp_path)


def store_of(cfg: Path) -> Store:
    settings = config.load(cfg)
    return open_store(settings.effective_store_url, settings.state_dir)


def user(cfg: Path, *args: str, password: str | None = None) -> subprocess.CompletedProcess[str]:
    """`hammersmith --config CFG user ARGS`; with `password`, piped in with --password-stdin, as a script would."""
    if password is None:
        return hammersmith("--config", str(cfg), "user", *args, cwd=cfg.parent)
    return subprocess.run(
        [sys.executable, "-m", "hammersmith", "--config", str(cfg), "user", *args, "--password-stdin"],
        cwd=cfg.parent,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_add_list_passwd_remove(cfg: Path) -> None:
    added = user(cfg, "add", "alice", "--role", "operator", password="correct horse")
    assert added.returncode == 0, added.stderr
    assert "added operator alice" in added.stdout
    assert user(cfg, "add", "bob@lab", "--role", "viewer", "--json", password="battery staple").returncode == 0
    listed = json.loads(user(cfg, "list", "--json").stdout)
    assert [(u["name"], u["role"]) for u in listed] == [("alice", "operator"), ("bob@lab", "viewer")]
    assert all("password" not in key for u in listed for key in u)
    table = user(cfg, "list").stdout
    assert "2 dashboard account(s)" in table and "alice" in table and "bob@lab" in table and "viewer" in table

    store = store_of(cfg)
    try:
        alice = store.check_password("alice", "correct horse")
        assert alice is not None and alice.role == "operator"
        token, _ = store.create_session(alice.id, timedelta(hours=1))
        changed = user(cfg, "passwd", "alice", password="new password!")
        assert changed.returncode == 0, changed.stderr
        assert "new password" in changed.stdout and "sessions have ended" in changed.stdout
        assert store.check_password("alice", "correct horse") is None
        assert store.check_password("alice", "new password!") is not None
        assert store.session_user(token) is None  # logged out everywhere

        bob = store.user("bob@lab")
        assert bob is not None
        token, _ = store.create_session(bob.id, timedelta(hours=1))
        removed = user(cfg, "remove", "bob@lab")
        assert removed.returncode == 0 and "removed bob@lab" in removed.stdout
        assert store.user("bob@lab") is None and store.session_user(token) is None

        rows = store.actions(hammer="user")
        assert [(a.kind, a.node_uuid) for a in rows][::-1] == [
            ("user-add", "alice"),
            ("user-add", "bob@lab"),
            ("user-passwd", "alice"),
            ("user-remove", "bob@lab"),
        ]
        who = os.environ.get("USER") or __import__("getpass").getuser()
        assert {a.agent for a in rows} == {who}  # the OS user who ran the command
        assert not any("horse" in str(a.params) + (a.reason or "") for a in rows)
    finally:
        store.close()
    ledger = json.loads(
        hammersmith("--config", str(cfg), "ledger", "--hammer", "user", "--json", cwd=cfg.parent).stdout
    )
    assert len(ledger) == 4


@pytest.mark.parametrize(
    ("args", "password", "code", "said"),
    [
        (("add", "carol", "--role", "admin"), "long enough", 2, "'admin' is not a role"),
        (("add", "carol", "--role", "viewer"), "short", 1, "too short: at least 8 characters"),
        (("add", "carol", "--role", "viewer"), "é" * 40, 1, "too long: bcrypt reads at most 72 bytes"),
        (("add", "carol", "--role", "viewer"), "", 1, "no password on standard input"),
        (("add", "bad name", "--role", "viewer"), "long enough", 2, "not a valid user name"),
        (("add", "x" * 65, "--role", "viewer"), "long enough", 2, "not a valid user name"),
        (("passwd", "nobody"), "long enough", 1, "no user named 'nobody'"),
    ],
)
def test_bad_input_is_said_clearly_and_changes_nothing(
    cfg: Path, args: tuple[str, ...], password: str, code: int, said: str
) -> None:
    result = user(cfg, *args, password=password)
    assert result.returncode == code, result.stderr
    assert said in " ".join(result.stderr.split()), result.stderr
    assert "Traceback" not in result.stderr
    store = store_of(cfg)
    try:
        assert store.users() == [] and store.actions() == []
    finally:
        store.close()


def test_unknown_users_and_taken_names(cfg: Path) -> None:
    assert user(cfg, "add", "alice", "--role", "viewer", password="long enough").returncode == 0
    again = user(cfg, "add", "alice", "--role", "operator", password="long enough")
    assert again.returncode == 1 and "a user named 'alice' exists already" in again.stderr
    assert "user passwd alice" in again.stderr
    gone = user(cfg, "remove", "nobody")
    assert gone.returncode == 1 and "no user named 'nobody'" in gone.stderr and "user list" in gone.stderr
    assert [u["role"] for u in json.loads(user(cfg, "list", "--json").stdout)] == ["viewer"]  # not made operator


def test_no_terminal_and_no_password_stdin_says_how(cfg: Path) -> None:
    result = user(cfg, "add", "alice", "--role", "viewer")  # stdin is /dev/null, as in CI
    assert result.returncode == 1 and "no terminal to ask for the password" in result.stderr
    assert "--password-stdin" in result.stderr
    assert "no dashboard accounts yet" in user(cfg, "list").stdout


def _on_a_terminal(cfg: Path, answers: list[str]) -> tuple[int, str]:
    """`user add` with a real pseudo-terminal as its stdin and stdout: type each answer at each prompt."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "hammersmith", "--config", str(cfg), "user", "add", "dana", "--role", "operator"],
        cwd=cfg.parent,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        start_new_session=True,  # no controlling terminal: getpass turns echo off on stdin, the pseudo-terminal
    )
    os.close(follower)
    seen, answered, deadline = b"", 0, time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the command ended and closed the terminal
                    break
                seen += chunk
                prompts = seen.count(b"Password:") + seen.count(b"confirmation:")
                # click writes "Password:" then getpass turns echo off (dropping what was typed) and writes " "
                if answered < len(answers) and prompts > answered and seen.endswith(b": "):
                    os.write(leader, answers[answered].encode() + b"\r")
                    answered += 1
            elif process.poll() is not None:
                break
        return process.wait(timeout=30), seen.decode(errors="replace")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(leader)


def test_the_password_is_asked_twice_and_never_echoed(cfg: Path) -> None:
    code, screen = _on_a_terminal(cfg, ["secret pass 1", "secret pass 2", "secret pass 1", "secret pass 1"])
    assert code == 0, screen
    assert screen.count("Password:") == 2 and screen.count("Repeat for confirmation:") == 2  # a mismatch: again
    assert "secret pass" not in screen  # nothing typed was echoed
    store = store_of(cfg)
    try:
        assert store.check_password("dana", "secret pass 1") is not None
    finally:
        store.close()
