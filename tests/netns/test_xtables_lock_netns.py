"""Each emulated node's iptables takes its own xtables lock, not the host's /run/xtables.lock.

Two node namespaces, each with its runner's lock file: while node A's lock is held, A's
restore waits and gives up naming the lock, and node B's restore goes through at once.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from typing import Iterator

import pytest

from emulator.errors import KernelError
from emulator.kernel.iptables import IptablesRunner, node_lock_file
from emulator.naming import new_run_id

pytestmark = [pytest.mark.netns, pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
              pytest.mark.skipif(shutil.which("iptables-legacy-restore") is None, reason="needs iptables-legacy")]

PAYLOAD = "*filter\n:KUBEMU-LOCKTEST - [0:0]\nCOMMIT\n"


@pytest.fixture
def two_nodes() -> Iterator[list[str]]:
    """Two namespaces `kubemu<id>-lk<i>`, deleted whatever happens."""
    rid = new_run_id()
    names = [f"kubemu{rid}-lk{i}" for i in (1, 2)]
    try:
        for n in names:
            subprocess.run(["ip", "netns", "add", n], check=True)
        yield names
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], check=False)


def test_a_held_node_lock_stalls_only_that_node(two_nodes, tmp_path) -> None:
    a, b = (IptablesRunner.in_netns(n, "legacy", lock_file=node_lock_file(str(tmp_path), n)) for n in two_nodes)
    a.wait_seconds = 1
    assert a.lock_file != b.lock_file
    with open(a.lock_file, "w") as held:   # another app of node A holds its lock
        fcntl.flock(held, fcntl.LOCK_EX)
        b.restore(PAYLOAD)
        assert ":KUBEMU-LOCKTEST" in b.save(("filter",))
        with pytest.raises(KernelError, match="xtables lock"):
            a.restore(PAYLOAD)
    a.restore(PAYLOAD)   # released: A goes through too
    assert ":KUBEMU-LOCKTEST" in a.save(("filter",))


# A stand-in for a restore starved of CPU: its input arrives after a pause (`read` takes one line at a time).
SLOW_INPUT = ["sh", "-c", '{ IFS= read -r a; IFS= read -r b; printf "%s\\n%s\\n" "$a" "$b"; sleep 2; cat; } | "$@"',
              "sh", "ip", "netns", "exec"]


def test_a_node_restore_slower_than_the_lock_wait_is_not_cut_short(two_nodes, tmp_path) -> None:
    """`-w N` arms alarm(N) when the lock is taken: a restore still reading then fails
    ("COMMIT expected"). A node's runner waits with plain `-w`: no alarm."""
    ns = two_nodes[0]
    lock = node_lock_file(str(tmp_path), ns)
    timed = IptablesRunner([*SLOW_INPUT, ns], "legacy", lock_file=lock, wait_seconds=1)
    with pytest.raises(KernelError, match="COMMIT expected"):
        timed.restore(PAYLOAD + "*filter\n-A KUBEMU-LOCKTEST -j ACCEPT\nCOMMIT\n")
    node = IptablesRunner.in_netns(ns, "legacy", lock_file=lock)
    assert node.wait_seconds is None
    node.ns_exec = [*SLOW_INPUT, ns]
    node.restore(PAYLOAD + "*filter\n-A KUBEMU-LOCKTEST -j ACCEPT\nCOMMIT\n")
    assert "-A KUBEMU-LOCKTEST -j ACCEPT" in IptablesRunner.in_netns(ns, "legacy", lock_file=lock).save(("filter",))
