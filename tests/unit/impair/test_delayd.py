"""The delay process's release times: delay ± jitter, never reordering a queue."""
import random

import pytest

from emulator.impair.delayd import DelayLine, parse_queue

pytestmark = pytest.mark.unit


def test_parse_queue():
    assert parse_queue("7002:1:0.2") == (7002, 0.001, 0.0002)


def test_fixed_delay():
    line = DelayLine(0.001, 0.0, random.Random(1))
    assert line.release_at(10.0) == pytest.approx(10.001)


def test_jitter_spreads_within_bounds_without_reordering():
    line = DelayLine(0.005, 0.002, random.Random(7))
    arrivals = [i * 0.0001 for i in range(2000)]          # packets 0.1 ms apart
    out = [line.release_at(t) for t in arrivals]
    assert out == sorted(out)                              # FIFO
    waits = [o - t for o, t in zip(out, arrivals)]
    assert min(waits) >= 0.003 - 1e-12 and max(waits) <= 0.007 + 1e-12
    spaced = DelayLine(0.005, 0.002, random.Random(7))
    lone = [spaced.release_at(t) - t for t in (i * 1.0 for i in range(2000))]   # far apart: free jitter
    assert min(lone) < 0.0032 and max(lone) > 0.0068
