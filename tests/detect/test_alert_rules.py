"""The shipped alert rules and Alertmanager example, against the real promtool and amtool.

promtool's unit tests (src/hammersmith/detect/rules/tests/) prove each alert fires on series
shaped like the exporter's and stays quiet where it must; these tests run them, hold the rule
files to the contract (names, labels, annotations, runbook links) and tie every series an alert
reads to a family the exporter serves.
"""

from __future__ import annotations

import fnmatch
import re
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from hammersmith.cli.rules import DEFAULT_BASE, RULES_DIR, shipped
from hammersmith.testbed.prometheus import amtool_check_config, binary, missing_binaries
from tests.conftest import hammersmith

ROOT = Path(__file__).resolve().parents[2]
RULE_FILES = sorted(RULES_DIR.glob("*.rules.yml"))
TEST_FILES = sorted((RULES_DIR / "tests").glob("*.yml"))
EXAMPLE = RULES_DIR / "alertmanager.example.yml"

# the contract's list of alerts (issue 6): the rules define exactly these
CONTRACT_ALERTS = {
    # Ironic / OpenStack, from hammersmith's own series
    "IronicNodeError",
    "IronicNodeDeployFailed",
    "IronicNodeCleanFailed",
    "IronicNodeStuckTransient",
    "IronicNodeConsoleDisabled",
    "IronicMaintenanceWithoutReason",
    "IronicNodesAvailableLow",
    "NeutronPortBindingFailed",
    "LaunchFailures",
    "BlazarLeaseError",
    "BlazarHostsNotReservable",
    "OpenStackServiceDown",
    "OpenStackApiErrors",
    "OpenStackApiSlow",
    # where the services disagree: the cross-service hammers' findings
    "IronicNodeUndeadInstance",
    "NeutronPortMacConflict",
    "PlacementOrphanProvider",
    "NeutronFloatingIPsIdle",
    "BlazarLeaseIdle",
    "BlazarLeaseReminderPending",
    "BlazarRetiredHostReservable",
    "BlazarFreepoolInconsistent",
    "KeystoneOrphanedResources",
    # hammersmith itself
    "HammersmithSnapshotStale",
    "HammersmithSnapshotIncomplete",
    "HammersmithCyclesFailing",
    "HammersmithSweepNotSucceeding",
    "HammersmithBreakerOpen",
    "HammerBudgetExhausted",
    "MaintenanceOverdue",
    "HammerActionsFailing",
    "HammersmithNotificationsFailing",
    "HammersmithCollectorErrors",
    "HammersmithExporterAbsent",
    # probes and smoke
    "ProbeFailing",
    "TLSCertificateExpiringSoon",
    "SmokeScenarioFailing",
    "SmokeScenarioStale",
    # hosts
    "ExporterDown",
    "NodeFilesystemAlmostFull",
    "IronicImageCacheLow",
    "NodeNetworkBridgeDown",
    "NodeNetworkBridgeLowTraffic",
    "MySQLDown",
    "MySQLReplicationBroken",
}

needs_tools = pytest.mark.skipif(
    bool(missing_binaries()), reason="promtool/amtool not installed (scripts/setup --test installs them)"
)


def alert_rules(files: list[Path] = RULE_FILES) -> list[dict[str, Any]]:
    return [
        rule
        for path in files
        for group in yaml.safe_load(path.read_text())["groups"]
        for rule in group["rules"]
        if "alert" in rule
    ]


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary("promtool")), *args], capture_output=True, text=True, timeout=120)


@needs_tools
@pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
def test_promtool_check_rules(path: Path) -> None:
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_tools
@pytest.mark.parametrize("path", TEST_FILES, ids=lambda p: p.name)
def test_promtool_unit_tests(path: Path) -> None:
    result = promtool("test", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


@needs_tools
def test_alertmanager_example_is_valid() -> None:
    assert amtool_check_config(EXAMPLE) == []


def test_alertmanager_example_routes_to_the_webhook() -> None:
    config = yaml.safe_load(EXAMPLE.read_text())
    assert config["route"]["group_by"] == ["alertname", "site"]
    receivers = {r["name"]: r for r in config["receivers"]}
    webhook = receivers["hammersmith"]["webhook_configs"][0]
    assert webhook["url"] == f"{DEFAULT_BASE}/api/v1/alertmanager"
    assert webhook["send_resolved"] is True
    assert webhook["http_config"]["authorization"]["credentials_file"]
    fyi = next(r for r in config["route"]["routes"] if r["matchers"] == ['can_resolve="no"'])
    assert not any(c.get("send_resolved", True) for c in receivers[fyi["receiver"]]["webhook_configs"])
    assert config["inhibit_rules"][0]["equal"] == ["alertname", "site"]


def test_alert_names_are_the_contracts() -> None:
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)), "an alert is defined twice"
    assert set(names) == CONTRACT_ALERTS


@pytest.mark.parametrize("rule", alert_rules(), ids=lambda r: r["alert"])
def test_every_alert_has_severity_annotations_and_its_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in ("critical", "warning")
    annotations = rule["annotations"]
    assert annotations["summary"].strip() and annotations["description"].strip()
    assert annotations["runbook_url"] == f"{DEFAULT_BASE}/runbooks/{rule['alert']}"


def test_every_alert_has_a_firing_unit_test() -> None:
    fired = {
        case["alertname"]
        for path in TEST_FILES
        for test in yaml.safe_load(path.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
        if case.get("exp_alerts")
    }
    assert fired == CONTRACT_ALERTS


def test_per_node_alerts_carry_the_node_name() -> None:
    """The webhook hands `node` to the hammer: every alert on per-node series must set it."""
    per_node = {
        rule["alert"] for rule in alert_rules() if re.search(r"openstack_ironic_node\b|_since_timestamp", rule["expr"])
    }
    assert per_node >= {"IronicNodeError", "IronicNodeDeployFailed", "IronicNodeStuckTransient"}
    for rule in alert_rules():
        if rule["alert"] in per_node:
            assert '"node", "$1", "name"' in rule["expr"], rule["alert"]
    for path in TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            for case in test.get("alert_rule_test", []):
                for alert in case.get("exp_alerts") or []:
                    if case["alertname"] in per_node:
                        assert alert["exp_labels"]["node"], case


def _documented_families() -> set[str]:
    """Families in the first column of docs/metrics.md's tables: what the exporter serves."""
    text = (ROOT / "docs" / "metrics.md").read_text()
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.MULTILINE))


def test_every_series_an_alert_reads_is_served() -> None:
    documented = _documented_families()
    used = {
        name
        for rule in alert_rules([RULES_DIR / "hammersmith.rules.yml"])
        for name in re.findall(r"\b(hammersmith_[a-z0-9_]+|openstack_ironic_node)\b", rule["expr"])
    }
    assert len(used) > 20
    missing = {name for name in used if name not in documented and re.sub(r"_bucket$", "", name) not in documented}
    assert not missing, f"alerts read series docs/metrics.md does not list: {sorted(missing)}"


def test_every_alert_docs_metrics_names_exists() -> None:
    text = (ROOT / "docs" / "metrics.md").read_text()
    alert_column = [row.rsplit("|", 2)[-2] for row in text.splitlines() if row.startswith("| `")]
    named = {name for cell in alert_column for name in re.findall(r"`([A-Z][A-Za-z]+)`", cell)}
    assert len(named) > 20
    assert named <= CONTRACT_ALERTS, sorted(named - CONTRACT_ALERTS)


def test_docs_alerts_table_matches_the_rules() -> None:
    """docs/alerts.md's table: one row per alert, with the rule's severity and `for:`."""
    text = (ROOT / "docs" / "alerts.md").read_text()
    rows = re.findall(r"^\| `([A-Za-z]+)` \| (\w+)[^|]*\| (\w+) \|", text, flags=re.MULTILINE)
    assert sorted(name for name, _, _ in rows) == sorted(CONTRACT_ALERTS)
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for name, severity, wait in rows:
        assert severity == rules[name]["labels"]["severity"], name
        assert wait == rules[name].get("for", "none"), name


def test_shipped_files_are_package_data_and_at_rules() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["hammersmith"]
    package = RULES_DIR.relative_to(ROOT / "src" / "hammersmith")
    for relative in shipped():
        assert any(fnmatch.fnmatch(str(package / relative), p) for p in patterns), relative
    assert (ROOT / "rules").resolve() == RULES_DIR


@needs_tools
def test_export_links_every_runbook_to_the_given_base(tmp_path: Path) -> None:
    base = "https://x.example.org"
    out = tmp_path / "out"
    result = hammersmith("rules", "export", "--base-url", base + "/", "--out", str(out), "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    files = sorted(Path(p).relative_to(out) for p in yaml.safe_load(result.stdout)["files"])
    assert files == shipped()

    exported = sorted(out.glob("*.rules.yml"))
    checked = promtool("check", "rules", *map(str, exported))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", *map(str, sorted((out / "tests").glob("*.yml"))))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert amtool_check_config(out / "alertmanager.example.yml") == []

    rules = alert_rules(exported)
    assert {r["alert"] for r in rules} == CONTRACT_ALERTS
    for rule in rules:
        assert rule["annotations"]["runbook_url"] == f"{base}/runbooks/{rule['alert']}"
    for path in out.rglob("*.yml"):
        assert DEFAULT_BASE not in path.read_text(), path
    assert f"{base}/api/v1/alertmanager" in (out / "alertmanager.example.yml").read_text()


def test_export_without_base_url_takes_the_configs_public_url(tmp_path: Path) -> None:
    (tmp_path / "hammersmith.yaml").write_text(
        "http:\n  public_url: https://ops.example.org:9184/\nsites:\n  uc:\n    cloud: chi-uc\n"
    )
    result = hammersmith("rules", "export", "--out", "exported", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = (tmp_path / "exported" / "hammersmith.rules.yml").read_text()
    assert "runbook_url: https://ops.example.org:9184/runbooks/IronicNodeError" in text


def test_export_refuses_a_bad_base_or_the_shipped_directory(tmp_path: Path) -> None:
    bad = hammersmith("rules", "export", "--base-url", "ftp://x", "--out", "o", cwd=tmp_path)
    assert bad.returncode == 2 and "not an http(s) URL" in bad.stderr
    onto = hammersmith("rules", "export", "--base-url", "https://x.example.org", "--out", str(RULES_DIR), cwd=tmp_path)
    assert onto.returncode == 2 and "shipped rules directory" in onto.stderr
    inside = hammersmith("rules", "export", "--base-url", "https://x.example.org", "--out", "rules/x", cwd=ROOT)
    assert inside.returncode == 2 and "shipped rules directory" in inside.stderr
    no_config = hammersmith("rules", "export", cwd=tmp_path)
    assert no_config.returncode == 2 and "--base-url" in no_config.stderr
