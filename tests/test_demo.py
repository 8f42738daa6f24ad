"""`hammersmith demo`: a fresh testbed, the demo faults, one snapshot, the report; stopped by PID with --down."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from hammersmith.testbed import lifecycle, process
from hammersmith.testbed.ironic import Ironic
from tests.conftest import hammersmith


def test_demo_reports_each_known_error_and_stops(tmp_path: Path) -> None:
    result = hammersmith("demo", "--down", "--json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    demo = json.loads(result.stdout)
    checks = {f["check"] for f in demo["findings"]}
    assert checks == {"error-teardown", "deploy-failed", "clean-failed", "stuck", "dirty-port", "maintenance-no-reason"}
    assert len(demo["testbed"]["faults"]) == 13
    reasons = list(demo["hands_off"].values())
    assert sum(r.startswith("user instance") for r in reasons) == 3
    assert sum(r.startswith("operator maintenance: ") for r in reasons) == 2
    assert demo["snapshot"]["complete"] and demo["snapshot"]["nodes"]["total"] == 30
    # the hammers fixed every known error they own, and touched nothing a human or user owns
    applied = Counter((a["hammer"], a["outcome"]) for sweep in demo["sweeps"] for a in sweep["actions"])
    assert applied[("error-resetter", "fixed")] >= 3  # 2 failed tear downs, 1 failed deploy (+ the aborted one)
    assert applied[("clean-failed", "fixed")] == 1 and applied[("stuck-transient", "fixed")] == 1
    hands_off = set(demo["hands_off"])
    assert not [
        a
        for s in demo["sweeps"]
        for a in s["actions"]
        if a["node"] in hands_off and a["mode"] == "apply" and a["outcome"] not in ("refused", "observed")
    ]
    assert applied[("dirty-ports", "fixed")] == 2  # through the real Neutron the demo runs
    left = {f["check"] for f in demo["findings_after"] if not f["hands_off"]}
    assert left <= {"stuck"}
    assert demo["testbed"]["pid"] and not process.alive(demo["testbed"]["pid"])
    state = Ironic(lifecycle.testbed_dir(tmp_path)).load_state()
    assert state is not None and state.pid is None
