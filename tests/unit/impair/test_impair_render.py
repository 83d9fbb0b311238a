"""Rendering one host's impairments: which destinations, which rules, which tc commands."""
import pytest

from emulator.config.impairments import Impairments
from emulator.records.hosts import HostSpec
from emulator.impair.render import (MARK_MASK, chain_names, delay_queues, host_classes, mangle_restore,
                                    mechanism_of, tc_batch)

pytestmark = pytest.mark.unit

HOSTS = [HostSpec(**h, gateway="-", fabric_port="-") for h in [
    {"name": "a-1", "role": "node", "zone": "z-a", "ip": "10.128.0.2", "pod_cidr": "10.4.0.0/24"},
    {"name": "a-2", "role": "node", "zone": "z-a", "ip": "10.128.0.3", "pod_cidr": "10.4.1.0/24"},
    {"name": "b-1", "role": "node", "zone": "z-b", "ip": "10.128.0.4", "pod_cidr": "10.4.2.0/24"},
    {"name": "inet", "role": "host", "kind": "internet", "ip": "198.51.100.2"},
    {"name": "vm", "role": "host", "kind": "vm", "ip": "10.128.0.9"},
    {"name": "gcp-prober", "role": "host", "kind": "prober", "ip": "35.191.0.2"}]]
IMP = Impairments.model_validate({"inter_zone": {"delay": "5ms", "jitter": "1ms"},
                                  "inter_node": {"delay": "1ms", "loss": "2%"},
                                  "internet": {"delay": "10ms", "rate": "10mbit"}})


def classes_of(name):
    return {c.name: c for c in host_classes(IMP, next(h for h in HOSTS if h.name == name), HOSTS)}


def test_destinations_per_class():
    a1 = classes_of("a-1")
    assert list(a1) == ["inter_zone", "inter_node", "internet"]          # precedence order
    assert a1["inter_zone"].dests == ("10.128.0.4/32", "10.4.2.0/24")       # b-1 only
    assert a1["inter_node"].dests == ("10.128.0.3/32", "10.4.1.0/24", "10.128.0.4/32", "10.4.2.0/24")
    assert a1["internet"].dests == ("198.51.100.2/32",)
    inet = classes_of("inet")
    assert list(inet) == ["internet"] and inet["internet"].dests == ()      # all of its egress
    assert classes_of("vm") == {} and classes_of("gcp-prober") == {}


def test_nfqueue_rules_goto_class_chains_and_keep_kube_proxy_marks():
    a1 = list(classes_of("a-1").values())
    text = mangle_restore("kubemuq3zx", a1, "nfqueue", hook=True)
    names = chain_names("kubemuq3zx")
    lines = text.splitlines()
    assert lines[0] == "*mangle" and lines[-1] == "COMMIT"
    assert f"-A POSTROUTING -o eth0 -j {names['impair']}" in lines
    # the first match wins: inter_zone's destinations come before inter_node's (goto, no return)
    first_b1 = next(ln for ln in lines if "-d 10.4.2.0/24" in ln)
    assert first_b1.endswith(f"-g {names['inter_zone']}")
    assert f"-A {names['inter_node']} -m statistic --mode random --probability 0.020000 -j DROP" in lines
    assert f"-A {names['inter_node']} -j NFQUEUE --queue-num {a1[1].queue}" in lines
    assert f"-A {names['internet']} -j MARK --set-xmark 0x30000/{MARK_MASK:#x}" in lines
    assert not any(t in text for t in ("*nat", "*filter", "KUBE-")) and not (MARK_MASK & 0xC000)
    assert all(n.startswith("kubemuq3zx-") and len(n) <= 28 for n in names.values())
    assert "POSTROUTING" not in mangle_restore("kubemuq3zx", a1, "nfqueue", hook=False)


def test_nfqueue_tc_only_shapes_rated_classes_and_delay_queues():
    a1 = list(classes_of("a-1").values())
    assert tc_batch(a1, "nfqueue") == [
        "qdisc add dev eth0 root handle 1: htb default 0",
        "class add dev eth0 parent 1: classid 1:3 htb rate 10000000bit ceil 10000000bit",
        "filter add dev eth0 parent 1: protocol ip prio 3 u32 match mark 0x30000 0xf0000 flowid 1:3"]
    assert delay_queues(a1, "nfqueue") == [(7001, 5.0, 1.0), (7002, 1.0, 0.0), (7003, 10.0, 0.0)]
    assert [mechanism_of(c, "nfqueue") for c in a1] == [
        "nfqueue delay", "nfqueue delay + statistic loss", "nfqueue delay + htb rate"]


def test_netem_puts_delay_jitter_loss_in_qdiscs():
    a1 = list(classes_of("a-1").values())
    batch = tc_batch(a1, "netem")
    assert "qdisc add dev eth0 parent 1:1 handle 10: netem delay 5ms 1ms" in batch
    assert "qdisc add dev eth0 parent 1:2 handle 20: netem delay 1ms loss 2%" in batch
    text = mangle_restore("kubemuq3zx", a1, "netem", hook=True)
    assert "NFQUEUE" not in text and "statistic" not in text and text.count("MARK --set-xmark") == 3
    assert delay_queues(a1, "netem") == [] and mechanism_of(a1[2], "netem") == "netem + htb rate"


def test_no_classes_still_flushes_our_chains():
    text = mangle_restore("kubemuq3zx", [], "nfqueue", hook=False)
    assert text.splitlines()[1:-1] == [f":{n} - [0:0]" for n in chain_names("kubemuq3zx").values()]
    assert tc_batch([], "netem") == []
