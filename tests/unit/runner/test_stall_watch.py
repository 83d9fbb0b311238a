"""The stall watch writes every thread's stack while the process runs no Python, and counts the stall."""
from __future__ import annotations

import ctypes
import time

import pytest

from emulator.node.stall_watch import StallWatch

pytestmark = pytest.mark.unit


def hold_gil(seconds: float) -> None:
    """Sleep in C without releasing the GIL (PyDLL calls keep it), as a stuck C call would."""
    libc = ctypes.PyDLL(None)
    libc.usleep(int(seconds * 1e6))


def test_a_stall_is_dumped_while_it_lasts_and_counted(tmp_path):
    path = tmp_path / "stalls.txt"
    watch = StallWatch(str(path), limit=0.5, tick=0.05).start()
    try:
        time.sleep(0.2)                  # the watch is armed
        hold_gil(1.5)
        deadline = time.monotonic() + 30
        while not watch.stalls and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        watch.stop()
    text = path.read_text()
    assert "Timeout (0:00:00.5" in text and "hold_gil" in text   # the holder's stack, dumped during the stall
    assert watch.summary()["stalls"] >= 1 and watch.summary()["max_s"] >= 0.5


def test_no_stall_no_dump(tmp_path):
    path = tmp_path / "stalls.txt"
    watch = StallWatch(str(path), limit=5.0, tick=0.05).start()
    time.sleep(0.3)
    watch.stop()
    assert path.read_text() == "" and watch.summary() == {"stalls": 0, "max_s": 0.0}
