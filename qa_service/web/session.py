"""Signed session cookies for the web pages: the browser holds a token, never the API key itself.

A token is `base64url(payload).base64url(HMAC-SHA256(payload))`. The payload names the API key by
its stored hash and carries an expiry; each request looks the key up again, so revoking a key ends
its sessions at once. The secret comes from QA_SESSION_SECRET, or is made per app at start-up (then
sessions end when the process restarts and are not shared between processes).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import secrets
import time
from typing import Any

COOKIE_NAME = "qa_session"
MAX_AGE_S = 12 * 3600
SECRET_ENV = "QA_SESSION_SECRET"
MIN_SECRET_BYTES = 16


def session_secret(state: Any) -> bytes:
    """The app's signing secret: QA_SESSION_SECRET, or random bytes kept on the app state."""
    secret = getattr(state, "session_secret", None)
    if secret is None:
        configured = os.environ.get(SECRET_ENV, "")
        if configured and len(configured.encode()) < MIN_SECRET_BYTES:
            raise ValueError(f"{SECRET_ENV} must be at least {MIN_SECRET_BYTES} bytes long")
        secret = configured.encode() if configured else secrets.token_bytes(32)
        state.session_secret = secret
    return secret  # type: ignore[no-any-return]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode("ascii"), hashlib.sha256).digest())


def make_token(secret: bytes, key_hash: str, *, now: float | None = None, max_age_s: int = MAX_AGE_S) -> str:
    """A signed token for the API key with this hash, valid for `max_age_s` seconds."""
    issued = int(now if now is not None else time.time())
    body = _b64(json.dumps({"k": key_hash, "exp": issued + max_age_s}, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, body)}"


def read_token(secret: bytes, token: str | None, *, now: float | None = None) -> str | None:
    """The key hash a token names, or None when it is missing, forged, malformed or expired."""
    if not token or not token.isascii() or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    if not hmac.compare_digest(mac, _mac(secret, body)):
        return None
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("k"), str):
        return None
    expires = payload.get("exp")
    if not isinstance(expires, int) or expires <= (now if now is not None else time.time()):
        return None
    return payload["k"]
