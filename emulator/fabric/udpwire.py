"""The underlay between real machines: a tap in the fabric namespace, its frames carried over UDP.

Real machines share no network segment kubemu may take over, and kubemu adds no address,
route or firewall rule to a machine's root namespace. So each machine's underlay link is
a tap device in its fabric namespace (a port of its underlay bridge, exactly where a
simulated machine has its veth), and the `Machine` actor relays: every Ethernet frame OVS
sends into the tap goes, in one UDP datagram from the machine's real address, to the
machine that owns the destination MAC (broadcasts to every machine), and every datagram
from a known machine is written into the tap. The frames carry the VXLAN packets of the
VPC, up to 14 + 1600 bytes; where the real network's MTU is smaller the kernel fragments
the outer datagram. The tap is not persistent: it disappears with the actor's process.
"""
from __future__ import annotations

import logging
import os
import select
import socket
import threading

from emulator.kernel import links

log = logging.getLogger(__name__)
BROADCAST = "ff:ff:ff:ff:ff:ff"
_POLL = 0.5


def _mac(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


class UdpWire:
    """Tap `name` in `netns` <-> UDP on `bind_ip`:`port` (0: any free port)."""

    def __init__(self, name: str, netns: str, bind_ip: str, port: int = 0, mtu: int = 1600) -> None:
        self.name, self.netns, self.mtu = name, netns, mtu
        self.bind = (bind_ip, port)
        self.peers: dict[str, tuple[str, int]] = {}  # MAC -> (real IP, UDP port)
        self.frames = {"to_udp": 0, "to_tap": 0, "dropped": 0}
        self._fd = -1
        self._sock: socket.socket | None = None
        self._stop = threading.Event()

    def start(self) -> tuple[str, int]:
        """Create the tap (in the fabric namespace) and the socket; returns the socket's address."""
        self._fd = links.open_tap(self.name, self.netns)
        links.ip_batch(self.netns, [f"link set {self.name} mtu {self.mtu} up"])
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind(self.bind)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        for target, name in ((self._tap_to_udp, "wire-out"), (self._udp_to_tap, "wire-in")):
            threading.Thread(target=target, name=name, daemon=True).start()
        return self._sock.getsockname()

    def set_peers(self, peers: dict[str, tuple[str, int]]) -> None:
        """The other machines' underlay MACs and where their wires listen."""
        self.peers = {mac.lower(): (ip, int(port)) for mac, (ip, port) in peers.items()}

    def _tap_to_udp(self) -> None:
        while not self._stop.is_set():
            try:
                if not select.select([self._fd], [], [], _POLL)[0]:
                    continue
                frame = os.read(self._fd, 65536)
            except (OSError, ValueError):  # closed by stop(), or the tap is down
                if self._stop.wait(0.1):
                    return
                continue
            dst = _mac(frame[:6])
            targets = [self.peers[dst]] if dst in self.peers else \
                list(set(self.peers.values())) if dst == BROADCAST or frame[0] & 1 else []
            if not targets:
                self.frames["dropped"] += 1
            for addr in targets:
                try:
                    self._sock.sendto(frame, addr)
                    self.frames["to_udp"] += 1
                except OSError as exc:
                    log.debug("wire send to %s failed: %s", addr, exc)

    def _udp_to_tap(self) -> None:
        while not self._stop.is_set():
            try:
                if not select.select([self._sock], [], [], _POLL)[0]:
                    continue
                frame, src = self._sock.recvfrom(65536)
            except (OSError, ValueError):  # closed by stop()
                return
            if src not in self.peers.values():
                self.frames["dropped"] += 1  # only the run's own machines may inject frames
                continue
            try:
                os.write(self._fd, frame)
                self.frames["to_tap"] += 1
            except OSError:  # the tap is down (a machine outage) or closed by stop()
                self.frames["dropped"] += 1

    def stop(self) -> None:
        """Stop relaying; closing the tap's descriptor removes the tap."""
        self._stop.set()
        if self._sock is not None:
            self._sock.close()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
