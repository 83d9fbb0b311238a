"""DNS questions with the real `dig`, run inside a source's namespace; one record per question.

    ip netns exec NS python -m emulator.traffic.dns_query --name NAME --type A [--expect X]... \
        [--within 10] [--count 1] [--interval 0.2] [--timeout 2] [--no-search] --out FILE.jsonl

`ip netns exec` mounts the namespace's /etc/netns/NS/resolv.conf, so dig asks the pod's
nameserver with its search path, as the pod's own resolver would. Each record has
t_start, total_ms, outcome (ok: NOERROR; dns_error: NXDOMAIN, SERVFAIL, REFUSED; timeout:
no server answered), rcode, answers (the answer section's data, sorted, names without the
final dot), records ([name, type, data]) and, with --expect, matched.
"""
from __future__ import annotations

import argparse
import ipaddress
import re
import subprocess
import time
from typing import Any

from emulator.traffic.records import RecordWriter, ms, print_summary

_STATUS = re.compile(r"->>HEADER<<-.*status: (?P<status>[A-Z]+)")


def dig_argv(name: str, rtype: str, timeout: float, search: bool) -> list[str]:
    """dig's command line: one try, the answer section and the header comments."""
    argv = ["dig", "+tries=1", f"+time={max(1, round(timeout))}", "+noall", "+comments", "+answer"]
    argv.append("+search" if search else "+nosearch")
    try:
        ipaddress.ip_address(name)
        return argv + ["-x", name]
    except ValueError:
        return argv + ["-t", rtype, "-q", name]


def parse_dig(output: str, returncode: int) -> dict[str, Any]:
    """outcome, rcode, records and answers of one dig run."""
    m = _STATUS.search(output)
    if m is None:
        timed_out = returncode == 9 or "timed out" in output or "no servers could be reached" in output
        return {"outcome": "timeout" if timed_out else "error", "rcode": None, "records": [], "answers": [],
                "error": output.strip().splitlines()[-1][:200] if output.strip() else f"dig exit {returncode}"}
    records = []
    for line in output.splitlines():
        if not line.strip() or line.startswith(";"):
            continue
        parts = line.split()
        if len(parts) >= 5 and parts[2] == "IN":
            data = " ".join(parts[4:])
            data = data[:-1] if data.endswith(".") else data
            records.append([parts[0].rstrip("."), parts[3], data])
    rcode = m.group("status")
    return {"outcome": "ok" if rcode == "NOERROR" else "dns_error", "rcode": rcode, "records": records,
            "answers": sorted(r[2] for r in records), "error": None if rcode == "NOERROR" else rcode}


def normalize(values: list[str]) -> list[str]:
    """Expected answers as dig's are compared: sorted, without a final dot."""
    return sorted(v[:-1] if v.endswith(".") else v for v in values)


def ask(name: str, rtype: str, timeout: float, search: bool) -> dict[str, Any]:
    """One question: its record."""
    t0, c0 = time.time(), time.perf_counter()
    p = subprocess.run(dig_argv(name, rtype, timeout, search), capture_output=True, text=True,
                       timeout=timeout + 10)
    rec = {"t_start": t0, "total_ms": ms(time.perf_counter() - c0), "query": name, "type": rtype}
    rec.update(parse_dig(p.stdout + p.stderr, p.returncode))
    return rec


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--name", required=True)
    p.add_argument("--type", default="A")
    p.add_argument("--expect", action="append")
    p.add_argument("--within", type=float, default=10.0)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--interval", type=float, default=0.2)
    p.add_argument("--timeout", type=float, default=2.0)
    p.add_argument("--no-search", action="store_true")
    p.add_argument("--out", required=True)
    a = p.parse_args(argv)
    writer = RecordWriter(a.out)
    want = normalize(a.expect) if a.expect is not None else None
    deadline = time.monotonic() + a.within
    n = 0
    try:
        while True:
            rec = ask(a.name, a.type, a.timeout, not a.no_search)
            n += 1
            if want is not None:
                rec["matched"] = rec["answers"] == want
            writer.write(rec)
            done = rec["matched"] or time.monotonic() >= deadline if want is not None else n >= a.count
            if done:
                break
            time.sleep(a.interval)
    finally:
        writer.close()
    print_summary(writer.summary(kind="dns", name=a.name, type=a.type), a.out)


if __name__ == "__main__":
    main()
