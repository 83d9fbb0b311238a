"""Reachability matrices: probing every cell, comparing, and text (rows from, columns to; `.`/`X`/`!`)."""
from __future__ import annotations

from typing import Callable

Cells = dict[tuple[str, str], bool]     # (from pod, to pod) -> allowed


def differences(pods: list[str], observed: Cells, expected: Cells) -> list[tuple[str, str]]:
    """The (from, to) cells whose outcome differs from the expectation."""
    return [(s, d) for s in pods for d in pods if observed[(s, d)] != expected[(s, d)]]


def format_matrix(title: str, pods: list[str], observed: Cells, expected: Cells) -> str:
    """The observed matrix; when it differs, side by side with the expected one, differing cells marked `!`."""
    width = max(len(p) for p in pods)
    cell = max(3, width) + 2

    def block(cells: Cells, marks: bool) -> list[str]:
        rows = [" " * width + "".join(p.center(cell) for p in pods)]
        for s in pods:
            syms = ["." if cells[(s, d)] else "X" for d in pods]
            if marks:
                syms = [x + ("!" if observed[(s, d)] != expected[(s, d)] else "") for x, d in zip(syms, pods)]
            rows.append(f"{s:<{width}}" + "".join(x.center(cell) for x in syms))
        return rows

    n = len(differences(pods, observed, expected))
    obs, exp = block(observed, True), block(expected, False)
    head = f"{title} (rows from, columns to; . allowed, X blocked): "
    if n == 0:      # one matrix is enough when both are the same
        return "\n".join([head + "matches the expectation", *obs])
    lines = [head + f"{n} cells differ (marked !)", f"{'observed':<{len(obs[0])}}   | expected"]
    lines += [f"{o}   | {e}" for o, e in zip(obs, exp)]
    return "\n".join(lines)


def compare(name: str, pods: list[str], ports: list, outcome: dict[tuple[str, str, str], str],
            allows: Callable[[str, str, object], bool]) -> dict:
    """The record of one matrix: per port the observed/expected rows, the differences and the text."""
    matrices, texts, diffs = {}, [], []
    for p in ports:
        port = str(p)
        observed = {(s, d): outcome[(s, d, port)] == "ok" for s in pods for d in pods}
        expected = {(s, d): allows(s, d, p) for s in pods for d in pods}
        texts.append(format_matrix(f"{name} {port}", pods, observed, expected))
        diffs += [{"from": s, "to": d, "port": port, "expected": "allowed" if expected[(s, d)] else "blocked",
                   "observed": outcome[(s, d, port)]} for s, d in differences(pods, observed, expected)]
        matrices[port] = {k: ["".join("." if cells[(s, d)] else "X" for d in pods) for s in pods]
                          for k, cells in (("observed", observed), ("expected", expected))}
    return {"matrices": matrices, "differences": diffs, "text": "\n\n".join(texts), "ok": not diffs}


def probe_matrix(pods: list[str], ports: list, target: Callable[[str, str], tuple[str, int] | None],
                 run: Callable[[dict[str, list[list]]], dict[str, list[str]]]) -> dict[tuple[str, str, str], str]:
    """Outcome of every (from, to, port) cell; blocked cells are probed a second time.

    `target(to_pod, port)` gives the (IP, port) to probe; `run({from_pod: [[ip, port, PROTO], ...]})`
    probes from each source pod at once and returns the outcomes in the same order."""
    cells = [(s, d, str(p)) for p in ports for s in pods for d in pods]
    out = {c: "no service port" for c in cells}
    todo = [c for c in cells if target(c[1], c[2]) is not None]
    for _ in range(2):          # a lost first packet is not a policy
        by_src: dict[str, list] = {}
        for c in todo:
            by_src.setdefault(c[0], []).append(c)
        reqs = {s: [[*target(c[1], c[2]), c[2].split("/")[1].upper()] for c in cs] for s, cs in by_src.items()}
        for s, res in run(reqs).items():
            out.update(zip(by_src[s], res))
        todo = [c for c in todo if out[c] != "ok"]
        if not todo:
            break
    return out
