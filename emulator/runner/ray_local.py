"""A local run's Ray: every server on loopback, no usage stats, no cloud metadata probes.

Ray replaces a loopback node address by the host's own address (`resolve_ip_for_localhost`);
its C++ servers (GCS, raylet, object manager, every worker) then listen on all interfaces.
Kept at 127.0.0.1, they listen on loopback only, and so do the dashboard agent, the
runtime-env agent and the metrics agent (they bind the node address). Ray's API server
process (started even without a dashboard) asks the cloud metadata servers
(169.254.169.254, metadata.google.internal) which cloud it runs on whenever it finds no
`~/ray_bootstrap_config.yaml`, whatever the usage-stats setting: Ray's processes get a HOME
holding an empty one (and the real `~/.ray`, where Ray keeps its authentication token).
Runs that join a Ray cluster (`--address`) keep its real addresses.

Run as a module, this is `ray start` for a simulated machine, bound to loopback the same way.
"""
from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Iterator

import ray
from ray._private import ray_constants

from emulator.runner import signals

LOOPBACK = "127.0.0.1"
RAY_HOME = "/run/kubemu/ray-home"
NO_USAGE_STATS = {"RAY_USAGE_STATS_ENABLED": "0"}


def _ray_home() -> str:
    """A HOME for Ray's processes: an empty cluster config and the real ~/.ray."""
    real = os.path.join(os.path.expanduser("~"), ".ray")
    os.makedirs(real, exist_ok=True)
    os.makedirs(RAY_HOME, exist_ok=True)
    config = os.path.join(RAY_HOME, "ray_bootstrap_config.yaml")
    if not os.path.exists(config):
        with open(config, "w") as f:
            f.write("{}\n")
    link = os.path.join(RAY_HOME, ".ray")
    if os.path.realpath(link) != os.path.realpath(real):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(link)
        os.symlink(real, link)
    return RAY_HOME


@contextlib.contextmanager
def _env(changes: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in changes}
    os.environ.update(changes)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextlib.contextmanager
def _no_hangup() -> Iterator[None]:
    """SIGHUP ignored while Ray starts its processes: they inherit it, so a dropped terminal
    (whose SIGHUP reaches the driver's whole process group) cannot kill Ray under the teardown."""
    try:
        old = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    except ValueError:          # not the main thread: nothing to protect
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGHUP, old)


def init(address: str | None, temp_dir: str, **kwargs) -> None:
    """ray.init for a run: a local Ray on loopback (address None) or the given cluster."""
    with _no_hangup(), _env(NO_USAGE_STATS):
        if address:
            ray.init(address=address, **kwargs)
        else:
            keep = ray_constants.ENABLE_RAY_CLUSTER
            ray_constants.ENABLE_RAY_CLUSTER = False   # Ray then resolves "127.0.0.1" to itself
            try:
                with _env({"HOME": _ray_home()}):
                    ray.init(_node_ip_address=LOOPBACK, _temp_dir=temp_dir, **kwargs)
            finally:
                ray_constants.ENABLE_RAY_CLUSTER = keep
    signals.rearm()   # ray.init replaced the SIGTERM handler of a stoppable run


def start_node_argv() -> list[str]:
    """The command that starts a simulated machine's Ray node (then `ray start`'s arguments)."""
    return [sys.executable, "-m", "emulator.runner.ray_local", "start", f"--node-ip-address={LOOPBACK}"]


def _keep_host(host: str) -> str:
    return host


if __name__ == "__main__":
    from ray._private import services
    from ray.scripts.scripts import main
    services.resolve_ip_for_localhost = _keep_host   # keep 127.0.0.1 (see the module's docstring)
    sys.argv[0] = "ray"
    sys.exit(main())
