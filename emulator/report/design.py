"""Study design and its statistics: interleaving schedules, bootstrap intervals, effect sizes, slopes.

Pure functions over numbers. A schedule says which arm each request of an interleaved
comparison goes to; it is drawn from a seeded generator so a run can be replayed. The
intervals are percentile bootstraps in two stages (trials with replacement, then the
requests of each drawn trial with replacement), so they carry both the spread between
trials (drift of the machine, order) and the sampling noise within a trial.
"""
from __future__ import annotations

import hashlib
import random
from typing import Callable, Sequence

import numpy as np

BOOTSTRAP_SAMPLES = 2000
LEVEL = 0.95

Trials = Sequence[tuple[Sequence[float], Sequence[float]]]   # per trial: (group a values, group b values)


def schedule(arms: int, per_arm: int, unit: str, block: int, seed: str | int) -> list[int]:
    """Arm index of each request: every arm gets `per_arm` requests, in rounds where each arm
    comes once in a random order; a round holds one request (unit `request`) or `block`
    requests (unit `block`) of each arm."""
    if arms < 1 or per_arm < 0 or block < 1:
        raise ValueError("arms >= 1, per_arm >= 0 and block >= 1")
    size = 1 if unit == "request" else block
    rng = random.Random(str(seed))
    out: list[int] = []
    left = [per_arm] * arms
    while any(left):
        order = list(range(arms))
        rng.shuffle(order)
        for a in order:
            n = min(size, left[a])
            out += [a] * n
            left[a] -= n
    return out


def blocks(order: Sequence[int]) -> list[tuple[int, int]]:
    """(arm, length) of each run of equal arms in a schedule."""
    out: list[tuple[int, int]] = []
    for a in order:
        if out and out[-1][0] == a:
            out[-1] = (a, out[-1][1] + 1)
        else:
            out.append((a, 1))
    return out


def median_diff(trials: Trials) -> float:
    """median(b) - median(a) over the pooled trials (nan when a group is empty)."""
    a = np.concatenate([np.asarray(t[0], dtype=float) for t in trials]) if trials else np.zeros(0)
    b = np.concatenate([np.asarray(t[1], dtype=float) for t in trials]) if trials else np.zeros(0)
    return float(np.median(b) - np.median(a)) if a.size and b.size else float("nan")


def bootstrap(trials: Trials, seed: str | int, samples: int = BOOTSTRAP_SAMPLES,
              stat: Callable[[Trials], float] = median_diff) -> np.ndarray:
    """`samples` bootstrap values of `stat`: trials drawn with replacement, then each drawn
    trial's a and b values drawn with replacement within it."""
    kept = [(np.asarray(a, dtype=float), np.asarray(b, dtype=float)) for a, b in trials if len(a) and len(b)]
    if not kept:
        return np.full(samples, np.nan)
    rng = np.random.default_rng(abs(hash_seed(seed)))
    out = np.empty(samples)
    k = len(kept)
    for i in range(samples):
        drawn = [kept[j] for j in rng.integers(0, k, k)]
        out[i] = stat([(rng.choice(a, a.size), rng.choice(b, b.size)) for a, b in drawn])
    return out


def hash_seed(seed: str | int) -> int:
    """A stable integer of a seed text (Python's str hash is salted per process)."""
    return int.from_bytes(hashlib.sha256(str(seed).encode()).digest()[:8], "big")


def interval(values: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval of bootstrap values (nan, nan when there are none)."""
    v = values[~np.isnan(values)]
    if v.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def cliffs_delta(a: Sequence[float], b: Sequence[float]) -> float:
    """P(b > a) - P(b < a) over all pairs: -1..1, 0 when neither group tends to be larger."""
    x, y = np.sort(np.asarray(a, dtype=float)), np.asarray(b, dtype=float)
    if not x.size or not y.size:
        return float("nan")
    below = np.searchsorted(x, y, side="left").sum()      # pairs with a < b
    above = x.size - np.searchsorted(x, y, side="right")  # pairs with a > b
    return float((below - above.sum()) / (x.size * y.size))


def delta_words(d: float) -> str:
    """Romano et al.'s magnitude of a Cliff's delta."""
    m = abs(d)
    return "negligible" if m < 0.147 else "small" if m < 0.33 else "medium" if m < 0.474 else "large"


def slope(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of y against x (nan when fewer than 2 distinct x)."""
    xa, ya = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    ok = ~np.isnan(ya)
    xa, ya = xa[ok], ya[ok]
    if np.unique(xa).size < 2:
        return float("nan"), float("nan")
    s, c = np.polyfit(xa, ya, 1)
    return float(s), float(c)


def slopes(x: Sequence[float], draws: np.ndarray) -> np.ndarray:
    """The least-squares slope of each row of `draws` (one bootstrap value per x) against x."""
    xa = np.asarray(x, dtype=float)
    xc = xa - xa.mean()
    denom = float((xc ** 2).sum())
    if denom == 0:
        return np.full(draws.shape[0], np.nan)
    return (draws - draws.mean(axis=1, keepdims=True)) @ xc / denom
