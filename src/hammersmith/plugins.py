"""Loading a registry: built-ins first, then whatever sites installed, the same way for both."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points


def load_plugins(package: str, builtin: tuple[str, ...], group: str) -> None:
    """Import a registry package's built-in modules, then every plugin of its entry point group.

    Modules register themselves by decorator on import, so core and site code share one API.
    """
    for module in builtin:
        importlib.import_module(f"{package}.{module}")
    for ep in entry_points(group=group):
        ep.load()
