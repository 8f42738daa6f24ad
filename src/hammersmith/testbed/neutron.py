"""An optional real Neutron (API server, ML2 flat, SQLite; noauth or Keystone) for the testbed.

Ironic's VIF records (`internal_info.tenant_vif_port_id`) are only written and cleared
through Neutron, so the faults and hammers about them need one running. Same pattern as
Ironic: its own cached virtualenv, 127.0.0.1, stopped by PID. Served by gunicorn through a
shim, because Neutron no longer ships a standalone server and oslo.config reads sys.argv.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from hammersmith.testbed import keystone, process, venvs

NEUTRON_VERSION = "29.0.0"
PHYSNET = "physnet1"

NEUTRON_CONF = """\
# written by hammersmith testbed
[DEFAULT]
core_plugin = ml2
service_plugins = router
auth_strategy = {auth_strategy}
api_paste_config = {dir}/api-paste.ini
# no message bus: agent notifications go nowhere (no agents run)
transport_url = fake://
notify_nova_on_port_status_changes = false
notify_nova_on_port_data_changes = false
dhcp_agent_notification = false
log_file = {dir}/neutron.log
host = hammersmith-neutron

[database]
connection = sqlite:///{dir}/neutron.sqlite

[oslo_concurrency]
lock_path = {dir}/lock

[oslo_policy]
policy_file = {dir}/policy.yaml
{keystone}"""
#: noauth runs as an elevated context without the `service` role; Ironic's VIF calls need what
#: Nova's service user may do (binding host/profile, MAC address). With Keystone, Ironic's
#: account has that role and Neutron's defaults apply.
NOAUTH_POLICY = """"create_port:binding:profile": ""
"create_port:binding:host_id": ""
"update_port:binding:profile": ""
"update_port:binding:host_id": ""
"update_port:binding:vnic_type": ""
"update_port:mac_address": ""
"""
#: docs/config.md's override for hammersmith's account: its `service` role sees every project's floating IPs
#: (by default only admin does; others get their own project's, silently)
KEYSTONE_POLICY = (
    '"get_floatingip": "(rule:admin_only) or (rule:service_api) or (role:reader and project_id:%(project_id)s)"\n'
    # the floating-ip reaper's keep and Blazar tags: without it Neutron leaves `tags` out of the listing, silently
    '"get_floatingip:tags": "(rule:admin_only) or (rule:service_api) or (role:reader and project_id:%(project_id)s)"\n'
    # the floating-ip reaper, and conflicting-macs on the provisioning network (an admin's, not shared)
    '"delete_floatingip": "(rule:admin_only) or (rule:service_api) or (role:member and project_id:%(project_id)s)"\n'
    '"get_network": "(rule:admin_only) or (rule:service_api) or (role:reader and project_id:%(project_id)s)'
    ' or rule:shared or rule:external or rule:context_is_advsvc"\n'
    '"delete_port": "(rule:admin_only) or (rule:service_api) or (role:member and project_id:%(project_id)s)"\n'
)
ML2_CONF = """\
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers =
extension_drivers = port_security

[ml2_type_flat]
# public: an external network for floating IPs, when a test needs one
flat_networks = physnet1,public
"""
SHIM = """\
import sys
sys.argv = sys.argv[:1]  # oslo.config parses argv; gunicorn's are not Neutron's
from neutron.wsgi.api import application  # noqa: E402,F401
"""
SCHEMA = """\
import sys
import sqlalchemy
from neutron.db.migration.models import head  # noqa: F401  (imports every model)
from neutron_lib.db import model_base
model_base.BASEV2.metadata.create_all(sqlalchemy.create_engine(sys.argv[1]))
"""


def venv_dir() -> Path:
    return venvs.venv_path("neutron", NEUTRON_VERSION)


def ensure_venv() -> Path:
    return venvs.ensure("neutron", NEUTRON_VERSION, "gunicorn")


class Neutron:
    """One Neutron API server with its config and SQLite database under `directory`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.log = self.dir / "neutron.stdout"

    def prepare(self, auth_url: str | None = None, password: str = "") -> None:
        """Config files (Keystone auth with the `neutron` account when `auth_url` is given) and a fresh
        schema, copied from a template cached beside the venv.

        Neutron's migrations fail on SQLite, so the schema comes from its models (as its unit tests do).
        """
        ensure_venv()
        (self.dir / "lock").mkdir(parents=True, exist_ok=True)
        authtoken = "\n" + keystone.authtoken_section(auth_url, "neutron", password) if auth_url else ""
        (self.dir / "neutron.conf").write_text(
            NEUTRON_CONF.format(dir=self.dir, auth_strategy="keystone" if auth_url else "noauth", keystone=authtoken)
        )
        (self.dir / "ml2_conf.ini").write_text(ML2_CONF)
        (self.dir / "policy.yaml").write_text(KEYSTONE_POLICY if auth_url else NOAUTH_POLICY)
        (self.dir / "n_wsgi.py").write_text(SHIM)
        shutil.copyfile(venv_dir() / "etc" / "neutron" / "api-paste.ini", self.dir / "api-paste.ini")
        db = self.dir / "neutron.sqlite"
        db.unlink(missing_ok=True)
        template = venv_dir() / "empty-neutron.sqlite"
        if not template.exists():
            script = self.dir / "schema.py"
            script.write_text(SCHEMA)
            process.run(
                [str(venv_dir() / "bin" / "python"), str(script), f"sqlite:///{template}.tmp"],
                "creating Neutron's schema",
            )
            Path(f"{template}.tmp").replace(template)
        shutil.copyfile(template, db)

    def start(self, port: int, timeout: float = 60.0) -> int:
        """One worker, one thread: Neutron on SQLite answers "database is locked" to concurrent writes."""
        env = {"OS_NEUTRON_CONFIG_DIR": str(self.dir), "OS_NEUTRON_CONFIG_FILES": "neutron.conf;ml2_conf.ini"}
        argv = venvs.gunicorn(venv_dir(), self.dir, port, "n_wsgi:application", threads=1, timeout=120)
        # 401: with Keystone the middleware answers for the loaded app
        return process.serve(
            "Neutron",
            argv,
            self.log,
            self.dir,
            {**env, "PATH": os.environ.get("PATH", "")},
            f"http://127.0.0.1:{port}/v2.0/networks",
            (200, 401),
            timeout,
        )
