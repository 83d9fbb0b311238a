"""The one runner of kernel tools: a command, its stdin, its output or a KernelError."""
from __future__ import annotations

import shutil
import subprocess

from emulator.errors import KernelError, PrerequisiteError

SBIN_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


def run(cmd: list[str], input_: str | None = None, check: bool = True, timeout: float = 30) -> str:
    """Run a command; raise KernelError with its output when it fails and `check`."""
    proc = subprocess.run(cmd, input=input_, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise KernelError("command failed", " ".join(cmd[:6]), proc.stderr or proc.stdout)
    return proc.stdout


def which(tool: str, package: str) -> str:
    """Absolute path of a tool (PATH, then the sbin directories), or a PrerequisiteError naming the package."""
    path = shutil.which(tool) or shutil.which(tool, path=SBIN_PATH)
    if path is None:
        raise PrerequisiteError(f"{tool} not found: install the Debian package {package}")
    return path
