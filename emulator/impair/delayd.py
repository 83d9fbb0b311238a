"""The delay process: holds each packet of its NFQUEUE queues for delay ± jitter, then accepts it.

    python -m emulator.impair.delayd kubemu<id>-delayd-<host> --queue NUM:DELAY_MS:JITTER_MS ...

Runs inside one host's namespace (NFQUEUE queues are per namespace). The first argument
is the process's name, carrying the run prefix so `kubemu clean` finds it. Prints
`ready` once every queue is bound. Packets leave each queue in arrival order (like a
link: jitter varies the delay but does not reorder); a packet's release time is
`max(arrival + delay + uniform(-jitter, jitter), previous release)`.
"""
from __future__ import annotations

import argparse
import heapq
import itertools
import os
import random
import select
import signal
import sys
import time


def parse_queue(text: str) -> tuple[int, float, float]:
    """`7002:1:0.2` -> (7002, 0.001, 0.0002): queue number, delay and jitter in seconds."""
    num, delay, jitter = text.split(":")
    return int(num), float(delay) / 1000, float(jitter) / 1000


class DelayLine:
    """Release times of one queue's packets: FIFO, delay ± uniform jitter."""

    def __init__(self, delay: float, jitter: float, rng: random.Random) -> None:
        self.delay, self.jitter, self.rng = delay, jitter, rng
        self.last = 0.0

    def release_at(self, now: float) -> float:
        """When a packet arriving `now` leaves."""
        d = self.delay + (self.rng.uniform(-self.jitter, self.jitter) if self.jitter else 0.0)
        self.last = max(now + max(d, 0.0), self.last)
        return self.last


def _realtime() -> None:
    """Ask for SCHED_FIFO so a busy machine does not add its scheduling delay to the link's."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(10))
    except (OSError, AttributeError):
        pass   # not allowed: a normal process still delays, a little less precisely


def serve(queues: list[tuple[int, float, float]], ready=print) -> None:
    """Bind every queue and release packets on time until SIGTERM."""
    from netfilterqueue import COPY_META, NetfilterQueue   # only the delay process needs the C extension

    _realtime()
    rng = random.Random()
    heap: list[tuple[float, int, object]] = []
    seq = itertools.count()
    bound = []
    for num, delay, jitter in queues:
        line = DelayLine(delay, jitter, rng)

        def hold(pkt, line=line) -> None:
            heapq.heappush(heap, (line.release_at(time.monotonic()), next(seq), pkt))
        q = NetfilterQueue()
        q.bind(num, hold, max_len=10000, mode=COPY_META)
        bound.append(q)
    fds = {q.get_fd(): q for q in bound}
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    ready("ready")
    try:
        while not stop:
            timeout = min(max(heap[0][0] - time.monotonic(), 0.0), 0.5) if heap else 0.5
            readable, _, _ = select.select(list(fds), [], [], timeout)
            for fd in readable:
                fds[fd].run(block=False)
            now = time.monotonic()
            while heap and heap[0][0] <= now:
                heapq.heappop(heap)[2].accept()
    finally:
        for q in bound:
            q.unbind()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="delayd")
    p.add_argument("name", help="process name, with the run prefix")
    p.add_argument("--queue", action="append", type=parse_queue, required=True,
                   help="NUM:DELAY_MS:JITTER_MS (repeatable)")
    args = p.parse_args(argv)
    serve(args.queue, ready=lambda s: (print(s), sys.stdout.flush()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
