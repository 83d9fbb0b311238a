"""How a run ends on a signal: SIGINT, SIGTERM and SIGHUP all tear the cluster down like Ctrl-C.

Once `arm`ed, each of the three raises `Interrupted` (a KeyboardInterrupt) once; the
handlers are installed explicitly, so SIGINT works also when the run was started with
SIGINT ignored (`kubemu run ... &` in a script), and again after `ray.init` (which installs
its own SIGTERM handler: `rearm`). From the first signal on, and during every teardown
(`teardown()`), further signals do not interrupt: the teardown never stops halfway; a line
on stderr says so (kill -9 ends it at once; `kubemu clean` then removes the rest). Exit code:
128 + the signal, so 130 for SIGINT, 143 for SIGTERM, 129 for SIGHUP.
"""
from __future__ import annotations

import contextlib
import os
import signal
from typing import Iterator

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_state: dict = {"active": False, "stopping": False, "hint": ""}


class Interrupted(KeyboardInterrupt):
    """A run stopped by a signal; `exit_code` is the shell's 128 + signal number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code(e: KeyboardInterrupt) -> int:
    """The exit code for an interrupted run (a plain KeyboardInterrupt is Ctrl-C's 130)."""
    return getattr(e, "exit_code", 128 + signal.SIGINT)


def say(text: str) -> None:
    """A line on stderr, safe in a signal handler and when the terminal is gone."""
    with contextlib.suppress(OSError):
        os.write(2, (text + "\n").encode())


def _handler(signum: int, _frame) -> None:
    if _state["stopping"]:
        say(f"{signal.Signals(signum).name}: tearing down already, it finishes first{_state['hint']}")
        return
    _state["stopping"] = True
    raise Interrupted(signum)


def rearm() -> None:
    """Install the handlers again (after a library replaced one) while a run is stoppable."""
    if _state["active"]:
        for s in STOP_SIGNALS:
            signal.signal(s, _handler)


def arm(run_id: str = "") -> dict:
    """From now on SIGINT, SIGTERM and SIGHUP raise Interrupted once, then only report;
    returns the previous handlers for `disarm`."""
    old = {s: signal.signal(s, _handler) for s in STOP_SIGNALS}
    hint = f" (kill -9 leaves leftovers: `kubemu clean {run_id}` removes them)" if run_id else ""
    _state.update(active=True, stopping=False, hint=hint)
    return old


def disarm(old: dict) -> None:
    """Back to the handlers before `arm`."""
    _state.update(active=False, stopping=False)
    for s, h in old.items():
        if h is not None:       # None: a handler not set from Python, nothing to restore
            signal.signal(s, h)


@contextlib.contextmanager
def teardown() -> Iterator[None]:
    """Within: a stop signal is reported, never raised, so a teardown never stops halfway."""
    was = _state["stopping"]
    _state["stopping"] = True
    try:
        yield
    finally:
        _state["stopping"] = was
