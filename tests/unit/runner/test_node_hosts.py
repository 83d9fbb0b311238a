"""Node hosts: grouping hosts into processes, the per-host handle, routing calls and log files."""
from __future__ import annotations

import logging
import os
import pickle
import threading
import time

import pytest

from emulator.node import node_logs
from emulator.node.host_process import NodeHost
from emulator.records.hosts import HostSpec
from emulator.runner.node_hosts import (SHARED_INFORMERS_ENV, HostedAgent, max_calls, plan_groups,
                                        shared_informers_wanted)

pytestmark = pytest.mark.unit


def test_groups_follow_machines_and_are_even() -> None:
    placement = {f"n{i}": i % 2 for i in range(10)} | {"inet": 0}
    groups = plan_groups(placement, 2, per_process=3)
    assert [m for m, _ in groups] == [0, 0, 1, 1]
    assert groups[0][1] + groups[1][1] == ["n0", "n2", "n4", "n6", "n8", "inet"]
    assert [len(h) for _, h in groups] == [3, 3, 3, 2]
    assert sorted(h for _, hs in groups for h in hs) == sorted(placement)


def test_one_group_per_machine_by_default_and_empty_machines_have_none() -> None:
    placement = {f"n{i}": 0 for i in range(100)} | {"c": 2}
    assert [(m, len(h)) for m, h in plan_groups(placement, 3)] == [(0, 50), (0, 50), (2, 1)]
    assert [(m, len(h)) for m, h in plan_groups(placement, 3, per_process=1000)] == [(0, 100), (2, 1)]
    with pytest.raises(ValueError):
        plan_groups(placement, 3, per_process=0)


def test_the_prober_gets_a_process_of_its_own_beside_many_hosts_only() -> None:
    many = {f"n{i}": 0 for i in range(40)} | {"prober": 0, "far": 1}
    groups = plan_groups(many, 2, alone=frozenset({"prober"}))
    assert groups[0] == (0, ["prober"]) and [(m, len(h)) for m, h in groups[1:]] == [(0, 40), (1, 1)]
    few = {f"n{i}": 0 for i in range(3)} | {"prober": 0}
    assert plan_groups(few, 1, alone=frozenset({"prober"})) == [(0, ["n0", "n1", "n2", "prober"])]


def test_concurrency_grows_with_hosts_within_bounds() -> None:
    assert max_calls(1) == 64 and max_calls(40) == 160 and max_calls(500) == 256


class FakeActor:
    """Records `call.remote` as a node host's handle would receive it."""

    def __init__(self) -> None:
        self.calls: list = []
        self.call = self

    def remote(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        return "ref"


def test_handle_maps_methods_onto_the_host_call() -> None:
    actor = FakeActor()
    agent = HostedAgent(actor, "n1")
    assert agent.chaos.remote("crash", down=2) == "ref"
    assert actor.calls == [(("n1", "chaos", "crash"), {"down": 2})]
    with pytest.raises(AttributeError):
        agent._private
    copy = pickle.loads(pickle.dumps(HostedAgent("actor", "n2")))
    assert (copy.host, copy.name) == ("actor", "n2")


def spec(name: str) -> HostSpec:
    return HostSpec(name=name, role="host", ip="10.0.0.1", gateway="10.0.0.254", fabric_port=f"p-{name}")


@pytest.fixture
def root_logging():
    """Restore the root logger's handlers after a node host replaced kubemu's."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        if h not in handlers:
            root.removeHandler(h)
            h.close()
    for h in handlers:
        if h not in root.handlers:
            root.addHandler(h)
    root.setLevel(level)


def test_calls_reach_the_named_agent_and_log_into_its_file(tmp_path, root_logging) -> None:
    host = NodeHost("q3zx", [spec("a"), spec("b")], str(tmp_path), "0-0")
    assert host.hosts() == ["a", "b"] and host.pid() == os.getpid()
    assert host.call("b", "ping") == "b"
    with pytest.raises(KeyError, match="not in node host 0-0"):
        host.call("zz", "ping")
    with pytest.raises(AttributeError):
        host.call("a", "_netns_of", "")

    def in_node(text: str) -> None:   # a thread a node's component starts (and its threads) log with its node
        def outer() -> None:
            inner = threading.Thread(target=lambda: logging.getLogger("x").warning(text + " (inner)"))
            inner.start()
            inner.join()
            logging.getLogger("x").warning(text)
        t = threading.Thread(target=outer)
        t.start()
        t.join()
    with node_logs.tagged("a"):
        in_node("from a's thread")
        logging.getLogger("x").warning("from a's call")
    with node_logs.tagged("b"):
        in_node("from b's thread")
    logging.getLogger("x").warning("from the process")
    logs = tmp_path / "logs"
    a, b = (logs / "agent-a.log").read_text(), (logs / "agent-b.log").read_text()
    own = (logs / "nodehost-0-0.log").read_text()
    assert "from a's thread" in a and "from a's thread (inner)" in a and "from a's call" in a and "from b" not in a
    assert "from b's thread" in b and "from a" not in b
    assert "from the process" in own and "from a" not in own and "from b" not in own


def test_shared_informers_are_on_unless_turned_off(monkeypatch) -> None:
    monkeypatch.delenv(SHARED_INFORMERS_ENV, raising=False)
    assert shared_informers_wanted()
    monkeypatch.setenv(SHARED_INFORMERS_ENV, "0")
    assert not shared_informers_wanted()


def test_nodes_of_a_process_boot_a_few_at_a_time(tmp_path, root_logging) -> None:
    from emulator.node.host_process import BOOTS_AT_ONCE
    host = NodeHost("q3zx", [spec("a")], str(tmp_path), "0-0")
    lock, now, peak = threading.Lock(), [0], [0]
    release = threading.Event()

    class Booting:
        def start(self) -> bool:
            with lock:
                now[0] += 1
                peak[0] = max(peak[0], now[0])
            release.wait(5)
            with lock:
                now[0] -= 1
            return True

        def ping(self) -> str:
            return "up"
    host.agents = {f"n{i}": Booting() for i in range(3 * BOOTS_AT_ONCE)}
    threads = [threading.Thread(target=host.call, args=(n, "start")) for n in host.agents]
    for t in threads:
        t.start()
    deadline = time.time() + 10
    while peak[0] < BOOTS_AT_ONCE and time.time() < deadline:
        time.sleep(0.01)
    assert host.call("n0", "ping") == "up"      # other calls are not held by the boots
    assert peak[0] == BOOTS_AT_ONCE
    release.set()
    for t in threads:
        t.join(10)
    assert peak[0] == BOOTS_AT_ONCE and now[0] == 0
