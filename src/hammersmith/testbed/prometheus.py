"""A real Prometheus and Alertmanager (Debian packages) for tests, on free ports, stopped by PID.

Exporter and alert-rule tests are only worth something against the real thing: this starts the
binaries `scripts/setup --test` installs, in a directory of the test's own, and speaks their HTTP APIs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
import yaml

from hammersmith.errors import TestbedError
from hammersmith.testbed import process
from hammersmith.testbed.ironic import free_port

# Debian names the Alertmanager binary prometheus-alertmanager; upstream tarballs call it alertmanager
_NAMES = {
    "prometheus": ("prometheus",),
    "promtool": ("promtool",),
    "alertmanager": ("alertmanager", "prometheus-alertmanager"),
    "amtool": ("amtool",),
}
_HINT = "run scripts/setup --test (installs the Debian packages prometheus and prometheus-alertmanager)"


def binary(name: str) -> str | None:
    """The path of `name` (prometheus, promtool, alertmanager, amtool) under any of its packaged names."""
    return next((path for alias in _NAMES[name] if (path := shutil.which(alias))), None)


def missing_binaries() -> list[str]:
    """What is not installed, so tests can skip with a reason instead of failing."""
    return [name for name in _NAMES if binary(name) is None]


def _require(name: str) -> str:
    path = binary(name)
    if path is None:
        raise TestbedError(f"{name} is not installed", hint=_HINT)
    return path


def _problems(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The tool's output lines if it failed (lint problems also exit non-zero), else nothing."""
    if result.returncode == 0:
        return []
    lines = [line.strip() for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return lines or [f"exited {result.returncode} without saying why"]


def promtool_check_metrics(text: str) -> list[str]:
    """Lint exposition text the way Prometheus' own tooling does; [] means clean."""
    result = subprocess.run(
        [_require("promtool"), "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    return _problems(result)


def promtool_check_config(path: Path) -> list[str]:
    """Validate a prometheus.yml and the rule files it names; [] means valid."""
    result = subprocess.run(
        [_require("promtool"), "check", "config", str(path)], capture_output=True, text=True, timeout=60
    )
    return _problems(result)


def amtool_check_config(path: Path) -> list[str]:
    """Validate an Alertmanager config (schema, receivers, templates); [] means valid."""
    result = subprocess.run([_require("amtool"), "check-config", str(path)], capture_output=True, text=True, timeout=60)
    return _problems(result)


class _Server:
    """One binary in its own process group on 127.0.0.1, ready once `/-/ready` answers 200."""

    name = ""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.log = directory / f"{self.name}.log"
        self.pid: int | None = None
        self.url = ""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _launch(self, argv: Callable[[int], list[str]], timeout: float) -> None:
        """Start on a free port; another process may take it between probe and bind, so retry that once or twice."""
        if process.alive(self.pid):
            raise TestbedError(f"{self.name} is already running (PID {self.pid})")
        self.directory.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            port = free_port()
            self.url = f"http://127.0.0.1:{port}"
            self.pid = process.start(argv(port), self.log, self.directory)
            problem = self._wait_ready(timeout)
            if not problem:
                return
            hint = process.tail(self.log)
            self.stop()
            if "address already in use" not in hint:
                break
        raise TestbedError(f"{self.name} {problem} (on {self.url}, log {self.log})", hint=hint)

    def _wait_ready(self, timeout: float) -> str:
        """What went wrong, or "" once `/-/ready` answers 200."""
        deadline = time.monotonic() + timeout
        with httpx.Client(base_url=self.url, timeout=2.0) as http:
            while time.monotonic() < deadline:
                if not process.alive(self.pid):
                    return "exited during start-up"
                try:
                    if http.get("/-/ready").status_code == 200:
                        return ""
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
        return f"did not become ready within {timeout:.0f} s"

    def stop(self) -> None:
        """SIGTERM to the process group by PID, bounded, then SIGKILL; idempotent."""
        pid, self.pid = self.pid, None
        process.stop(pid)
        if pid:  # process.stop leaves a child that already exited as a zombie: reap it
            try:
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass

    def _get(self, path: str, **params: str) -> Any:
        if not self.url:
            raise TestbedError(f"{self.name} was not started")
        response = httpx.get(self.url + path, params=params, timeout=10.0)
        if response.status_code != 200:  # Prometheus explains a bad query in the body (HTTP 400)
            raise TestbedError(f"{self.name} GET {path} {params}: HTTP {response.status_code}", hint=response.text)
        return response.json()


class Prometheus(_Server):
    """A Prometheus scraping the given targets (optionally with rule files and an Alertmanager)."""

    name = "prometheus"

    def write_config(
        self,
        targets: list[str],
        *,
        scrape_interval: str = "1s",
        rule_files: Sequence[Path] = (),
        alertmanager: str | None = None,
        job: str = "hammersmith",
        metrics_path: str = "/metrics",
        bearer_token: str | None = None,
        scrape_options: dict[str, Any] | None = None,
    ) -> Path:
        """Write prometheus.yml (what start() runs with); targets are host:port, alertmanager a URL.

        `scrape_options` go into the scrape config as they are (scheme, tls_config, basic_auth ...).
        """
        # scrape_timeout defaults to 10s and must not exceed the interval, so it follows the interval
        scrape: dict[str, Any] = {"job_name": job, "metrics_path": metrics_path, **(scrape_options or {})}
        scrape["static_configs"] = [{"targets": targets}]
        if bearer_token is not None:
            scrape["authorization"] = {"type": "Bearer", "credentials": bearer_token}
        config: dict[str, Any] = {
            "global": {
                "scrape_interval": scrape_interval,
                "scrape_timeout": scrape_interval,
                "evaluation_interval": scrape_interval,
            },
            "rule_files": [str(path) for path in rule_files],
            "scrape_configs": [scrape],
        }
        if alertmanager is not None:
            url = urlsplit(alertmanager)
            am: dict[str, Any] = {"scheme": url.scheme or "http", "static_configs": [{"targets": [url.netloc]}]}
            if url.path.strip("/"):
                am["path_prefix"] = url.path
            config["alerting"] = {"alertmanagers": [am]}
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / "prometheus.yml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    def start(self, targets: list[str], *, timeout: float = 30.0, **options: Any) -> None:
        """Write prometheus.yml (`options` as for write_config) and start; ready in well under a second.

        The first scrape comes about 5 s after that: Prometheus 2.42 hands discovered targets (and
        Alertmanagers) over on a fixed 5 s tick, so wait_for() rather than query() right away.
        """
        config = self.write_config(targets, **options)
        prometheus = _require("prometheus")
        self._launch(
            lambda port: [
                prometheus,
                f"--config.file={config}",
                f"--storage.tsdb.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            timeout,
        )

    def query(self, expr: str) -> list[dict]:
        """An instant query: `data.result` (one dict per series, `value` is [timestamp, "string"])."""
        return list(self._get("/api/v1/query", query=expr)["data"]["result"])

    def wait_for(self, expr: str, predicate: Callable[[list[dict]], bool] = bool, timeout: float = 30.0) -> list[dict]:
        """Poll `expr` until predicate(result) holds (scrapes and rule evaluations take a few intervals)."""
        deadline = time.monotonic() + timeout
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() >= deadline:
                raise TestbedError(
                    f"{expr!r} did not satisfy the predicate within {timeout:.0f} s (last result: {result})",
                    hint=f"targets: {[(t['scrapeUrl'], t['health'], t['lastError']) for t in self.targets()]}",
                )
            time.sleep(0.2)

    def targets(self) -> list[dict]:
        """Active scrape targets, each with `health` ("up", "down", "unknown") and `lastError`."""
        return list(self._get("/api/v1/targets", state="active")["data"]["activeTargets"])


class Alertmanager(_Server):
    """An Alertmanager without clustering, for alert routing tests."""

    name = "alertmanager"

    def start(self, config_yaml: str, *, timeout: float = 30.0) -> None:
        """Write alertmanager.yml and start (cluster listener disabled, storage in the directory)."""
        config = self.directory / "alertmanager.yml"
        self.directory.mkdir(parents=True, exist_ok=True)
        config.write_text(config_yaml)
        alertmanager = _require("alertmanager")
        self._launch(
            lambda port: [
                alertmanager,
                f"--config.file={config}",
                f"--storage.path={self.directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
            ],
            timeout,
        )

    def alerts(self) -> list[dict]:
        """Alerts it currently holds (API v2), each with `labels`, `annotations` and `status`."""
        return list(self._get("/api/v2/alerts"))
