"""The SDN controller binds its own OpenFlow socket: a private unix socket, or a TCP port it
picks and reports (and takes again after a restart when it can), with mutual TLS."""
from __future__ import annotations

import os
import socket
import ssl
import stat

import pytest

from emulator.fabric.pki import client_context, make_pki, write
from emulator.fabric.relay import UnixToTcpRelay
from emulator.fabric.sdn import SdnController

pytestmark = pytest.mark.unit


def hello(connect: tuple[int, object]) -> bytes:
    """The first OpenFlow header the controller sends to a new connection."""
    family, addr = connect
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(addr)
        return s.recv(8)


def test_unix_socket_is_private_and_comes_back_at_the_same_path(tmp_path) -> None:
    path = str(tmp_path / "sdn" / "openflow.sock")
    ctl = SdnController(0, path)
    try:
        assert ctl.address() == {"target": f"unix:{path}", "path": path}
        assert stat.S_IMODE(os.stat(os.path.dirname(path)).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        assert hello((socket.AF_UNIX, path))[:2] == b"\x04\x00"   # OpenFlow 1.3 HELLO
    finally:
        ctl.stop()
    assert not os.path.exists(path)
    with socket.socket(socket.AF_UNIX) as stale:   # a crashed controller leaves its socket file
        stale.bind(path)
    ctl = SdnController(0, path)
    try:
        assert hello((socket.AF_UNIX, path))[:2] == b"\x04\x00"
    finally:
        ctl.stop()


def test_tcp_port_zero_is_reported_and_reused_after_a_restart(tmp_path) -> None:
    port_file = str(tmp_path / "sdn" / "port")
    ctl = SdnController(0, "127.0.0.1", port_file=port_file)
    port = ctl.listen_port
    try:
        assert port and ctl.address() == {"target": f"tcp:127.0.0.1:{port}", "host": "127.0.0.1", "port": port,
                                   "tls": False}
        assert open(port_file).read() == str(port)
        assert hello((socket.AF_INET, ("127.0.0.1", port)))[:2] == b"\x04\x00"
    finally:
        ctl.stop()
    ctl = SdnController(0, "127.0.0.1", port_file=port_file)
    try:
        assert ctl.listen_port == port
    finally:
        ctl.stop()
    with socket.socket() as squatter:   # someone took the port meanwhile: another one, reported
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # past the old connections
        squatter.bind(("127.0.0.1", port))
        squatter.listen(1)
        ctl = SdnController(0, "127.0.0.1", port_file=port_file)
        try:
            assert ctl.listen_port not in (0, port)
            assert open(port_file).read() == str(ctl.listen_port)
            assert hello((socket.AF_INET, ("127.0.0.1", ctl.listen_port)))[:2] == b"\x04\x00"
        finally:
            ctl.stop()


def served(connect, ctx: ssl.SSLContext | None = None) -> bytes:
    """What a TCP client gets first from the controller ('' when refused), optionally over TLS."""
    try:
        with socket.create_connection(connect, timeout=5) as raw:
            s = ctx.wrap_socket(raw, server_hostname=connect[0]) if ctx else raw
            if ctx is None:
                s.sendall(b"\x04\x00\x00\x08\x00\x00\x00\x01")   # a plain OpenFlow HELLO
            return s.recv(8)
    except (ssl.SSLError, OSError):
        return b""


def test_tls_serves_only_the_runs_switches(tmp_path) -> None:
    tls = make_pki("kubemutest", "127.0.0.1")
    ctl = SdnController(0, "127.0.0.1", port_file=str(tmp_path / "sdn" / "port"), tls=tls)
    relay = None
    try:
        addr = ("127.0.0.1", ctl.listen_port)
        assert ctl.address()["target"] == f"ssl:127.0.0.1:{ctl.listen_port}"
        assert stat.S_IMODE(os.stat(tmp_path / "sdn" / "pki" / "controller-key.pem").st_mode) == 0o600
        switch = client_context(write(tls, str(tmp_path / "switch"), "switch"))
        assert served(addr, switch)[:2] == b"\x04\x00"
        # the machines' relay: OVS speaks plain OpenFlow on a unix socket, the relay TLS
        relay = UnixToTcpRelay(str(tmp_path / "relay.sock"), lambda: addr, switch).start()
        assert hello((socket.AF_UNIX, relay.unix_path))[:2] == b"\x04\x00"
        # no certificate, or one from another run's CA: not served
        assert not served(addr).startswith(b"\x04\x00")
        other = make_pki("kubemuother", "127.0.0.1")
        stranger = client_context(write({**other, "ca": tls["ca"]}, str(tmp_path / "other"), "switch"))
        assert served(addr, stranger) == b""
        anonymous = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        anonymous.load_verify_locations(cadata=tls["ca"])
        assert served(addr, anonymous) == b""
    finally:
        if relay is not None:
            relay.stop()
        ctl.stop()
