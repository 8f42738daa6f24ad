"""What every benchmark records about the machine it ran on, so figures can be compared honestly."""

from __future__ import annotations

import os
import platform
from typing import Any

from hammersmith.testbed.ironic import IRONIC_VERSION


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "ironic": IRONIC_VERSION,
        "loadavg_at_end": os.getloadavg(),
    }
