"""Helpers for the generator tests: raw loopback servers and a subprocess runner."""
import contextlib
import json
import socket
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


@contextlib.contextmanager
def raw_server(handler):
    """A TCP server on 127.0.0.1 calling handler(conn) for each connection in a thread."""
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(16)
    lsock.settimeout(0.2)
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            threading.Thread(target=handler, args=(conn,), daemon=True).start()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield lsock.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        lsock.close()


def run_tool(module, args, tmp_path, name="out.jsonl", timeout=60, expect_rc=0):
    """Run `python -m module args --out FILE`; returns (records, summary)."""
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", module, *args, "--out", str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == expect_rc, proc.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    summary = json.loads(proc.stdout.strip().splitlines()[-1]) if proc.stdout.strip() else None
    return records, summary
