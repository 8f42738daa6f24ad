"""floating-ip-reaper: floating IPs associated with nothing, left behind for longer than a grace period.

A public address is scarce: one held by a project that no longer uses it is one another project cannot get.
Chameleon's reaper read Neutron's database: its LEFT JOIN on tags let a floating IP tagged `blazar` and something
else through (a reserved address deleted under its lease), and its second version never looked at `port_id`.
Here: any tag counts, the port is checked, and Blazar's own list of reservable addresses is asked too.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from openstack.connection import Connection
from openstack.exceptions import raise_from_response

from hammersmith.cloud.connection import SiteConnection
from hammersmith.cloud.snapshot import Snapshot, server_date
from hammersmith.config import Policy
from hammersmith.detect.checks import Finding
from hammersmith.detect.reservations import Reservations
from hammersmith.react import safety
from hammersmith.react.hammers import Action, Live, ObjectHammer, hammer

#: tags Blazar puts on the floating IPs it creates for a lease (`blazar`, `reservation:<id>`)
BLAZAR_TAG = "blazar"
RESERVATION_TAG = "reservation:"


def neutron_time(value: str | None) -> datetime | None:
    """Neutron's timestamps ("2026-11-30T20:00:00Z")."""
    return datetime.fromisoformat(value) if value else None


def blazar_addresses(floatingips: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(network, address) of every floating IP Blazar may hand out: a lease reserves only these."""
    return {(str(f.get("floating_network_id")), str(f.get("floating_ip_address"))) for f in floatingips}


def left_alone(fip: dict[str, Any], policy: Policy) -> bool:
    """Someone's to keep: a keep tag, Blazar's tags (any of them, whatever else it is tagged), an address Blazar
    reserves, an excluded project (by ID or name)."""
    tags = {str(t) for t in fip.get("tags") or []}
    blazars = any(t == BLAZAR_TAG or t.startswith(RESERVATION_TAG) for t in tags)
    project = {fip.get("project_id"), fip.get("project_name")} - {None, ""}
    return bool(
        tags & set(policy.keep_tags) or blazars or fip.get("blazar_owned") or project & set(policy.excluded_projects)
    )


@hammer
class FloatingIpReaper(ObjectHammer):
    """Delete a floating IP associated with no port, unchanged for `floating_ip_grace_hours`, unless it is kept
    (a `keep_tags` tag, an excluded project) or Blazar's (tagged by Blazar, or an address Blazar reserves).

    Subjects carry, beside Neutron's fields, the facts `judge` and `guard` need: `project_name` (None: Keystone not
    read, "": no such project) and `blazar_owned` (None: Blazar is in the catalog but could not be read: fails closed).
    """

    name = "floating-ip-reaper"
    subject = "floating-ip"
    reads = ("neutron",)
    kept = ("floating_ip_address", "port_id", "status", "project_id", "tags", "updated_at", "revision_number")

    def subjects(self, snapshot: Snapshot) -> dict[str, dict[str, Any]]:
        blazar = snapshot.services.get("blazar")
        listed = snapshot.data.get("blazar_floatingips")
        if blazar is None or blazar.status == "absent":
            owned: set[tuple[str, str]] | None = set()
        else:  # incomplete, or the optional listing refused: nobody knows which addresses are Blazar's
            owned = blazar_addresses(listed) if blazar.status == "ok" and listed is not None else None
        projects_read = snapshot.data.get("projects") is not None
        found = {}
        for fip in snapshot.data.get("floating_ips") or []:
            name = snapshot.project_names.get(fip.get("project_id") or "", "") if projects_read else None
            facts = {
                "project_name": name,
                "blazar_owned": None
                if owned is None
                else (fip["floating_network_id"], fip["floating_ip_address"]) in owned,
            }
            found[self.key(fip["id"])] = self.subject_of({**fip, **facts}, fip["id"], fip["floating_ip_address"])
        return found

    def judge(self, subject: dict[str, Any], context: dict[str, Any], policy: Policy, now: datetime) -> str | None:
        """Idle, aged, and nobody's to keep: a kept or Blazar-owned address is no finding at all."""
        if subject.get("port_id") or subject.get("status") == "ACTIVE" or left_alone(subject, policy):
            return None
        changed = neutron_time(subject.get("updated_at") or subject.get("created_at"))
        if changed is None or now - changed < timedelta(hours=policy.floating_ip_grace_hours):
            return None
        hours = (now - changed).total_seconds() / 3600
        return (
            f"floating IP {subject['floating_ip_address']} associated with no port, unchanged for {hours:.1f} h "
            f"(grace {policy.floating_ip_grace_hours:g} h)"
        )

    def guard(
        self, subject: dict[str, Any], policy: Policy, now: datetime, conn: Connection, reservations: Reservations
    ) -> None:
        """What cannot be told is not touched."""
        if "tags" not in subject:  # Neutron leaves the field out where its policy (get_floatingip:tags) says no
            raise safety.Refused("Neutron shows no tags (policy get_floatingip:tags): keep tags unknown (fails closed)")
        if subject.get("blazar_owned") is None:
            raise safety.Refused("Blazar's floating IPs could not be read: reservable addresses unknown (fails closed)")
        if subject.get("project_name") is None and policy.excluded_projects:
            raise safety.Refused("project names unknown (Keystone not read): excluded_projects cannot be matched")

    def plan(self, found: Finding, node: dict[str, Any], ports: list[dict[str, Any]], policy: Policy) -> list[Action]:
        params = {"floating_ip_address": node["floating_ip_address"], "project_id": node.get("project_id")}
        return [Action(self.name, found.node_uuid, found.node_name, "delete", found.summary, params)]

    def read(self, site: SiteConnection, key: str) -> Live:
        """The floating IP now (404 raises NotFoundException), its project's name and Blazar's addresses."""
        ident = self.ident(key)
        network = site.adapter("network")
        if network is None:
            raise RuntimeError("the catalog has no network (Neutron) endpoint")
        response = network.get(f"/floatingips/{ident}", raise_exc=False)
        raise_from_response(response)
        fip = response.json()["floatingip"]
        owned: set[tuple[str, str]] = set()
        if blazar := site.adapter("reservation"):
            listed = blazar.get("/floatingips", raise_exc=False)
            raise_from_response(listed)
            owned = blazar_addresses(listed.json()["floatingips"])
        facts = {
            "project_name": self._project_name(site, fip.get("project_id")),
            "blazar_owned": (fip["floating_network_id"], fip["floating_ip_address"]) in owned,
        }
        subject = self.subject_of({**fip, **facts}, ident, fip["floating_ip_address"])
        return Live(subject, [], server_date(response) or datetime.now(UTC))

    def _project_name(self, site: SiteConnection, project_id: str | None) -> str | None:
        """ "" when Keystone has no such project, None when it cannot say (no Keystone, or refused)."""
        identity = site.adapter("identity")
        if identity is None or not project_id:
            return None
        response = identity.get(f"/projects/{project_id}", raise_exc=False)
        if response.status_code == 404:
            return ""
        return str(response.json()["project"]["name"]) if response.status_code == 200 else None

    def execute(self, conn: Connection, action: Action, live: Live, lease: safety.Lease) -> None:
        """Only the revision that was re-checked: associated (or tagged) since, Neutron answers 412 and keeps it."""
        conn.network.delete_ip(
            self.ident(action.node_uuid), ignore_missing=True, if_revision=live.node.get("revision_number")
        )
