"""The `kubedns` container of the kube-dns pod: answers cluster.local and in-addr.arpa from a zone file.

As on GKE, the pod runs two servers: dnsmasq on port 53 (what pods ask; no cache in
kubemu, see runtime.dnsmasq_argv) forwards cluster names to this one on
127.0.0.1:10053. The zone file (JSON, dns_records.build_zone) is rewritten by the node
agent whenever Services or EndpointSlices change; it is re-read when its mtime changes,
checked on every question, so an answer follows the API within one informer event.
dnsmasq cannot serve SRV/CNAME/PTR records that change at run time: SIGHUP re-reads only
its hosts-style files (`--addn-hosts`, `--hostsdir`, /etc/hosts, /etc/ethers, DHCP files),
never `--cname`/`--srv-host`/`--ptr-record` or `--conf-dir` (dnsmasq(8), SIGHUP).

    python -m emulator.node.kubedns --zone FILE [--listen 127.0.0.1] [--port 10053]
"""
from __future__ import annotations

import argparse
import json
import os
import socketserver
import struct
import threading

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from emulator.node.dns_records import DOMAIN, TTL, Zone, answer_text, lookup

PORT = 10053


class ZoneFile:
    """The zone, re-read whenever the file changes."""

    def __init__(self, path: str) -> None:
        self.path, self._stamp, self.zone = path, None, {}
        self._lock = threading.Lock()

    def current(self) -> Zone:
        """The zone as the file holds it now (the last good one while it is being replaced)."""
        try:
            st = os.stat(self.path)
        except OSError:
            return self.zone
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        with self._lock:
            if stamp != self._stamp:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        self.zone = json.load(f)
                    self._stamp = stamp
                except (OSError, ValueError):
                    pass
            return self.zone


def respond(wire: bytes, zone: Zone, domain: str = DOMAIN) -> bytes | None:
    """The wire answer to one query (None for a packet that is not a query)."""
    try:
        query = dns.message.from_wire(wire)
    except Exception:
        return None
    response = dns.message.make_response(query)
    response.flags |= dns.flags.AA
    if len(query.question) != 1:
        response.set_rcode(dns.rcode.FORMERR)
        return response.to_wire()
    q = query.question[0]
    rcode, answers = lookup(zone, q.name.to_text(), dns.rdatatype.to_text(q.rdtype), domain)
    response.set_rcode(dns.rcode.from_text(rcode))
    for name, rtype, value in answers:
        text = answer_text(rtype, value) + ("." if rtype in ("CNAME", "PTR", "SRV") else "")
        rd = dns.rdata.from_text(dns.rdataclass.IN, rtype, text)
        rrset = response.find_rrset(response.answer, dns.name.from_text(name), dns.rdataclass.IN,
                                    dns.rdatatype.from_text(rtype), create=True)
        rrset.add(rd, TTL)
    return response.to_wire(max_size=65535)


def serve(zone_file: ZoneFile, listen: str, port: int) -> None:
    """Answer on UDP and TCP `listen:port` until killed."""

    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            out = respond(data, zone_file.current())
            if out is not None:
                if len(out) > 512:     # truncate: the client retries over TCP
                    msg = dns.message.from_wire(out)
                    msg.answer.clear()
                    msg.flags |= dns.flags.TC
                    out = msg.to_wire()
                sock.sendto(out, self.client_address)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            while True:
                head = self.rfile.read(2)
                if len(head) < 2:
                    return
                data = self.rfile.read(struct.unpack("!H", head)[0])
                out = respond(data, zone_file.current())
                if out is None:
                    return
                self.wfile.write(struct.pack("!H", len(out)) + out)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    udp = socketserver.ThreadingUDPServer((listen, port), Udp)
    tcp = socketserver.ThreadingTCPServer((listen, port), Tcp)
    tcp.daemon_threads = udp.daemon_threads = True
    threading.Thread(target=tcp.serve_forever, daemon=True).start()
    print(f"kubedns: serving {zone_file.path} on {listen}:{port}", flush=True)
    udp.serve_forever()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--zone", required=True)
    p.add_argument("--listen", default="127.0.0.1")
    p.add_argument("--port", type=int, default=PORT)
    a = p.parse_args(argv)
    serve(ZoneFile(a.zone), a.listen, a.port)


if __name__ == "__main__":
    main()
