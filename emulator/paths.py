"""Where a run keeps its files: the per-run state directory, Ray's temp dir, /etc/netns.

Low-level (imports only emulator.naming) so that the node agent, the cloud controller,
the NetworkPolicy tools and `kubemu clean` share one definition.
"""
from __future__ import annotations

import os

from emulator.naming import PREFIX

STATE_ROOT = "/run/kubemu"
RUN_ENV = "KUBEMU_RUN_ID"     # set in the driver's environment (and inherited by its processes)
ETC_NETNS = "/etc/netns"      # `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc


def state_dir(run_id: str) -> str:
    """Per-run state (private OVS, driver record) under /run/kubemu/kubemu<id>."""
    return os.path.join(STATE_ROOT, f"{PREFIX}{run_id}")


def ray_temp_dir(run_id: str) -> str:
    """Ray's temp dir for the run (its session logs and sockets)."""
    return f"/tmp/{PREFIX}{run_id}-ray"
