"""network-port: create a network and a port on it in Neutron, read both back, delete both.

Both are named `hammersmith-smoke-<run id>`. Cleanup runs in a `finally` and is then verified
by listing by that name: anything still there fails the scenario, whatever happened before.
Where Neutron allocates no project network (Chameleon without a network reservation answers
`NoNetworkAvailable`, as the testbed does), the port goes on a shared network instead, as
users' instances do on `sharednet1`, and the result message says so.
"""

from __future__ import annotations

from typing import Any

from keystoneauth1 import adapter as ks_adapter

from hammersmith.detect.probes import checked
from hammersmith.detect.smoke import LeftBehind, Skip, SmokeContext, log, scenario

#: seconds a cleanup may take even after the scenario's deadline has passed
CLEANUP_SECONDS = 60


@scenario("network-port", set="cheap")
def network_port(ctx: SmokeContext) -> None:
    """Create a network and a port on it, read them back, delete them (skipped without Neutron)."""
    net = ctx.connection.adapter("network")
    if net is None:
        raise Skip("the catalog has no network (Neutron) service")
    created: list[tuple[str, str]] = []  # (collection, id), deleted in reverse
    failure: BaseException | None = None
    try:
        network_id = _create_network(ctx, net, created)
        ctx.check_deadline("creating the port")
        port = _post(net, "ports", {"name": ctx.tag, "network_id": network_id})
        created.append(("ports", port["id"]))
        for collection, item_id in created:
            ctx.check_deadline(f"reading back the {collection[:-1]}")
            item = checked(net.get(f"/{collection}/{item_id}")).json()[collection[:-1]]
            if item["name"] != ctx.tag:
                raise RuntimeError(f"{collection[:-1]} {item_id} read back as {item['name']!r}, not {ctx.tag!r}")
    except BaseException as exc:
        failure = exc
        raise
    finally:
        leftovers = cleanup(net, ctx.tag, created)
        if leftovers:
            after = f" (after: {failure})" if failure else ""
            log.error("site %s: smoke left behind in Neutron: %s", ctx.name, ", ".join(leftovers))
            raise LeftBehind(f"left behind in Neutron: {', '.join(leftovers)}{after}")


def _create_network(ctx: SmokeContext, net: ks_adapter.Adapter, created: list[tuple[str, str]]) -> str:
    """A project network of our own, or (where none can be allocated) a shared one to put the port on."""
    response = net.post("/networks", json={"network": {"name": ctx.tag}})
    if response.ok:
        network_id = response.json()["network"]["id"]
        created.append(("networks", network_id))
        return network_id
    if response.status_code == 503 and "NoNetworkAvailable" in response.text:
        shared = checked(net.get("/networks?shared=true&router:external=false&limit=1")).json()["networks"]
        if shared:
            ctx.notes.append(
                f"no project network can be allocated; the port went on shared network {shared[0]['name']!r}"
            )
            return shared[0]["id"]
    checked(response)
    raise RuntimeError(f"Neutron refused the network: HTTP {response.status_code} {response.text[:200]}")


def _post(net: ks_adapter.Adapter, collection: str, body: dict[str, Any]) -> dict[str, Any]:
    key = collection[:-1]
    return checked(net.post(f"/{collection}", json={key: body})).json()[key]


def cleanup(net: ks_adapter.Adapter, tag: str, created: list[tuple[str, str]]) -> list[str]:
    """Delete what was created (ports first), then list by name: what is still there, as 'kind id'."""
    for collection, item_id in reversed(created):
        try:
            response = net.delete(f"/{collection}/{item_id}", timeout=CLEANUP_SECONDS)
            if response.status_code not in (204, 404):
                log.error("cannot delete %s %s: HTTP %s", collection[:-1], item_id, response.status_code)
        except Exception as exc:
            log.error("cannot delete %s %s: %s", collection[:-1], item_id, exc)
    left = []
    for collection in ("ports", "networks"):
        try:
            items = checked(net.get(f"/{collection}?name={tag}", timeout=CLEANUP_SECONDS)).json()[collection]
        except Exception as exc:  # cannot even look: everything we created counts as left behind
            log.error("cannot list %s named %s: %s", collection, tag, exc)
            items = [{"id": i} for c, i in created if c == collection]
        left.extend(f"{collection[:-1]} {item['id']}" for item in items)
    return left
