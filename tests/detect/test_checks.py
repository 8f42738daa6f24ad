"""Checks against the real testbed: every injected fault is found, and the hands-off nodes are named."""

from __future__ import annotations

import json

from tests.conftest import Testbed, hammersmith

#: which check must report each injected fault; None: no check, the node is left alone
EXPECTED = {
    "error-teardown": "error-teardown",
    "deploy-failed": "deploy-failed",
    "clean-failed": "clean-failed",
    "stuck-deploying": "stuck",
    "dirty-port": "dirty-port",
    "maintenance-no-reason": "maintenance-no-reason",
    "user-active": None,
    "operator-maintenance": None,
}


def test_check_finds_every_injected_fault_and_nothing_else(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    faults = json.loads(hammersmith("testbed", "status", "--json", cwd=testbed.workdir).stdout)["faults"]
    result = hammersmith("check", "--json", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    found: dict[str, set[str]] = {}
    for f in report["findings"]:
        found.setdefault(f["node"], set()).add(f["check"])
    expected = {node: {EXPECTED[s] for s in steps if EXPECTED[s]} for node, steps in faults.items()}
    assert found == {node: checks for node, checks in expected.items() if checks}


def test_check_leaves_humans_and_users_alone(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    report = json.loads(hammersmith("check", "--json", cwd=testbed.workdir).stdout)
    hands_off = report["hands_off"]
    for node, steps in demo_faults.items():
        if "user-active" in steps:
            assert hands_off[node].startswith("user instance ")
        if "operator-maintenance" in steps:
            assert hands_off[node].startswith("operator maintenance: Replacing DIMM B2")
    combined = next(n for n, s in demo_faults.items() if s == ["error-teardown", "operator-maintenance"])
    (finding,) = [f for f in report["findings"] if f["node"] == combined]
    assert finding["check"] == "error-teardown" and finding["hands_off"].startswith("operator maintenance")
    clean_failed = next(n for n, s in demo_faults.items() if s == ["clean-failed"])
    assert clean_failed not in hands_off  # Ironic's own maintenance (fault set) is not a human's


def test_check_human_report(testbed: Testbed, demo_faults: dict[str, list[str]]) -> None:
    result = hammersmith("check", cwd=testbed.workdir)
    assert result.returncode == 0, result.stderr
    assert "What is wrong:" in result.stdout and "Left alone:" in result.stdout
