"""`kubemu run` of a scenario whose pod cannot start: exit 1, the reason in the output."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_kubemu_run_of_a_bad_command_exits_1_naming_the_reason():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    res = subprocess.run([sys.executable, "-m", "emulator.cli", "run", os.path.join(root, "scenarios", "bad-command.yaml")],
                         capture_output=True, text=True, timeout=600, cwd=root,
                         env={**os.environ, "PYTHONPATH": root})
    out = res.stdout + res.stderr
    assert res.returncode == 1, out[-3000:]
    assert "waiting for pod/broken to be ready: pod/broken: app: " in out, out[-3000:]
    assert ("RunContainerError" in out or "CrashLoopBackOff" in out) and "/no/such/binary" in out, out[-3000:]
    report = next(line.split("report: ", 1)[1].split()[0] for line in out.splitlines() if "report: " in line)
    assert "/no/such/binary" in open(report).read()          # the report's Error row
