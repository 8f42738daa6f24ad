"""The full tier's Placement and Glance, real and behind a real Keystone: what Nova's Ironic driver does with them."""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from openstack.connection import Connection

from hammersmith.testbed import glance, keystone, placement, process
from hammersmith.testbed.ironic import free_port, port_in_use

pytestmark = pytest.mark.integration  # real services, like the Ironic testbed's tests
MIB = 1024 * 1024


@dataclass
class Service:
    directory: Path
    port: int
    pid: int

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass
class Stack:
    auth_url: str
    admin_password: str
    services: dict[str, Service] = field(default_factory=dict)

    def admin(self) -> Connection:
        return keystone.admin(self.auth_url, self.admin_password)


def rss_mib(pid: int) -> float:
    """Resident memory of pid's process group (gunicorn's master and its worker)."""
    total_kib = 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and process.group(int(entry.name)) == pid:
            try:
                status = Path(f"/proc/{entry.name}/status").read_text()
            except OSError:
                continue
            total_kib += next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
    return total_kib / 1024


def installed(ensure_venv: Callable[[], Path], venv_dir: Path) -> str:
    """Install a venv, and say how long it took when it was not cached (a cold install)."""
    cold = not (venv_dir / ".hammersmith-complete").exists()
    started = time.monotonic()
    ensure_venv()
    return f"{time.monotonic() - started:.1f} s cold" if cold else "cached"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Keystone with the `placement` and `image` catalog entries and both accounts, then Placement and Glance."""
    root = tmp_path_factory.mktemp("placement-glance")
    installs = {
        "keystone": installed(keystone.ensure_venv, keystone.venv_dir()),
        "placement": installed(placement.ensure_venv, placement.venv_dir()),
        "glance": installed(glance.ensure_venv, glance.venv_dir()),
    }
    passwords = {name: secrets.token_urlsafe(18) for name in ("admin", placement.USER, glance.USER)}
    ports = {name: free_port() for name in ("keystone", "placement", "glance")}
    stack = Stack(f"http://127.0.0.1:{ports['keystone']}/v3", passwords["admin"])
    identity = keystone.Keystone(root / "keystone")
    servers: dict[str, placement.Placement | glance.Glance] = {
        "placement": placement.Placement(root / "placement"),
        "glance": glance.Glance(root / "glance"),
    }
    starts: dict[str, float] = {}
    try:
        identity.prepare(ports["keystone"], passwords["admin"])
        started = time.monotonic()
        stack.services["keystone"] = Service(identity.dir, ports["keystone"], identity.start(ports["keystone"]))
        starts["keystone"] = time.monotonic() - started
        keystone.register(
            stack.auth_url,
            passwords,
            {
                placement.SERVICE_TYPE: f"http://127.0.0.1:{ports['placement']}",
                glance.SERVICE_TYPE: f"http://127.0.0.1:{ports['glance']}",
            },
            {placement.USER: placement.ROLES, glance.USER: glance.ROLES},
        )
        for name, server in servers.items():
            server.prepare(stack.auth_url, passwords[name])
            started = time.monotonic()
            stack.services[name] = Service(server.dir, ports[name], server.start(ports[name]))
            starts[name] = time.monotonic() - started
        print()
        for name, service in stack.services.items():
            print(f"{name}: install {installs[name]}, start {starts[name]:.1f} s, RSS {rss_mib(service.pid):.0f} MiB")
        yield stack
    finally:
        for service in reversed(stack.services.values()):
            if process.owned(service.pid, service.directory):
                process.stop(service.pid)


def test_placement_and_glance_refuse_requests_without_a_token(stack: Stack) -> None:
    assert httpx.get(f"{stack.services['placement'].url}/resource_providers").status_code == 401
    assert httpx.get(f"{stack.services['glance'].url}/v2/images").status_code == 401


def test_a_baremetal_resource_provider_is_created_listed_and_deleted(stack: Stack) -> None:
    """What nova-compute does for each Ironic node: a provider named after the node, one CUSTOM_BAREMETAL."""
    conn = stack.admin()
    try:
        api = conn.placement
        api.create_resource_class(name="CUSTOM_BAREMETAL")
        node = "3f4c1e2a-5b6d-4e7f-8a9b-0c1d2e3f4a5b"
        provider = api.create_resource_provider(name=node)
        api.create_resource_provider_inventory(provider, "CUSTOM_BAREMETAL", total=1)
        assert [p.name for p in api.resource_providers()] == [node]
        (inventory,) = api.resource_provider_inventories(provider)
        assert (inventory.resource_class, inventory.total) == ("CUSTOM_BAREMETAL", 1)
        api.delete_resource_provider(provider, ignore_missing=False)
        assert list(api.resource_providers()) == []
    finally:
        conn.close()


def test_a_raw_image_is_uploaded_active_listed_and_deleted(stack: Stack) -> None:
    """What the full tier's boots need: an image in Glance's file store, in the testbed's directory."""
    data = os.urandom(MIB)
    conn = stack.admin()
    try:
        api = conn.image
        image = api.create_image(name="hammersmith-raw", data=data, disk_format="raw", container_format="bare")
        image = api.get_image(image.id)
        assert (image.status, image.size) == ("active", MIB)
        assert (stack.services["glance"].directory / "images" / image.id).read_bytes() == data
        assert [i.name for i in api.images()] == ["hammersmith-raw"]
        api.delete_image(image, ignore_missing=False)
        assert list(api.images()) == []
        assert not (stack.services["glance"].directory / "images" / image.id).exists()
    finally:
        conn.close()


def test_stopping_by_pid_leaves_no_process_and_no_port(stack: Stack) -> None:
    print("\nRSS after the tests: " + ", ".join(f"{n} {rss_mib(s.pid):.0f} MiB" for n, s in stack.services.items()))
    for service in reversed(stack.services.values()):
        assert process.owned(service.pid, service.directory)
        process.stop(service.pid)
    for name, service in stack.services.items():
        with pytest.raises(ProcessLookupError):
            os.killpg(service.pid, 0)
        assert not port_in_use(service.port) and process.listeners(service.port) == {}, name
