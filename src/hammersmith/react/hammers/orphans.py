"""orphans: leases and instances whose project or user is disabled or gone from Keystone, reported to operators.

Nobody can act for a disabled project: its leases hold nodes and its instances hold addresses until an operator
decides (a project suspended for a week keeps its work; a deleted one does not). This hammer reports and never
acts. Chameleon's version read four services' databases, and crashed while parsing its arguments on every run.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hammersmith.cloud.snapshot import Snapshot
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding, finding
from hammersmith.detect.reservations import FINISHED
from hammersmith.react.hammers import Hammer, hammer


def owner_problem(
    project_id: str | None, user_id: str | None, projects: dict[str, dict[str, Any]], users: dict[str, dict[str, Any]]
) -> str | None:
    """Why nobody can answer for this object, or None."""
    project, user = projects.get(project_id or ""), users.get(user_id or "")
    if project is None:
        return f"project {project_id} does not exist in Keystone" if project_id else "no project"
    if not project.get("enabled", True):
        return f"project {project.get('name') or project_id} is disabled"
    if user_id and user is None:
        return f"user {user_id} does not exist in Keystone"
    if user is not None and not user.get("enabled", True):
        return f"user {user.get('name') or user_id} is disabled"
    return None


@hammer
class Orphans(Hammer):
    """Report (never act on) the leases and instances of disabled or deleted projects and users."""

    name = "orphans"
    reads = ("keystone",)
    listings = ("users",)
    subject = "orphan"

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        """Every lease (when Blazar was read) and instance (when Nova was), keyed lease/<id> and server/<id>."""
        found: dict[str, dict[str, Any]] = {}
        if snapshot.complete("blazar"):
            for lease in snapshot.data.get("leases") or []:
                if lease.get("status") not in FINISHED:
                    key = f"lease/{lease['id']}"
                    found[key] = {**lease, "uuid": key, "name": f"lease {lease.get('name') or lease['id']}"}
        if snapshot.complete("nova"):
            for server in snapshot.data.get("servers") or []:
                key = f"server/{server['id']}"
                found[key] = {**server, "uuid": key, "name": f"instance {server.get('name') or server['id']}"}
        return found

    def detect(self, snapshot: Snapshot, policy: Policy) -> list[Finding]:
        projects = {p["id"]: p for p in snapshot.data.get("projects") or []}
        users = {u["id"]: u for u in snapshot.data.get("users") or []}
        found = []
        for subject in self.subjects(snapshot).values():
            project = subject.get("project_id") or subject.get("tenant_id")
            if problem := owner_problem(project, subject.get("user_id"), projects, users):
                found.append(finding(self.name, subject, problem, "", subject.get("created_at")))
        return found

    def matches(self, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy, now: datetime) -> str | None:
        return None  # report only: nothing is planned, so nothing is re-checked
