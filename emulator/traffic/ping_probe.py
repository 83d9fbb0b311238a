"""ICMP echo with the real iputils `ping`, run inside a client's namespace; one record per echo.

    ip netns exec NS python -m emulator.traffic.ping_probe --host HOST --count 10 --interval 0.2 \
        --timeout 1 --out FILE.jsonl

Runs `ping -n -D -O -c COUNT -i INTERVAL -W TIMEOUT HOST` and turns its output into
records: seq (icmp_seq), t_start (epoch s the echo was sent), total_ms and ttfb_ms (the
round trip ping measured), outcome (ok; timeout when no reply came in time; error with
errno EHOSTUNREACH for an ICMP error such as "Destination Host Unreachable";
dns_error when the name does not resolve), remote_ip, ttl, error. Every echo ping sent
gets a record, so lost echoes count in the loss ratio.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from typing import Any

from emulator.traffic.records import RecordWriter, print_summary

_HEADER = re.compile(r"^PING \S+ \((?P<ip>[^)]+)\)")
_REPLY = re.compile(r"^\[(?P<ts>[\d.]+)\] \d+ bytes from (?P<ip>[^:]+): icmp_seq=(?P<seq>\d+) "
                    r"ttl=(?P<ttl>\d+) time=(?P<rtt>[\d.]+) ms")
_ICMP_ERROR = re.compile(r"^\[(?P<ts>[\d.]+)\] From (?P<ip>\S+) icmp_seq=(?P<seq>\d+) (?P<what>.+)$")
_SENT = re.compile(r"^(?P<sent>\d+) packets transmitted")


def _record(seq: int, t_start: float, remote_ip: str | None) -> dict[str, Any]:
    """An echo's record before its outcome is known (a timeout until a reply says otherwise)."""
    return {"seq": seq, "t_start": t_start, "dns_ms": None, "connect_ms": None, "ttfb_ms": None,
            "total_ms": None, "outcome": "timeout", "status": None, "pod": None, "node": None,
            "client_ip_seen": None, "remote_ip": remote_ip, "ttl": None, "errno": "ETIMEDOUT",
            "error": "no echo reply in time"}


def parse_ping(output: str, started: float, interval: float, timeout: float,
               count: int | None = None) -> list[dict[str, Any]]:
    """Records of one `ping -n -D -O` run: one per echo sent (icmp_seq 1..transmitted).

    `started` is the epoch time ping was started: echo n left at about started +
    (n-1)*interval, used for echoes without a reply. A reply later than `timeout` is a
    timeout, as for the other generators.
    """
    remote = None
    sent = count
    seen: dict[int, dict[str, Any]] = {}
    for line in output.splitlines():
        line = line.strip()
        if m := _HEADER.match(line):
            remote = m.group("ip")
        elif m := _REPLY.match(line):
            seq, rtt = int(m.group("seq")), float(m.group("rtt"))
            if seq in seen and seen[seq]["outcome"] == "ok":
                continue   # a duplicate reply
            rec = _record(seq, float(m.group("ts")) - rtt / 1000.0, m.group("ip"))
            rec.update(ttfb_ms=rtt, total_ms=rtt, ttl=int(m.group("ttl")))
            if rtt <= timeout * 1000.0:
                rec.update(outcome="ok", errno=None, error=None)
            seen[seq] = rec
        elif m := _ICMP_ERROR.match(line):
            seq = int(m.group("seq"))
            rec = _record(seq, started + (seq - 1) * interval, remote)
            rec.update(outcome="error", errno="EHOSTUNREACH", error=f"from {m.group('ip')}: {m.group('what')}")
            seen.setdefault(seq, rec)
        elif m := _SENT.match(line):
            sent = int(m.group("sent"))
    sent = max([sent or 0] + list(seen))
    return [seen.get(seq) or _record(seq, started + (seq - 1) * interval, remote) for seq in range(1, sent + 1)]


def ping_command(host: str, count: int, interval: float, timeout: float) -> list[str]:
    """The iputils ping command line (numeric, timestamps, report missing replies); HOST after `--`."""
    return ["ping", "-n", "-D", "-O", "-c", str(count), "-i", f"{interval:g}", "-W", f"{timeout:g}", "--", host]


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Ping, write the records; returns the summary."""
    started = time.time()
    proc = subprocess.run(ping_command(args.host, args.count, args.interval, args.timeout),
                          capture_output=True, text=True,
                          timeout=args.count * args.interval + args.timeout + 30)
    out = RecordWriter(args.out)
    try:
        if proc.returncode == 2 and not _HEADER.search(proc.stdout):
            # ping could not start (a name that does not resolve, no route): every echo failed
            text = proc.stderr.strip()
            dns = "service not known" in text or "name resolution" in text
            for seq in range(1, args.count + 1):
                rec = _record(seq, started, None)
                rec.update(outcome="dns_error" if dns else "error", errno=None, error=text[:200])
                out.write(rec)
        else:
            for rec in parse_ping(proc.stdout, started, args.interval, args.timeout, args.count):
                out.write(rec)
    finally:
        out.close()
    return out.summary(kind="ping", target=args.host, out=args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 when ping ran (whatever its replies)."""
    p = argparse.ArgumentParser(prog="python -m emulator.traffic.ping_probe", description=__doc__.split("\n")[0])
    p.add_argument("--host", required=True)
    p.add_argument("--count", type=int, default=10)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=1.0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    if args.count < 1 or args.interval < 0.002 or args.timeout <= 0:
        p.error("--count >= 1, --interval >= 0.002 and --timeout > 0")
    print_summary(run(args), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
