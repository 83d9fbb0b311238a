#!/usr/bin/env python3
"""Cross-machine over same-machine traffic on machines with their own addresses: kernel underlay vs relay.

Three "VMs" (namespaces with their own addresses on a LAN, a Ray node each started by
`ray start`, tests/e2e/vmlan.py); from inside the first, `kubemu run
scenarios/machines-iperf.yaml --address ...` (3 machines by zone) alternately with
KUBEMU_UNDERLAY=kernel (kernel VXLAN devices as the tunnels) and KUBEMU_UNDERLAY=relay (the
Python UDP relay), `--repeat` times each, in the same Ray cluster. Per run it prints
pod-to-pod iperf3 throughput from the client pod to a pod on another node of its own
machine (near) and on another machine (far), HTTP p50 latency (one request at a time,
new connection each) to both, the p50 of its TCP handshake alone (the kernel answers
it: the network's round trip without the server's process), the far/near ratios and TCP
retransmits; then the median ratios per underlay. Goal for the kernel path: far/near
>= 0.8x throughput, <= 1.3x p50.

Before the first run and after the last, the floor (bench/underlay_floor.py): the same near
and far paths built by hand on two more "VMs" (private userspace OVS per VM, a kernel VXLAN
device between them, no kubemu code) and measured the same way: the far/near ratios this
machine gives before any of kubemu's work, and kubemu's ratios against them. Once more
with a Linux bridge per "VM" in place of the userspace OVS: what the same paths cost with
the switching in the kernel.

Run as root: .venv/bin/python bench/underlay.py [--repeat 2] [--modes kernel,relay] [--lan-mtu 1500]
                                                [--requests 300] [--no-floor]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))

from vmlan import VmLan  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "bench"))
from underlay_floor import UnderlayFloor  # noqa: E402

SCENARIO = os.path.join(ROOT, "scenarios", "machines-iperf.yaml")


def one_run(lan: VmLan, mode: str, runs: str) -> dict:
    """One run of the scenario with underlay `mode`; the figures of its flows."""
    out_dir = tempfile.mkdtemp(prefix=f"{mode}-", dir=runs)
    proc = subprocess.run(lan.argv(0, os.path.join(ROOT, ".venv", "bin", "python"), "-m", "emulator.cli", "run",
                                   SCENARIO, "--address", lan.head, "--runs-dir", out_dir),
                          cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=lan.env(PYTHONPATH=ROOT, KUBEMU_UNDERLAY=mode))
    dirs = os.listdir(out_dir)
    if proc.returncode != 0 or not dirs:
        raise RuntimeError(f"{mode} run failed: {proc.stdout[-2000:]} {proc.stderr[-2000:]}")
    with open(os.path.join(out_dir, dirs[0], "results.json")) as f:
        res = json.load(f)
    fl = res["flows"]
    r = {"mode": res["machines"]["underlay"]["kind"],
         "near_mbit": fl["iperf-near"]["bits_per_second"] / 1e6, "far_mbit": fl["iperf-far"]["bits_per_second"] / 1e6,
         "near_retx": fl["iperf-near"].get("retransmits"), "far_retx": fl["iperf-far"].get("retransmits"),
         "near_p50": fl["http-near"]["total_ms"]["p50"], "far_p50": fl["http-far"]["total_ms"]["p50"],
         "near_conn": fl["http-near"]["connect_ms"]["p50"], "far_conn": fl["http-far"]["connect_ms"]["p50"]}
    r["tput_ratio"], r["p50_ratio"] = r["far_mbit"] / r["near_mbit"], r["far_p50"] / r["near_p50"]
    r["conn_ratio"] = r["far_conn"] / r["near_conn"]
    return r


HEADER = (f"{'underlay':>13} {'near Mbit/s':>11} {'far Mbit/s':>10} {'far/near':>8} {'near p50 ms':>11} "
          f"{'far p50 ms':>10} {'far/near':>8} {'connect p50 near/far ms':>23} {'far/near':>8} "
          f"{'retx near/far':>13}")


def row(name: str, r: dict) -> str:
    """One line of figures under HEADER."""
    return (f"{name:>13} {r['near_mbit']:>11.0f} {r['far_mbit']:>10.0f} {r['tput_ratio']:>7.2f}x "
            f"{r['near_p50']:>11.2f} {r['far_p50']:>10.2f} {r['p50_ratio']:>7.2f}x "
            f"{r['near_conn']:>11.3f}/{r['far_conn']:<11.3f} {r['conn_ratio']:>7.2f}x "
            f"{r['near_retx']!s:>6}/{r['far_retx']!s:<6}")


def floor_run(runs: str, lan_mtu: int, requests: int, switch: str = "ovs") -> dict:
    """The hand-built floor, once."""
    with UnderlayFloor(os.path.join(runs, "floor-logs"), lan_mtu, switch) as floor:
        return floor.measure(requests, 5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--modes", default="kernel,relay")
    ap.add_argument("--lan-mtu", type=int, default=1500, help="MTU of the LAN between the machines")
    ap.add_argument("--requests", type=int, default=300, help="floor: HTTP requests per path")
    ap.add_argument("--no-floor", action="store_true", help="skip the hand-built floor")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    runs = tempfile.mkdtemp(prefix="kubemu-bench-underlay-")
    got: dict[str, list[dict]] = {m: [] for m in modes}
    floors: list[dict] = []
    kernel_floor: dict | None = None
    print(HEADER, flush=True)
    try:
        if not args.no_floor:
            floors.append(floor_run(runs, args.lan_mtu, args.requests))
            print(row("floor before", floors[-1]), flush=True)
        if modes:
            lan = VmLan(3, os.path.join(runs, "logs"), args.lan_mtu).create()
            try:
                lan.ray_up()
                for _ in range(args.repeat):
                    for mode in modes:   # alternated, so both see the same load of this machine
                        r = one_run(lan, mode, runs)
                        got[mode].append(r)
                        print(row(r["mode"], r), flush=True)
            finally:
                lan.destroy()
        if not args.no_floor and modes:
            floors.append(floor_run(runs, args.lan_mtu, args.requests))
            print(row("floor after", floors[-1]), flush=True)
        if not args.no_floor:
            kernel_floor = floor_run(runs, args.lan_mtu, args.requests, "bridge")
            print(row("Linux bridge", kernel_floor), flush=True)
    finally:
        subprocess.run(["rm", "-rf", runs], check=False)
    for mode, rs in got.items():
        if rs:
            t = statistics.median(r["tput_ratio"] for r in rs)
            p = statistics.median(r["p50_ratio"] for r in rs)
            c = statistics.median(r["conn_ratio"] for r in rs)
            print(f"median {rs[0]['mode']}: cross/same throughput {t:.2f}x (goal >= 0.8), request p50 {p:.2f}x "
                  f"(goal <= 1.3); TCP handshake p50 {c:.2f}x (the network alone: the kernel answers it)")
    if floors:
        ft, fp, fc = (statistics.mean(f[k] for f in floors) for k in ("tput_ratio", "p50_ratio", "conn_ratio"))
        print(f"floor (hand-built, mean of {len(floors)}): cross/same throughput {ft:.2f}x, request p50 {fp:.2f}x, "
              f"TCP handshake p50 {fc:.2f}x: what two userspace OVS passes and a kernel tunnel cost here")
        for mode, rs in got.items():
            if rs:
                ratio = statistics.median(r["p50_ratio"] for r in rs) / fp
                far = statistics.median(r["far_p50"] for r in rs) / statistics.mean(f["far_p50"] for f in floors)
                print(f"{rs[0]['mode']} against the floor: request p50 ratio {ratio:.2f}x of the floor's, "
                      f"cross-machine p50 {far:.2f}x the floor's")
    if kernel_floor:
        print(f"floor with Linux bridges (switching in the kernel): cross/same throughput "
              f"{kernel_floor['tput_ratio']:.2f}x, request p50 {kernel_floor['p50_ratio']:.2f}x, TCP handshake p50 "
              f"{kernel_floor['conn_ratio']:.2f}x")
    if all(got.values()) and len(modes) == 2:
        a, b = (statistics.median(r["far_mbit"] for r in got[m]) for m in modes)
        print(f"cross-machine throughput {modes[0]} / {modes[1]}: {a / b:.2f}x")


if __name__ == "__main__":
    main()
