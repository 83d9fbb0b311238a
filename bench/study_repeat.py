#!/usr/bin/env python3
"""Repeatability of the interleaved study: the same Cluster/Local comparison run twice in a row.

One cluster (scenarios/extra-hop.yaml's topology and manifests), two `compare` steps one
after the other (`rep1`, `rep2`: Cluster and Local interleaved request by request, 3
trials of --requests per arm each, optionally under a one-way inter-node --delay). For
each it prints the Cluster arm's extra-hop penalty and the Local - Cluster median
difference with their 95% bootstrap intervals, and whether the two runs' intervals
overlap (exit 1 when a pair does not). Order effects would show as disjoint intervals.

Run as root: .venv/bin/python bench/study_repeat.py [--requests 300] [--delay 1ms]
"""
from __future__ import annotations

import argparse
import glob
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SCENARIO = """
name: study-repeat
topology: {root}/topologies/regional-3x2.yaml
timing: fast
seed: 11
manifests: [{root}/scenarios/manifests/extra-hop.yaml]
{impair}
steps:
  - wait: {{ready: pod/app-a}}
  - wait: {{ready: pod/app-b}}
  - wait: {{ready: service/app-cluster}}
  - wait: {{ready: service/app-local}}
""" + "".join("""
  - compare:
      name: {name}
      from: host/inet-1
      arms: {{cluster: {{url: "http://{{lbip:app-cluster}}/clientip"}}, local: {{url: "http://{{lbip:app-local}}/clientip"}}}}
      trials: 3
      requests: {n}
""".replace("{name}", n) for n in ("rep1", "rep2"))


def overlap(a: dict, b: dict) -> bool:
    return a["ci_low"] <= b["ci_high"] and b["ci_low"] <= a["ci_high"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="requests per arm and trial")
    ap.add_argument("--delay", default=None, help="one-way inter-node delay, e.g. 1ms")
    args = ap.parse_args()
    sys.path.insert(0, ROOT)
    tmp = tempfile.mkdtemp(prefix="kubemu-study-repeat-")
    path = os.path.join(tmp, "study-repeat.yaml")
    impair = f"impairments: {{inter_node: {{delay: {args.delay}}}}}" if args.delay else ""
    with open(path, "w") as f:
        f.write(SCENARIO.format(root=ROOT, impair=impair, n=args.requests))
    res = subprocess.run([sys.executable, "-m", "emulator.cli", "run", path, "--runs-dir", tmp], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "PYTHONPATH": ROOT})
    if res.returncode != 0:
        print(res.stdout[-3000:] + res.stderr[-2000:])
        return 2
    from emulator.report.render import load_run
    from emulator.report.study_md import compare_analysis
    run_dir = glob.glob(os.path.join(tmp, "*-study-repeat-*"))[0]
    run = load_run(run_dir)
    got = {}
    for s in (c.fields for c in run.results.steps_of("compare")):
        an = compare_analysis(s, run.records, run.nodes)
        got[s["name"]] = {"penalty": an["arms"]["cluster"]["penalty"], "diff": an["diffs"][0]}
    ok = True
    for key, label in (("penalty", "Cluster extra-hop penalty"), ("diff", "Local - Cluster median")):
        a, b = got["rep1"][key], got["rep2"][key]
        va, vb = a.get("value", a.get("diff_ms")), b.get("value", b.get("diff_ms"))
        same = overlap(a, b)
        ok &= same
        print(f"{label}: run 1 {va:.3f} ms [{a['ci_low']:.3f}, {a['ci_high']:.3f}], run 2 {vb:.3f} ms "
              f"[{b['ci_low']:.3f}, {b['ci_high']:.3f}]: intervals {'overlap' if same else 'DO NOT overlap'}")
    print(f"run directory: {run_dir}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
