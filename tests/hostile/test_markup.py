"""Text that is data, not markup: names, reasons, errors and config values print as they are in every CLI view.

A `[/]` in a node's last_error used to crash a command (rich.errors.MarkupError, even in the error handler),
and a `[link=...]` in a maintenance reason could put a link into the operator's terminal. Each test puts
such text where it really comes from (Ironic, the ledger, a server's error, the config, the command line)
and reads the real command's output.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from rich.console import Console
from rich.text import Text

from hammersmith import config
from hammersmith.cli.render import markup, plain
from hammersmith.store import open_store
from hammersmith.testbed import fleet
from hammersmith.testbed.ironic import CLOUD_NAME, free_port
from tests.conftest import Testbed, hammersmith
from tests.hostile.conftest import AgentProcess, agent_config

#: a closing tag with nothing to close, a link, a style left open, an emoji code and a trailing backslash
HOSTILE = "[/] [link=file:///etc/passwd]x[/link] [bold red]:warning: C:\\"
#: a resource class Ironic accepts (80 characters at most)
RESOURCE_CLASS = "[/]rc[link=file:///etc/passwd]x[/link]"
#: wide enough that no table cell folds: each text is on one line
WIDE = {"COLUMNS": "1000"}


def shown(text: Text) -> str:
    """What a terminal without colour shows of `text`."""
    console = Console(width=1000, color_system=None)
    with console.capture() as capture:
        console.print(text)
    return capture.get().rstrip("\n")


def spans(text: Text) -> list[tuple[int, int, str]]:
    return [(s.start, s.end, str(s.style)) for s in text.spans]


def test_markup_fills_values_as_plain_text_in_the_style_around_them() -> None:
    text = markup("[bold]error:[/] {} [red]<{}>[/] {}", HOSTILE, "[/bold]", 3)
    assert text.plain == f"error: {HOSTILE} <[/bold]> 3"
    assert shown(text) == text.plain
    at = text.plain.index("<")
    assert spans(text) == [(0, 6, "bold"), (at, at + 1, "red"), (at + 1, at + 8, "red"), (at + 8, at + 9, "red")]
    # a Text value keeps its own style (not the template's around it); `style` is the base style of the whole
    ok = markup("[red]{}[/]: ok", plain("[/]", "green"), style="italic")
    assert (ok.plain, str(ok.style), spans(ok)) == ("[/]: ok", "italic", [(0, 3, "green")])
    assert shown(plain(HOSTILE)) == HOSTILE
    with pytest.raises(ValueError, match="1 placeholder"):
        markup("{} only", "a", "b")


def run(*args: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    """The real command; it never reports an internal error (a crash while printing data was one)."""
    done = hammersmith(*args, cwd=cwd, env={**WIDE, **(env or {})})
    assert "internal error" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


@pytest.fixture(scope="module")
def hostile_nodes(testbed: Testbed) -> Iterator[dict[str, str]]:
    """Two nodes of this module's own on the shared testbed, deleted at the end: one whose clean failed on a
    step argument Ironic quotes in last_error, one in an operator's maintenance; both carry HOSTILE text."""
    bm = testbed.conn.baremetal
    failed = bm.create_node(name="markup-clean-failed", driver="fake-hardware", deploy_interface="fake")
    held = bm.create_node(
        name="markup-maintenance", driver="fake-hardware", resource_class=RESOURCE_CLASS, extra={"note": HOSTILE}
    )
    try:
        bm.set_node_maintenance(held.id, reason=HOSTILE)
        bm.set_node_provision_state(failed.id, "manage", wait=True)
        settings = [{"bogus": HOSTILE}]  # no 'name': the fake BIOS step fails, quoting its arguments
        step = {"interface": "bios", "step": "apply_configuration", "args": {"settings": settings}}
        bm.set_node_provision_state(failed.id, "clean", clean_steps=[step])
        fleet.wait_for(testbed.conn, [failed.name], {"clean failed"}, 60)
        yield {"failed": failed.name, "held": held.name, "last_error": testbed.node_raw(failed.name)["last_error"]}
    finally:
        for node in (failed, held):
            bm.set_node_maintenance(node.id)  # Ironic deletes a node in maintenance whatever its state
            bm.delete_node(node.id)


@pytest.fixture
def lab(tmp_path: Path, testbed: Testbed) -> Callable[..., tuple[int, str, str]]:
    """Run a command on a config for the session testbed (state in tmp_path)."""
    cfg = agent_config(tmp_path, testbed)
    env = {"OS_CLIENT_CONFIG_FILE": str(testbed.workdir / "clouds.yaml")}
    return lambda *args: run("--config", str(cfg), *args, cwd=tmp_path, env=env)


def test_node_fields_from_ironic_print_as_they_are(
    hostile_nodes: dict[str, str], lab: Callable[..., tuple[int, str, str]]
) -> None:
    assert HOSTILE in hostile_nodes["last_error"]  # Ironic quotes the step's arguments

    code, out, _ = lab("snapshot")
    assert code == 0
    assert f"│ {RESOURCE_CLASS} " in out

    code, out, _ = lab("check")
    assert code == 0
    assert f"operator maintenance: {HOSTILE}" in out
    assert "'bogus': '[/] [link=file:///" in out  # the detail column holds 160 characters of last_error

    code, out, _ = lab("check", "--json")
    assert code == 0
    report = json.loads(out)
    detail = {f["node"]: f["detail"] for f in report["findings"]}
    assert detail[hostile_nodes["failed"]] == hostile_nodes["last_error"]
    assert report["hands_off"][hostile_nodes["held"]] == f"operator maintenance: {HOSTILE}"

    code, out, _ = lab("sweep")  # observe only
    assert code == 0
    assert f"│ {hostile_nodes['failed']} " in out


def test_ledger_and_breaker_reasons_print_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "hammersmith.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(tmp_path), "sites": {"lab": {"cloud": CLOUD_NAME}}}))
    settings = config.load(path)
    store = open_store(settings.effective_store_url, settings.state_dir)
    try:
        store.record_action(
            site="lab",
            hammer="clean-failed",
            node_uuid="5b1d6bc4-4b9a-4c8e-9a43-0d6c2f1f6b11",
            node_name=HOSTILE,
            trigger="sweep",
            mode="observe",
            kind="manage",
            params={"maintenance_reason": HOSTILE},
            outcome="refused",
            reason=HOSTILE,
        )
        store.open_breaker("lab", HOSTILE)
    finally:
        store.close()

    code, out, _ = run("--config", str(path), "ledger", cwd=tmp_path)
    assert code == 0
    assert f"│ {HOSTILE} " in out  # the node column
    assert f"│ refused │ {HOSTILE} " in out  # the reason column
    code, out, _ = run("--config", str(path), "ledger", "--json", cwd=tmp_path)
    assert json.loads(out)[0]["reason"] == HOSTILE

    code, out, _ = run("--config", str(path), "breaker", "status", cwd=tmp_path)
    assert code == 0
    assert out.rstrip("\n").endswith(f": {HOSTILE}")


def test_server_text_in_probe_and_smoke_results_prints_as_it_is(tmp_path: Path) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}/[/][link=file:///etc/passwd]x[/link][bold red]"
    clouds = {"clouds": {CLOUD_NAME: {"auth_type": "none", "baremetal_endpoint_override": endpoint}}}
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump(clouds))
    (tmp_path / "hammersmith.yaml").write_text(yaml.safe_dump({"sites": {"lab": {"cloud": CLOUD_NAME}}}))
    env = {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}

    code, out, _ = run("probe", cwd=tmp_path, env=env)
    assert code == 1  # the read probe failed: nothing listens there
    assert f"Unable to establish connection to {endpoint}/" in out

    code, out, _ = run("smoke", "run", cwd=tmp_path, env=env)
    assert code == 1
    assert f"Unable to establish connection to {endpoint}/" in out


def test_config_values_print_as_they_are(tmp_path: Path) -> None:
    (tmp_path / "clouds.yaml").write_text(yaml.safe_dump({"clouds": {}}))
    env = {"OS_CLIENT_CONFIG_FILE": str(tmp_path / "clouds.yaml")}
    cfg = tmp_path / "hammersmith.yaml"
    cfg.write_text(yaml.safe_dump({"sites": {"lab": {"cloud": HOSTILE}}}))

    code, _, err = run("config", "validate", cwd=tmp_path, env=env)
    assert code == 2
    assert f"cloud {HOSTILE!r} is not in clouds.yaml" in err
    code, _, err = run("snapshot", cwd=tmp_path, env=env)
    assert code == 1
    assert f"cloud {HOSTILE!r} not usable" in err

    cfg.write_text(yaml.safe_dump({"sites": {"lab": {"cloud": "x", "sweep_interval_seconds": HOSTILE}}}))
    code, _, err = run("config", "validate", cwd=tmp_path, env=env)
    assert code == 2
    assert "(got '[/] [link=file:///etc/passwd]x[/link]" in err  # the config shows the start of a long value


def test_names_from_the_command_line_print_as_they_are(tmp_path: Path) -> None:
    code, _, err = run("runbook", "show", HOSTILE, cwd=tmp_path)
    assert code == 1
    assert f"error: {HOSTILE!r} is not a runbook name" in err

    code, _, err = run("rules", "export", "--base-url", HOSTILE, cwd=tmp_path)
    assert code == 2  # a usage error, printed by Typer
    assert f"{HOSTILE!r} is not an http(s) URL" in err

    out_dir = "[bold red]rules[link=https:x] :warning:"  # no '/': one directory
    code, out, _ = run("rules", "export", "--base-url", "https://ops.example.org", "--out", out_dir, cwd=tmp_path)
    assert code == 0
    written = sorted((tmp_path / out_dir).rglob("*.yml"))
    assert [line for line in out.splitlines() if line.startswith(f"{out_dir}/")] == [
        str(p.relative_to(tmp_path)) for p in written
    ]
    assert f"`promtool check rules {out_dir}/*.rules.yml`" in out


def test_runbook_pages_never_echo_a_requested_name(agent_process: Callable[..., AgentProcess]) -> None:
    """An alert's runbook_url ends in its name; an unknown or hostile one gets the same bare 404."""
    agent = agent_process()
    for name in ("<script>alert(1)</script>", "[/]", "NoSuchAlert"):
        answer = httpx.get(f"{agent.url}/runbooks/{name}", timeout=10)
        assert (answer.status_code, answer.text) == (404, "Not Found")
