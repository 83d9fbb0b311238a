"""Stop signals of a run: each raises once (exit 128 + signal), a teardown is never interrupted."""
from __future__ import annotations

import os
import signal

import pytest

from emulator.runner import signals

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("sig,code", [(signal.SIGINT, 130), (signal.SIGTERM, 143), (signal.SIGHUP, 129)])
def test_each_stop_signal_interrupts_once_with_its_exit_code(sig, code) -> None:
    old = signals.arm("q3zx")
    try:
        with pytest.raises(signals.Interrupted) as e:
            os.kill(os.getpid(), sig)
        assert isinstance(e.value, KeyboardInterrupt) and signals.exit_code(e.value) == code
        os.kill(os.getpid(), sig)         # a second signal: the teardown that follows is not cut short
    finally:
        signals.disarm(old)
    assert signal.getsignal(sig) is old[sig]


def test_sigint_ignored_at_start_still_stops_a_run() -> None:
    """bash starts `kubemu run ... &` with SIGINT ignored; arming installs a handler anyway."""
    prev = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        old = signals.arm()
        try:
            with pytest.raises(signals.Interrupted):
                os.kill(os.getpid(), signal.SIGINT)
        finally:
            signals.disarm(old)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, prev)


def test_a_signal_during_teardown_is_reported_not_raised(capfd) -> None:
    old = signals.arm("q3zx")
    try:
        with signals.teardown():
            os.kill(os.getpid(), signal.SIGTERM)
        assert "tearing down already" in capfd.readouterr().err
        with pytest.raises(signals.Interrupted):   # after the teardown, a signal stops again
            os.kill(os.getpid(), signal.SIGTERM)
    finally:
        signals.disarm(old)


def test_a_plain_keyboard_interrupt_is_ctrl_c() -> None:
    assert signals.exit_code(KeyboardInterrupt()) == 130
