"""One exception base for kubemu, with specific subclasses that carry context.

The CLI turns a `KubemuError` into one clear line and a non-zero exit code; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations


class KubemuError(Exception):
    """Base of every error kubemu reports to the user as one line."""

    exit_code = 1


class ConfigError(KubemuError):
    """Bad input: a scenario, topology or manifest that cannot be used (exit 2)."""

    exit_code = 2

    def __init__(self, message: str, file: str | None = None, line: int | None = None,
                 field: str | None = None) -> None:
        self.message, self.file, self.line, self.field = message, file, line, field
        super().__init__(str(self))

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file + (f":{self.line}" if self.line else "") + ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


class PrerequisiteError(KubemuError):
    """The machine lacks something kubemu needs (a command, a kernel feature, root)."""

    exit_code = 3


class KernelError(KubemuError):
    """A kernel operation (netlink, iptables-restore, OVS) failed."""

    def __init__(self, message: str, command: str | None = None, output: str = "") -> None:
        self.command, self.output = command, output
        detail = f" ({command})" if command else ""
        tail = f": {output.strip().splitlines()[-1]}" if output.strip() else ""
        super().__init__(f"{message}{detail}{tail}")


class Timeout(KubemuError):
    """A wait step or a bring-up phase took longer than allowed."""

    exit_code = 1
