"""Identities for the emulated Identity-Aware Proxy: HS256 JWTs signed with a per-run key.

The key is made when the cloud controller starts and kept in the run's state directory
(`/run/kubemu/kubemu<id>/iap.key`, mode 600); `kubemu iap-token --member EMAIL` signs a
token with it, and the proxy checks signature, expiry and the allowed members.
"""
from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import json
import os
import secrets
import time

from emulator.errors import KubemuError
from emulator.paths import STATE_ROOT

KEY_FILE = "iap.key"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def issue_token(key: str, member: str, ttl: float = 3600, now: float | None = None) -> str:
    """A signed token for `member` (an email, `user:` prefix allowed), valid `ttl` seconds."""
    email = member.removeprefix("user:")
    now = time.time() if now is None else now
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    payload = _b64(json.dumps({"email": email, "sub": f"accounts.google.com:{email}", "iat": int(now),
                               "exp": int(now + ttl), "iss": "https://cloud.google.com/iap"},
                              separators=(",", ":")).encode())
    sig = hmac.new(key.encode(), f"{header}.{payload}".encode(), hashlib.sha256).digest()
    return f"{header}.{payload}.{_b64(sig)}"


def ensure_key(state_dir: str) -> str:
    """The run's IAP signing key, created on first use."""
    path = os.path.join(state_dir, KEY_FILE)
    if not os.path.exists(path):
        os.makedirs(state_dir, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    with open(path) as f:
        return f.read().strip()


def run_key(run_id: str | None = None) -> str:
    """The key of the running run (`run_id`, or the only one); KubemuError otherwise."""
    found = sorted(glob.glob(os.path.join(STATE_ROOT, f"kubemu{run_id or '*'}", KEY_FILE)))
    if not found:
        raise KubemuError("no running run with an Identity-Aware Proxy key (is a run in progress?)")
    if len(found) > 1:
        runs = ", ".join(os.path.basename(os.path.dirname(f))[6:] for f in found)
        raise KubemuError(f"several runs are up ({runs}): choose one with --run")
    with open(found[0]) as f:
        return f.read().strip()
