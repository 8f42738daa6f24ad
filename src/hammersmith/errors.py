"""Every error hammersmith raises on purpose derives from one root.

HammersmithError          -- a problem an operator can fix; the CLI prints it without a traceback
├── ConfigError           -- the YAML file is missing, malformed or invalid (carries every problem)
├── CloudError            -- clouds.yaml lookup failed, or an endpoint is unreachable
├── StoreError            -- the state database can't be opened or migrated
└── TestbedError          -- the local testbed can't be installed, started or driven
"""

from __future__ import annotations

from dataclasses import dataclass


class HammersmithError(Exception):
    """Root of the tree; `hint` tells the operator what to do about it."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class ConfigProblem:
    """One thing wrong with a config file, pinned to a line."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


class ConfigError(HammersmithError):
    exit_code = 2

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = problems
        noun = "problem" if len(problems) == 1 else "problems"
        super().__init__(f"{len(problems)} {noun} in configuration:\n" + "\n".join(f"  {p}" for p in problems))


class CloudError(HammersmithError):
    pass


class StoreError(HammersmithError):
    pass


class TestbedError(HammersmithError):
    __test__ = False  # not a pytest test class despite the name
