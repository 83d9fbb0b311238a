"""Reachability probes from inside one pod's namespace: many TCP connects and UDP requests at once.

    ip netns exec POD python -m emulator.netpol.probe '{"timeout": 1, "targets": [["10.8.0.20", 80, "TCP"]]}'

Prints one JSON list with an outcome per target: `ok`, `timeout`, `refused` or
`unsupported` (SCTP without kernel support). TCP: a connect (then closed); UDP: the
agnhost `hostname` request and its reply, on a new connected socket each time.
"""
from __future__ import annotations

import asyncio
import json
import socket
import sys


async def _outcome(coro, timeout: float) -> str:
    """`ok` when the awaitable completes in time, else why not."""
    try:
        await asyncio.wait_for(coro, timeout)
        return "ok"
    except asyncio.TimeoutError:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as exc:
        return f"error: {exc.strerror or exc}"


async def probe_tcp(ip: str, port: int, timeout: float) -> str:
    """Connect, then close."""
    async def connect() -> None:
        _, writer = await asyncio.open_connection(ip, port)
        writer.close()
    return await _outcome(connect(), timeout)


async def probe_udp(ip: str, port: int, timeout: float) -> str:
    """Send `hostname` on a new connected socket, wait for any reply."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)

    async def request() -> None:
        sock.connect((ip, port))
        sock.send(b"hostname")
        await asyncio.get_running_loop().sock_recv(sock, 65535)
    try:
        return await _outcome(request(), timeout)
    finally:
        sock.close()


async def probe_sctp(ip: str, port: int, timeout: float) -> str:
    """An SCTP association, where the kernel has SCTP."""
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, getattr(socket, "IPPROTO_SCTP", 132))
    except OSError:
        return "unsupported"
    sock.setblocking(False)
    try:
        return await _outcome(asyncio.get_running_loop().sock_connect(sock, (ip, port)), timeout)
    finally:
        sock.close()


PROBES = {"TCP": probe_tcp, "UDP": probe_udp, "SCTP": probe_sctp}


async def probe_all(targets: list[list], timeout: float) -> list[str]:
    """Every target at once."""
    return list(await asyncio.gather(*(PROBES[proto](ip, int(port), timeout) for ip, port, proto in targets)))


def main(argv: list[str]) -> int:
    """Read the request from argv[0], print the outcomes."""
    req = json.loads(argv[0])
    print(json.dumps(asyncio.run(probe_all(req["targets"], float(req.get("timeout", 1.0))))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
