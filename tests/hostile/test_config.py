"""Hostile configuration, through the real command line: alias bombs and absurd durations are refused with their
line before anything starts, and no secret in the file (or in a URL built from it) ever reaches the output."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hammersmith.config import Site
from hammersmith.errors import StoreError
from hammersmith.react import notify
from hammersmith.store import open_store
from tests.conftest import hammersmith

SECRET = "s3cr3t-Hammer-0123456789"
SITE = "sites:\n  uc:\n    cloud: chi-uc\n"


def validate(tmp_path: Path, text: str, *command: str) -> tuple[int, str]:
    """Run `hammersmith --config hs.yaml <command>` on text; its exit status and all it printed."""
    (tmp_path / "hs.yaml").write_text(text)
    result = hammersmith("--config", "hs.yaml", *(command or ("config", "validate")), cwd=tmp_path, timeout=120)
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    return result.returncode, result.stdout + result.stderr


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A local port bound but not listening: connections to it are refused at once."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


def run_measured(tmp_path: Path, *args: str, timeout: float = 60) -> tuple[int, str, float, int]:
    """The real CLI as a child of its own: exit status, stderr, wall seconds and the child's peak RSS in KiB."""
    started = time.perf_counter()
    with (tmp_path / "stderr").open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hammersmith", *args],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            env={**os.environ, "COLUMNS": "200"},
        )
    try:
        while (waited := os.wait4(proc.pid, os.WNOHANG))[0] == 0:  # wait4: this child's own rusage
            assert time.perf_counter() - started < timeout, "still running"
            time.sleep(0.02)
    finally:
        if waited[0] == 0:
            proc.kill()
            proc.wait()
    proc.returncode = os.waitstatus_to_exitcode(waited[1])  # reaped here: Popen must not wait for it again
    return proc.returncode, (tmp_path / "stderr").read_text(), time.perf_counter() - started, waited[2].ru_maxrss


def test_cli_refuses_an_alias_bomb_in_bounded_time_and_memory(tmp_path: Path) -> None:
    lines = ["l0: &l0 [" + ", ".join(["lol"] * 10) + "]"]
    lines += [f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    (tmp_path / "bomb.yaml").write_text(SITE + "\n".join(lines) + "\n")
    (tmp_path / "good.yaml").write_text(SITE + "\n".join(lines[:2]) + "\n")
    assert (tmp_path / "bomb.yaml").stat().st_size < 1024  # 10 ** 10 strings once expanded
    status, stderr, seconds, peak_kib = run_measured(tmp_path, "--config", "bomb.yaml", "config", "validate")
    assert status == 2
    assert "bomb.yaml:4: more than 100,000 values once aliases are expanded (an alias bomb?)" in stderr
    *_, baseline_kib = run_measured(tmp_path, "--config", "good.yaml", "config", "validate")  # a 2-alias file
    assert seconds < 30 and peak_kib < baseline_kib + 64 * 1024, (seconds, peak_kib, baseline_kib)


def test_cli_refuses_a_self_referencing_alias_and_a_list_as_key(tmp_path: Path) -> None:
    status, output = validate(tmp_path, SITE + "    policy: &p\n      exempt_nodes: [*p]\n")
    assert status == 2 and "hs.yaml:4: an alias inside this collection refers back to it (a cycle)" in output
    status, output = validate(tmp_path, SITE + "    ? [a, b]\n    : c\n")
    assert status == 2 and "hs.yaml:4: a key must be a name, not a list" in output


def test_agent_refuses_a_sweep_interval_of_ten_billion_seconds_before_starting(tmp_path: Path) -> None:
    """Validated, 10**10 s overflowed threading.Event.wait after the agent's first cycle."""
    text = "http:\n  listen: 127.0.0.1:0\n" + SITE + "    sweep_interval_seconds: 10000000000\n"
    status, output = validate(tmp_path, text, "run")
    assert status == 2
    assert "hs.yaml:6: 'sites.uc.sweep_interval_seconds': Input should be less than or equal to 86400" in output
    assert "serving metrics" not in output and not (tmp_path / ".hammersmith").exists()


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f'http: "webhook_token: {SECRET}"\n' + SITE, "hs.yaml:1: 'http': Input should be a valid dictionary"),
        (f"http:\n  webhook_token: '{SECRET} x'\n" + SITE, "hs.yaml:2: 'http.webhook_token': Value error, must be"),
        (f"http:\n  webhook_token: {SECRET}\u00e9\n" + SITE, "hs.yaml:2: 'http.webhook_token': Value error, must be"),
        (
            SITE + f"    notify:\n      - hooks.slack.com/services/T000/B000/{SECRET}\n",
            "hs.yaml:5: 'sites.uc.notify.0'",
        ),
        (
            SITE + f"    notify: slack://T000/B000/{SECRET}\n",
            "hs.yaml:4: 'sites.uc.notify': Input should be a valid list",
        ),
        (SITE + f"    notify: [7, slack://T000/B000/{SECRET}, 1]\n", "hs.yaml:4: 'sites.uc.notify.0'"),
        (
            f"store_url: [postgresql://u:{SECRET}@h/db]\n" + SITE,
            "hs.yaml:1: 'store_url': Input should be a valid string",
        ),
        (f"sites: 'uc: {{cloud: x, notify: [slack://T/B/{SECRET}]}}'\n", "hs.yaml:1: 'sites': Input should be"),
        (SITE + f"    cloud: !!int {SECRET}\n", "hs.yaml:3: cannot read this value as int"),
    ],
    ids=[
        "http-as-string",
        "token-space",
        "token-non-ascii",
        "notify-no-scheme",
        "notify-as-string",
        "notify-wrong-item",
        "store-url-as-list",
        "sites-as-string",
        "unreadable-value",
    ],
)
def test_cli_validate_never_prints_a_secret(tmp_path: Path, text: str, shown: str) -> None:
    status, output = validate(tmp_path, text.replace("    cloud: chi-uc\n    cloud:", "    cloud:"))
    assert status == 2 and shown in output, output
    assert SECRET not in output


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            f"postgresql+psycopg://hs@127.0.0.1:{{port}}/db?password={SECRET}",
            "postgresql+psycopg://hs@127.0.0.1:{port}/db?password=***",
        ),
        (
            f"postgresql+psycopg://hs:{SECRET}@127.0.0.1:{{port}}/db?sslmode=disable",
            "postgresql+psycopg://hs:***@127.0.0.1:{port}/db?sslmode=disable",
        ),
    ],
    ids=["query", "userinfo"],
)
def test_cli_masks_the_password_of_an_unreachable_store(
    tmp_path: Path, refused_port: int, url: str, shown: str
) -> None:
    status, output = validate(tmp_path, f"store_url: '{url.format(port=refused_port)}'\n" + SITE, "ledger")
    assert status == 1
    assert f"cannot open or migrate the state database {shown.format(port=refused_port)}: connection failed" in output
    assert SECRET not in output


def test_open_store_masks_every_query_value_that_could_be_a_secret(refused_port: int) -> None:
    url = f"postgresql+psycopg://hs@127.0.0.1:{refused_port}/db?sslmode=disable&password={SECRET}&sslpassword={SECRET}2"
    with pytest.raises(StoreError) as caught:
        open_store(url)
    message = f"{caught.value} {caught.value.hint}"
    assert (
        f"postgresql+psycopg://hs@127.0.0.1:{refused_port}/db?sslmode=disable&password=***&sslpassword=***" in message
    )
    assert SECRET not in message


HOSTILE = "node <b>x</b> [link=https://evil.example]click[/link] :smile: \\n *bold* <!channel> &amp;"


def test_notifications_are_plain_text_whatever_the_service_formats(inbox: tuple[str, list[dict]]) -> None:
    """An alert or node name is sent as written: escaped for a service that reads HTML or Markdown, never run."""
    url, received = inbox
    site = Site(cloud="x", notify=[url, f"{url}?format=html", f"{url}?format=markdown&emojis=yes"])
    assert notify.send(site, "uc", "title", HOSTILE)
    assert len(received) == 3
    (html,) = [r for r in received if "&lt;" in r["message"]]
    (markdown,) = [r for r in received if "\\[" in r["message"]]
    assert HOSTILE in [r["message"] for r in received]
    assert "&lt;b&gt;x&lt;/b&gt;" in html["message"] and "<b>" not in html["message"]
    assert "\\[link\\=https://evil\\.example\\]" in markdown["message"] and "\\*bold\\*" in markdown["message"]
    assert all(":smile:" in r["message"] for r in received)  # never an emoji: nothing in the text is interpreted


def test_a_failed_notification_logs_its_scheme_only(caplog: pytest.LogCaptureFixture, refused_port: int) -> None:
    """Apprise's own log names whole URLs (an unparseable one, a webhook's path): only hammersmith's line is left."""
    caplog.set_level(logging.DEBUG)
    urls = [f"bogus://{SECRET}", f"json://user:{SECRET}@127.0.0.1:{refused_port}/{SECRET}"]
    assert not notify.send(Site(cloud="x", notify=urls), "uc", "t", "b")
    unchecked = Site.model_construct(cloud="x", notify=[f"hooks.slack.com/services/T000/B000/{SECRET}"])
    assert not notify.send(unchecked, "uc", "t", "b")
    logged = [r.getMessage() for r in caplog.records if r.name.startswith("apprise") or r.name == notify.__name__]
    assert logged == ["notification failed for bogus, json", "notification failed for a URL without a scheme"]
    assert SECRET not in caplog.text
