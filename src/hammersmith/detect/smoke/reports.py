"""Smoke results as files CI systems and dashboards read: CTRF JSON (https://ctrf.io) and JUnit XML.

One pair per run, named by site, set and start time, plus `latest-<site>-<set>.*` copies so a
dashboard or a human always finds the newest without listing the directory. Each file is
written to a temporary name and renamed, so a reader never sees half a report.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path
from typing import Any

from hammersmith import __version__
from hammersmith.detect.smoke import SmokeRun


def ctrf(run: SmokeRun) -> dict[str, Any]:
    """The run as a CTRF report: tool, summary (counts, start/stop in ms) and one test per scenario (with its steps)."""
    counts = {status: sum(1 for r in run.results if r.status == status) for status in ("passed", "failed", "skipped")}
    tests = []
    for r in run.results:
        test: dict[str, Any] = {
            "name": r.scenario,
            "status": r.status,
            "duration": round(r.seconds * 1000),
            "suite": f"{run.site}/{run.set}",
        }
        if r.started_at:
            test["start"] = round(r.started_at * 1000)
            test["stop"] = round((r.started_at + r.seconds) * 1000)
        if r.message:
            test["message"] = r.message
        if r.steps:  # CTRF's step has a name and a status only: its time goes in the step's `extra`, in ms
            test["steps"] = [
                {"name": s.name, "status": s.status, "extra": {"duration": round(s.seconds * 1000)}} for s in r.steps
            ]
        tests.append(test)
    return {
        "reportFormat": "CTRF",
        "specVersion": "0.0.0",
        "results": {
            "tool": {"name": "hammersmith", "version": __version__},
            "summary": {
                "tests": len(run.results),
                **counts,
                "pending": 0,
                "other": 0,
                "start": round(run.started_at.timestamp() * 1000),
                "stop": round(run.finished_at.timestamp() * 1000),
            },
            "tests": tests,
            "environment": {"appName": "hammersmith-smoke", "buildName": run.run_id, "testEnvironment": run.site},
            "extra": {"site": run.site, "set": run.set, "run_id": run.run_id},
        },
    }


def junit(run: SmokeRun) -> ET.Element:
    """The run as one JUnit <testsuite> (inside <testsuites>), one <testcase> per scenario."""
    failed = sum(1 for r in run.results if r.status == "failed")
    skipped = sum(1 for r in run.results if r.status == "skipped")
    total = sum(r.seconds for r in run.results)
    root = ET.Element(
        "testsuites", name="hammersmith-smoke", tests=str(len(run.results)), failures=str(failed), time=f"{total:.3f}"
    )
    suite = ET.SubElement(
        root,
        "testsuite",
        name=f"hammersmith-smoke.{run.site}.{run.set}",
        tests=str(len(run.results)),
        failures=str(failed),
        errors="0",
        skipped=str(skipped),
        time=f"{total:.3f}",
        timestamp=run.started_at.strftime("%Y-%m-%dT%H:%M:%S"),
        hostname=socket.gethostname(),
    )
    properties = ET.SubElement(suite, "properties")
    for key, value in (("site", run.site), ("set", run.set), ("run_id", run.run_id)):
        ET.SubElement(properties, "property", name=key, value=value)
    for r in run.results:
        case = ET.SubElement(
            suite,
            "testcase",
            classname=f"hammersmith.smoke.{run.site}.{run.set}",
            name=r.scenario,
            time=f"{r.seconds:.3f}",
        )
        if r.steps:  # JUnit has no steps: one property per step, its status and seconds
            steps = ET.SubElement(case, "properties")
            for s in r.steps:
                ET.SubElement(steps, "property", name=f"step.{s.name}", value=f"{s.status} {s.seconds:.3f}")
        if r.status == "failed":
            ET.SubElement(case, "failure", message=(r.message or "failed")[:500], type="SmokeFailure").text = r.message
        elif r.status == "skipped":
            ET.SubElement(case, "skipped", message=r.message or "skipped")
        elif r.message:
            ET.SubElement(case, "system-out").text = r.message
    return root


def write(run: SmokeRun, directory: Path) -> SmokeRun:
    """Write both files and refresh the `latest-*` copies; the run comes back with their paths in `reports`."""
    directory.mkdir(parents=True, exist_ok=True)
    stem = f"smoke-{run.site}-{run.set}-{run.started_at:%Y%m%dT%H%M%SZ}-{run.run_id.rsplit('-', 1)[-1]}"
    ctrf_path = directory / f"{stem}.ctrf.json"
    junit_path = directory / f"{stem}.junit.xml"
    _atomic(ctrf_path, json.dumps(ctrf(run), indent=2).encode())
    tree = junit(run)
    ET.indent(tree)
    _atomic(junit_path, ET.tostring(tree, encoding="utf-8", xml_declaration=True))
    latest = {}
    for path, suffix in ((ctrf_path, "ctrf.json"), (junit_path, "junit.xml")):
        target = directory / f"latest-{run.site}-{run.set}.{suffix}"
        tmp = target.with_name(f".{target.name}.tmp")
        shutil.copyfile(path, tmp)
        os.replace(tmp, target)
        latest[f"latest_{suffix.split('.')[0]}"] = str(target)
    return replace(run, reports={"ctrf": str(ctrf_path), "junit": str(junit_path), **latest})


def _atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
