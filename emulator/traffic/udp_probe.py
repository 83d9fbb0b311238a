"""UDP request/response probe (agnhost netexec's UDP commands), run inside a client's namespace.

    ip netns exec NS python -m emulator.traffic.udp_probe --host HOST --port 8081 [--message hostname] \
        --requests 100 [--duration S] [--concurrency C | --rate R] [--timeout S] [--reuse-socket] --out FILE.jsonl

Each request uses a NEW connected UDP socket (a new source port, so a new conntrack
entry and a fresh load-balancing choice) unless `--reuse-socket`. A connected socket
receives ICMP port-unreachable as ECONNREFUSED, so "refused" and "timeout" differ as
for TCP. Records have the same shape as http_load's (connect_ms is null, ttfb_ms ==
total_ms == the round trip) plus `reply`. `--message hostname` fills `pod`, `clientip`
fills `client_ip_seen`, and kubemu's own `kubemu` command fills pod, node and client.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import socket
import sys
import time
from typing import Any

from emulator.traffic.pacing import add_pacing_args, drive, paced_main
from emulator.traffic.records import CachedResolver, RecordWriter, classify, ms

MAX_DATAGRAM = 65535


class UdpProbe:
    """Sends the datagrams of one flow and writes one record per request."""

    def __init__(self, host: str, port: int, message: str, writer: RecordWriter, timeout: float,
                 reuse_socket: bool = False) -> None:
        self.host, self.port, self.message = host, port, message
        self.payload = message.encode()
        self.out, self.timeout, self.reuse_socket = writer, timeout, reuse_socket
        self._shared: socket.socket | None = None
        self._resolver = CachedResolver(host, port, socket.SOCK_DGRAM)
        self._lock = asyncio.Lock()

    async def _socket(self, rec: dict[str, Any], state: dict) -> socket.socket:
        """A connected non-blocking UDP socket (new, or the shared one)."""
        if self.reuse_socket and self._shared is not None:
            rec["reused"] = True
            return self._shared
        family, addr = await self._resolver.resolve(rec, state)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        sock.connect(addr)
        if self.reuse_socket:
            self._shared = sock
        return sock

    async def one(self, seq: int) -> None:
        """Send request `seq` and record the reply or the failure."""
        rec: dict[str, Any] = {"seq": seq, "t_start": time.time(), "dns_ms": None, "connect_ms": None,
                               "ttfb_ms": None, "total_ms": None, "outcome": None, "status": None,
                               "pod": None, "node": None, "client_ip_seen": None, "client_port_seen": None,
                               "remote_ip": None, "remote_port": None, "local_ip": None, "local_port": None,
                               "reused": False, "reply": None, "errno": None, "error": None}
        t0 = time.perf_counter()
        state = {"phase": "send"}
        sock = None
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                if self.reuse_socket:
                    async with self._lock:   # one exchange at a time on the shared socket
                        sock = await self._socket(rec, state)
                        data = await self._exchange(loop, sock, rec, state)
                else:
                    sock = await self._socket(rec, state)
                    data = await self._exchange(loop, sock, rec, state)
            rec["ttfb_ms"] = ms(time.perf_counter() - t0)
            rec["outcome"] = "ok"
            self._interpret(data, rec)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a record
            outcome, errno_name, text = classify(exc, state["phase"])
            rec.update(outcome=outcome, errno=errno_name, error=text)
        finally:
            if sock is not None and not self.reuse_socket:
                sock.close()
        rec["total_ms"] = ms(time.perf_counter() - t0)
        self.out.write(rec)

    async def _exchange(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, rec: dict[str, Any],
                        state: dict) -> bytes:
        """Send the payload, wait for one reply."""
        rec["remote_ip"], rec["remote_port"] = sock.getpeername()[:2]
        rec["local_ip"], rec["local_port"] = sock.getsockname()[:2]
        state["phase"] = "send"
        await loop.sock_sendall(sock, self.payload)
        state["phase"] = "response"
        return await loop.sock_recv(sock, MAX_DATAGRAM)

    def _interpret(self, data: bytes, rec: dict[str, Any]) -> None:
        """Fill pod/node/client from the reply according to the command sent."""
        text = data.decode("utf-8", "replace").strip()
        rec["reply"] = text[:256]
        cmd = self.message.strip().lower()
        if cmd == "hostname":
            rec["pod"] = text or None
        elif cmd == "clientip":
            host, _, port = text.rpartition(":")
            rec["client_ip_seen"] = host.strip("[]") or None
            rec["client_port_seen"] = int(port) if port.isdigit() else None
        elif cmd == "kubemu":
            try:
                info = json.loads(text)
                rec.update(pod=info.get("pod"), node=info.get("node"),
                           client_ip_seen=info.get("client_ip"), client_port_seen=info.get("client_port"))
            except (ValueError, AttributeError):
                rec.update(outcome="error", error="response: reply to 'kubemu' is not JSON")

    def close(self) -> None:
        """Close the shared socket, if any."""
        if self._shared is not None:
            self._shared.close()
            self._shared = None


def build_parser() -> argparse.ArgumentParser:
    """Command-line options."""
    p = argparse.ArgumentParser(prog="python -m emulator.traffic.udp_probe", description=__doc__.split("\n")[0])
    p.add_argument("--host", required=True, help="name or IP to send to")
    p.add_argument("--port", type=int, required=True, help="UDP port")
    p.add_argument("--message", default="hostname", help="datagram to send (hostname, clientip, echo X, kubemu)")
    p.add_argument("--reuse-socket", action="store_true", help="one socket (one source port) for all requests")
    add_pacing_args(p)
    return p


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Run one flow; returns the summary."""
    out = RecordWriter(args.out)
    probe = UdpProbe(args.host, args.port, args.message, out, args.timeout, args.reuse_socket)
    try:
        await drive(probe.one, args.requests, args.duration, args.concurrency, args.rate)
    finally:
        probe.close()
        out.close()
    return out.summary(kind="udp", target=f"{args.host}:{args.port}", message=args.message, out=args.out)


def main(argv: list[str] | None = None) -> int:
    """Entry point: exit 0 when the flow ran (whatever its outcomes), 2 on bad usage."""
    return paced_main(build_parser(), run, "udp", argv)


if __name__ == "__main__":
    sys.exit(main())
