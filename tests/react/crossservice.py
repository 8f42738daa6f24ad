"""Shared by the cross-service hammers' tests on the full tier: a config with one hammer in a mode, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from hammersmith.testbed.ironic import CLOUD_NAME
from tests.conftest import Testbed, hammersmith


def config(directory: Path, hammer: str, mode: str, **policy: Any) -> Path:
    """`hammer` in `mode`, every other hammer off; no grace period; the breaker out of the way (the full tier's
    tests leave faults to each other on 8 nodes, where 20 % is one node)."""
    from hammersmith.react.hammers import load

    hammers = {name: "off" for name in load()} | {hammer: mode}
    full = {"grace_minutes": 0, "hammers": hammers, "breaker": {"max_percent": 100}, **policy}
    path = directory / f"{hammer}-{mode}-{len(list(directory.glob('*.yaml')))}.yaml"  # one file per call
    path.write_text(
        yaml.safe_dump({"state_dir": str(directory), "sites": {"full": {"cloud": CLOUD_NAME, "policy": full}}})
    )
    return path


def run(bed: Testbed, path: Path, *args: str) -> Any:
    """A CLI command's JSON (exit 1: findings or a failed notice, still a report)."""
    done = hammersmith("--config", str(path), *args, "--json", cwd=bed.workdir)
    assert done.returncode in (0, 1), done.stderr
    return json.loads(done.stdout)


def ledger(bed: Testbed, path: Path, subject: str) -> list[dict[str, Any]]:
    """The ledger rows of one node or subject, newest first, through the CLI."""
    done = hammersmith("--config", str(path), "ledger", "--node", subject, "--json", cwd=bed.workdir)
    assert done.returncode == 0, done.stderr
    return list(json.loads(done.stdout))


def found(bed: Testbed, path: Path, hammer: str) -> dict[str, str]:
    """node (or subject) name -> summary of the hammer's findings in `hammersmith check`."""
    return {f["node"]: f["summary"] for f in run(bed, path, "check")["findings"] if f["check"] == hammer}


def outcomes(report: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """subject name -> (mode, outcome, reason) of a sweep's actions."""
    return {a["node"]: (a["mode"], a["outcome"], a["reason"]) for a in report["actions"]}
