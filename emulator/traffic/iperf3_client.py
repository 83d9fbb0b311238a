"""A real iperf3 client test (`iperf3 -c ... -J`), run inside a client's namespace; one record per test.

    ip netns exec NS python -m emulator.traffic.iperf3_client --host HOST --port 5201 --duration 2 \
        [--parallel N] [--reverse] [--timeout S] --out FILE.jsonl

The server is a real `iperf3 -s` (e.g. a pod whose container command is `iperf3 -s`).
The record: seq 0, t_start (epoch s the test started), total_ms (the measured test time),
outcome (ok | refused | timeout | reset | error), bits_per_second (what the receiver got),
sent_bytes, received_bytes, retransmits (TCP retransmissions of the sender, when known),
streams, intervals_bps (per-second throughput), remote_ip/port, local_ip/port, error.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from typing import Any

from emulator.traffic.records import RecordWriter, print_summary, ms

_ERRORS = (("refused", "ECONNREFUSED", "Connection refused"), ("timeout", "ETIMEDOUT", "timed out"),
           ("timeout", "ETIMEDOUT", "Operation now in progress"), ("reset", "ECONNRESET", "reset by peer"))


def parse_iperf3(report: dict[str, Any], started: float) -> dict[str, Any]:
    """The record of one test from iperf3's JSON report (`-J`)."""
    rec: dict[str, Any] = {"seq": 0, "t_start": started, "dns_ms": None, "connect_ms": None, "ttfb_ms": None,
                           "total_ms": None, "outcome": "ok", "status": None, "pod": None, "node": None,
                           "client_ip_seen": None, "remote_ip": None, "remote_port": None, "local_ip": None,
                           "local_port": None, "bits_per_second": None, "sent_bytes": None,
                           "received_bytes": None, "retransmits": None, "streams": 0, "intervals_bps": [],
                           "errno": None, "error": None}
    start = report.get("start") or {}
    connected = start.get("connected") or []
    if connected:
        c = connected[0]
        rec.update(remote_ip=c.get("remote_host"), remote_port=c.get("remote_port"),
                   local_ip=c.get("local_host"), local_port=c.get("local_port"), streams=len(connected))
    error = report.get("error")
    if error:
        outcome, errno_name = "error", None
        for out, name, text in _ERRORS:
            if text.lower() in error.lower():
                outcome, errno_name = out, name
                break
        rec.update(outcome=outcome, errno=errno_name, error=str(error)[:300])
    end = report.get("end") or {}
    sent, received = end.get("sum_sent") or {}, end.get("sum_received") or {}
    if received:
        rec.update(bits_per_second=received.get("bits_per_second"), received_bytes=received.get("bytes"),
                   total_ms=ms(received.get("seconds")))
    if sent:
        rec.update(sent_bytes=sent.get("bytes"), retransmits=sent.get("retransmits"))
        if rec["total_ms"] is None:
            rec["total_ms"] = ms(sent.get("seconds"))
    rec["intervals_bps"] = [round((i.get("sum") or {}).get("bits_per_second") or 0.0, 1)
                            for i in report.get("intervals") or []]
    if not error and not received:
        rec.update(outcome="error", error="iperf3 reported no received data")
    return rec


def iperf3_command(host: str, port: int, duration: float, parallel: int, reverse: bool, timeout: float) -> list[str]:
    """The iperf3 client command line with a JSON report."""
    cmd = ["iperf3", f"--client={host}", "-p", str(port), "-t", f"{duration:g}", "-P", str(parallel), "-J",
           "--connect-timeout", str(int(timeout * 1000))]
    return cmd + (["-R"] if reverse else [])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run the test, write its record; returns the summary."""
    started = time.time()
    cmd = iperf3_command(args.host, args.port, args.duration, args.parallel, args.reverse, args.timeout)
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + args.timeout + 30)
        try:
            report = json.loads(proc.stdout)
        except ValueError:
            report = {"error": (proc.stderr or proc.stdout).strip()[-300:] or f"iperf3 exited {proc.returncode}"}
    except subprocess.TimeoutExpired:
        report = {"error": "iperf3 timed out"}
    out = RecordWriter(args.out)
    try:
        rec = parse_iperf3(report, started)
        if rec["total_ms"] is None:
            rec["total_ms"] = ms(time.time() - started)
        out.write(rec)
    finally:
        out.close()
    return {**out.summary(kind="iperf3", target=f"{args.host}:{args.port}", out=args.out),
            "bits_per_second": rec["bits_per_second"], "retransmits": rec["retransmits"]}


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 when the test ran (whatever its outcome)."""
    p = argparse.ArgumentParser(prog="python -m emulator.traffic.iperf3_client", description=__doc__.split("\n")[0])
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, default=5201)
    p.add_argument("--duration", type=float, default=2.0)
    p.add_argument("--parallel", type=int, default=1)
    p.add_argument("--reverse", action="store_true")
    p.add_argument("--timeout", type=float, default=5.0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    print_summary(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
