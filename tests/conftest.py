"""Test tiers: unit (pure), netns (root + namespaces), e2e (root, OVS, Ray: whole clusters).

Tests needing root or kernel features skip only when the machine truly lacks them,
saying which.
"""
import os
import shutil

import pytest


def _missing_for(marker: str) -> str | None:
    if marker in ("netns", "e2e") and os.geteuid() != 0:
        return "needs root (network namespaces, iptables)"
    if marker in ("netns", "e2e") and shutil.which("ip") is None:
        return "needs iproute2"
    if marker == "e2e":
        for cmd in ("ovs-vswitchd", "ovsdb-server", "mnexec", "dnsmasq"):
            if shutil.which(cmd) is None:
                return f"needs {cmd} (run ./scripts/setup.sh)"
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        for marker in ("netns", "e2e"):
            if item.get_closest_marker(marker):
                why = _missing_for(marker)
                if why:
                    item.add_marker(pytest.mark.skip(reason=why))
