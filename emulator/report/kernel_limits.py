"""Host-wide kernel limits a run ran into: what the user is told, from counters read before and after.

Pure. A full ARP table drops traffic towards neighbours not yet known in every namespace
of the machine (the emulated cluster's and anything else's), so a run that filled it
says so instead of leaving its timeouts unexplained.
"""
from __future__ import annotations

from typing import Any, Mapping


def summary(fulls_before: int, fulls_after: int, thresh: int | None) -> dict[str, Any] | None:
    """results.json's `kernel_limits` (None when no limit was hit during the run)."""
    if fulls_after <= fulls_before:
        return None
    return {"arp_table_full": fulls_after - fulls_before, "gc_thresh3": thresh}


def warning(rec: Mapping[str, Any]) -> str:
    """One line for the user: which table was full, how often, and what to do."""
    thresh = rec.get("gc_thresh3")
    return (f"warning: the kernel's ARP table was full {rec['arp_table_full']} time(s) during the run "
            f"(net.ipv4.neigh.default.gc_thresh3 = {thresh if thresh is not None else '?'}, one table for every "
            "namespace on this machine): packets towards neighbours not yet resolved were dropped, so timeouts "
            "in this run may be the machine's, not the scenario's. Run fewer nodes, or raise the cap on the host "
            "(`sysctl -w net.ipv4.neigh.default.gc_thresh3=...`).")
