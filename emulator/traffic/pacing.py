"""When requests start: closed-loop (N workers back to back) or open-loop (a fixed rate).

Shared by the generators. A flow ends after `--requests` requests or `--duration`
seconds, whichever comes first, or on SIGTERM/SIGINT; requests in flight always finish
(each is bounded by its own timeout) so their records are written. At a fixed rate the
duration bounds the schedule: every request due in the first `--duration` seconds is
sent, late if the generator fell behind (a stalled machine), so a flow of rate R over D
seconds is R x D requests however busy the machine was; their start times show the lag.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
from typing import Awaitable, Callable

from emulator.traffic.records import print_summary


def add_pacing_args(parser: argparse.ArgumentParser) -> None:
    """Options common to all generators."""
    parser.add_argument("--requests", type=int, default=None, help="number of requests to send")
    parser.add_argument("--duration", type=float, default=None, help="stop starting requests after S seconds")
    parser.add_argument("--concurrency", type=int, default=None,
                        help="closed loop: C requests in flight, each started when one ends (default 1)")
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: start R requests per second whatever the answers")
    parser.add_argument("--timeout", type=float, default=5.0, help="per-request timeout in seconds")
    parser.add_argument("--out", required=True, help="JSON-lines file of per-request records ('-': stdout)")


def check_pacing_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Exit with a usage error (2) on contradictory or missing pacing options."""
    if args.requests is None and args.duration is None:
        parser.error("give --requests, --duration or both")
    if args.rate is not None and args.concurrency is not None:
        parser.error("--rate and --concurrency exclude each other")
    if args.requests is not None and args.requests < 0:
        parser.error("--requests must be >= 0")
    if args.rate is not None and args.rate <= 0:
        parser.error("--rate must be > 0")
    if args.concurrency is not None and args.concurrency < 1:
        parser.error("--concurrency must be >= 1")
    if args.timeout <= 0:
        parser.error("--timeout must be > 0")
    if args.concurrency is None and args.rate is None:
        args.concurrency = 1


async def drive(one: Callable[[int], Awaitable[None]], requests: int | None, duration: float | None,
                concurrency: int | None = 1, rate: float | None = None) -> None:
    """Call `one(seq)` for seq = 0, 1, ... paced by concurrency or rate until done or signalled."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError, ValueError):
            pass
    start = loop.time()
    deadline = None if duration is None else start + duration
    counter = itertools.count()

    def more(seq: int) -> bool:
        return ((requests is None or seq < requests) and not stop.is_set()
                and (deadline is None or loop.time() < deadline))

    if rate is not None:
        tasks: set[asyncio.Task] = set()
        for seq in counter:
            if deadline is not None and start + seq / rate >= deadline:
                break                    # due after the duration (sent late if we lag)
            delay = start + seq / rate - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                except asyncio.TimeoutError:
                    pass
            if (requests is not None and seq >= requests) or stop.is_set():
                break
            task = loop.create_task(one(seq))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.gather(*tasks)
        return

    async def worker() -> None:
        while True:
            seq = next(counter)
            if not more(seq):
                return
            await one(seq)

    await asyncio.gather(*(worker() for _ in range(concurrency or 1)))


def paced_main(parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Awaitable[dict]],
               kind: str, argv: list[str] | None = None) -> int:
    """main() of a paced HOST:PORT generator: exit 0 when the flow ran (whatever its outcomes),
    1 when it could not run, 2 on bad usage; the summary line goes to stdout (stderr with --out -)."""
    args = parser.parse_args(argv)
    check_pacing_args(parser, args)
    if not 0 < args.port < 65536:
        parser.error("--port must be in 1..65535")
    try:
        summary = asyncio.run(run(args))
    except OSError as exc:
        print(json.dumps({"kind": kind, "fatal": str(exc)}), file=sys.stderr)
        return 1
    print_summary(summary, args.out)
    return 0
