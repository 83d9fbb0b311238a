"""Receive buffers of another process's packet sockets: the private OVS's port sockets.

With the userspace datapath, ovs-vswitchd reads each port through an AF_PACKET socket
whose receive buffer is the kernel's default (`net.core.rmem_default`, 208 KiB: about 90
full-size frames). A TCP sender on a veth bursts faster than one ovs-vswitchd thread
drains it: measured here, 10-16% of a single iperf3 flow's segments dropped on that
socket (`ss -0 -m`: `d` in skmem) and retransmitted, on an idle machine, where a real VPC
drops none. OVS has no setting for it, and `rmem_default` is host-wide (read-only inside
a namespace since Linux 6.10), so kubemu sets the buffer of each of its own OVS's packet
sockets directly: it takes a duplicate of the socket with pidfd_getfd(2) (the same open
socket, not a copy) and sets SO_RCVBUFFORCE on it. Only processes kubemu started (its
private ovs-vswitchd) are ever touched.
"""
from __future__ import annotations

import ctypes
import os
import socket

SYS_PIDFD_GETFD = 438          # the same number on every architecture (asm-generic, Linux 5.6)
SO_RCVBUFFORCE = 33
PORT_RCVBUF = 2 << 20          # the kernel doubles it: 4 MiB, ~1800 full-size frames
_libc = ctypes.CDLL(None, use_errno=True)


def packet_socket_inodes(pid: int) -> set[int]:
    """Inodes of the AF_PACKET sockets in the network namespace of process `pid`."""
    inodes = set()
    with open(f"/proc/{pid}/net/packet") as f:
        next(f, None)   # header: sk RefCnt Type Proto Iface R Rmem User Inode
        for line in f:
            cols = line.split()
            if len(cols) >= 9 and cols[8].isdigit():
                inodes.add(int(cols[8]))
    return inodes


def socket_fds(pid: int) -> dict[int, int]:
    """fd -> socket inode of every socket process `pid` holds."""
    out = {}
    base = f"/proc/{pid}/fd"
    for fd in os.listdir(base):
        try:
            target = os.readlink(f"{base}/{fd}")
        except OSError:   # closed meanwhile
            continue
        if target.startswith("socket:["):
            out[int(fd)] = int(target[8:-1])
    return out


def force_packet_rcvbuf(pid: int, size: int = PORT_RCVBUF, done: set[int] | None = None) -> set[int]:
    """Set the receive buffer of every packet socket of process `pid` whose inode is not in `done`;
    returns the inodes now set (`done` included). OSError if the process cannot be reached."""
    done = set(done or ())
    wanted = packet_socket_inodes(pid) - done
    if not wanted:
        return done
    pidfd = os.pidfd_open(pid)
    try:
        for fd, inode in socket_fds(pid).items():
            if inode not in wanted:
                continue
            mine = _libc.syscall(SYS_PIDFD_GETFD, pidfd, fd, 0)
            if mine < 0:
                err = ctypes.get_errno()
                if err == 9:   # EBADF: closed meanwhile (OVS reopened the port)
                    continue
                raise OSError(err, f"pidfd_getfd of fd {fd} of process {pid}: {os.strerror(err)}")
            sock = socket.socket(fileno=mine)
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
            finally:
                sock.close()   # our duplicate only: the process's socket stays open
            done.add(inode)
    finally:
        os.close(pidfd)
    return done
