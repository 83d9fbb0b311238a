"""The process table: children of processes, read from /proc."""
from __future__ import annotations

import os
import signal
import time
from typing import Callable, Iterable


def children(pids: list[int]) -> list[int]:
    """The live children of `pids` (by parent pid, from /proc)."""
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) in pids:
                        out.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return out


def parent(pid: int) -> int | None:
    """The parent pid of `pid`; None if it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def command(pid: int) -> list[str]:
    """The argv of `pid` ([] if it is gone or a kernel thread)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return []


def ancestor(pid: int, match) -> int | None:
    """The nearest ancestor of `pid` whose argv satisfies `match`; None if there is none."""
    p = parent(pid)
    while p and p > 1:
        if match(command(p)):
            return p
        p = parent(p)
    return None


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (children, their children...)."""
    out, level = [], [pid]
    while level:
        level = children(level)
        out += level
    return out


def netns_inode(pid: int) -> str | None:
    """The `net:[inode]` of the network namespace `pid` lives in; None if it is gone."""
    try:
        return os.readlink(f"/proc/{pid}/ns/net")
    except OSError:
        return None


def in_netns(inodes: set[str]) -> list[int]:
    """The processes living in one of the network namespaces `inodes` (`net:[N]`)."""
    me = os.getpid()
    return [int(d) for d in os.listdir("/proc") if d.isdigit() and int(d) != me and netns_inode(int(d)) in inodes]


def kill_until_gone(find: Callable[[], Iterable[int]], rounds: int = 3, pause: float = 0.2) -> int:
    """SIGKILL what `find()` lists, again up to `rounds` times (killed parents may have had
    children starting); how many kills landed."""
    killed = 0
    for _ in range(rounds):
        pids = list(find())
        if not pids:
            break
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
        time.sleep(pause)
    return killed
