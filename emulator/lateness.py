"""Answers late from load: the one rule shared by load balancer health checks and readiness probes.

A real node or pod answers a probe in microseconds, so a probe takes about two network
round trips (the handshake, then request and answer). kubemu's own servers (kube-proxy's
health servers, agnhost netexec) are Python in a process shared with many emulated nodes;
on a busy machine they can answer after the timeout although the node, its kernel and its
network are fine. A probe whose connection was accepted early enough for two round trips
to fit in the timeout may wait up to `LATE_CAP` seconds for its answer and counts by its
status, marked late; the callers report late answers as load. A target that is down,
partitioned or impaired beyond the timeout never connects in time and fails at the timeout.
"""
from __future__ import annotations

LATE_CAP = 5.0   # seconds a late answer of kubemu's own server may take


def may_answer_late(connected_s: float | None, timeout: float, late_cap: float | None) -> bool:
    """Connected (after `connected_s`) early enough for handshake and answer to fit in the timeout
    as network time, so the answer may come late; never without `late_cap`."""
    return late_cap is not None and connected_s is not None and 2 * connected_s <= timeout
