"""hammersmith's own account on the Keystone tier: exactly the least-privilege roles docs/config.md tells operators
to grant, enough for a hammer to fix a real fault through the CLI, and refused what lies beyond them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml
from openstack.config import OpenStackConfig
from openstack.connection import Connection

from hammersmith.testbed import keystone, neutron
from hammersmith.testbed.ironic import CLOUD_NAME
from tests.conftest import Testbed, hammersmith

DOCS = Path(__file__).resolve().parents[2] / "docs" / "config.md"
ROLE_ADD = re.compile(r"^\$ openstack role add --user hammersmith .*--project service .* (\S+)$", re.MULTILINE)


def account(bed: Testbed) -> Connection:
    """The account exactly as clouds.yaml describes it."""
    config = OpenStackConfig(config_files=[str(bed.workdir / "clouds.yaml")], load_envvars=False)
    return Connection(config=config.get_one(cloud=CLOUD_NAME))


def test_the_account_has_exactly_the_roles_the_docs_grant(keystone_testbed: Testbed) -> None:
    """The testbed grants what operators are told to, and the overrides it deploys are the documented ones."""
    docs = DOCS.read_text()
    assert sorted(ROLE_ADD.findall(docs)) == sorted(keystone.ROLES["hammersmith"]) == ["member", "service"]
    assert keystone.POLICY.strip() in docs and neutron.KEYSTONE_POLICY.strip() in docs

    assert keystone_testbed.state.auth_url
    ident = keystone.admin(keystone_testbed.state.auth_url, keystone_testbed.state.passwords["admin"]).identity
    user = ident.find_user("hammersmith", domain_id="default", ignore_missing=False)
    names = {role.id: role.name for role in ident.roles()}
    service = ident.find_project(keystone.SERVICE_PROJECT, domain_id="default", ignore_missing=False)
    assignments = {
        (json.dumps(a.scope, sort_keys=True), names[a.role["id"]]) for a in ident.role_assignments(user_id=user.id)
    }
    scope = json.dumps({"project": {"id": service.id}}, sort_keys=True)
    assert assignments == {(scope, "member"), (scope, "service")}  # no admin, nothing system- or domain-wide
    conn = account(keystone_testbed)
    assert set(conn.session.auth.get_access(conn.session).role_names) == {"member", "reader", "service"}


def test_a_hammer_fixes_a_real_fault_through_the_least_privilege_account(
    keystone_testbed: Testbed, tmp_path: Path
) -> None:
    """dirty-port through the CLI, then `hammersmith sweep --apply` logged in with clouds.yaml's account."""
    injected = hammersmith("testbed", "inject", "dirty-port", "--json", cwd=keystone_testbed.workdir)
    assert injected.returncode == 0, injected.stderr
    (node,) = json.loads(injected.stdout)
    bm = keystone_testbed.conn.baremetal
    assert bm.list_node_vifs(node)
    hammers = {"dirty-ports": "apply", "error-resetter": "off", "stale-inspection": "off"}
    site = {"cloud": CLOUD_NAME, "policy": {"grace_minutes": 0, "hammers": hammers}}
    settings = {"state_dir": str(tmp_path), "sites": {"keystone": site}}
    (tmp_path / "hammersmith.yaml").write_text(yaml.safe_dump(settings))

    swept = hammersmith(
        "--config", str(tmp_path / "hammersmith.yaml"), "sweep", "--apply", "--json", cwd=keystone_testbed.workdir
    )
    assert swept.returncode == 0, swept.stderr
    result = json.loads(swept.stdout)
    assert result["error"] is None
    (action,) = [a for a in result["actions"] if a["node"] == node]
    assert (action["hammer"], action["mode"], action["outcome"]) == ("dirty-ports", "apply", "fixed"), action
    assert bm.list_node_vifs(node) == []  # gone, as the testbed's admin sees it
    ports = bm.get(f"/ports/detail?node={node}", microversion="1.78").json()["ports"]
    assert not [p for p in ports if p["internal_info"].get("tenant_vif_port_id")]


def test_what_lies_beyond_the_grant_is_refused(keystone_testbed: Testbed) -> None:
    """Neither Keystone's admin (a user of its own) nor Neutron's (a network in another project)."""
    conn = account(keystone_testbed)
    user = conn.identity.post("/users", json={"user": {"name": "hammersmith-was-here"}}, raise_exc=False)
    assert user.status_code == 403, user.text
    other = keystone.admin(
        keystone_testbed.state.auth_url or "", keystone_testbed.state.passwords["admin"]
    ).identity.find_project("admin", domain_id="default", ignore_missing=False)
    network = conn.network.post("/networks", json={"network": {"name": "x", "project_id": other.id}}, raise_exc=False)
    assert network.status_code == 403, network.text
