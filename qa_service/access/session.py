"""Web sessions and form tokens: the browser holds a signed token, never the API key itself.

A session token is `base64url(payload).base64url(HMAC-SHA256(payload))`. The payload names the API
key by its stored hash, a random session id and an expiry. The database keeps every live session
(`storage/sessions.py`), so signing out ends it in every API process; each request looks the key up
again, so revoking a key ends its sessions at once. The secret is QA_SESSION_SECRET, or made per
process at start when a single process serves (sessions then end when it restarts).

Every form that posts carries a token the server can check without storing it: on the pages of a
session, an HMAC of the session id; on the sign-in form (no session yet), an HMAC of a random value
the browser holds in a second cookie. A form posted from another site, from a sandboxed frame
(`Origin: null`) or without its token is refused.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from qa_service.errors import ConfigError
from qa_service.settings import MAKE_SECRET, Settings

COOKIE_NAME = "qa_session"
MAX_AGE_S = 12 * 3600
# The sign-in form's own cookie: a random value its token is bound to.
SIGN_IN_COOKIE = "qa_sign_in"
SIGN_IN_MAX_AGE_S = 2 * 3600
FORM_FIELD = "csrf"


@dataclass(frozen=True)
class Session:
    """What a valid session token says: which key, which session, until when."""

    id: str
    key_hash: str
    expires: int


def app_secret(settings: Settings) -> bytes:
    """The secret that signs sessions: QA_SESSION_SECRET, or random bytes when one process serves."""
    if settings.session_secret:
        return settings.session_secret.encode()
    if settings.web_concurrency > 1:
        # Each process would make its own and refuse the others' cookies: every other page load
        # would go back to the sign-in form.
        raise ConfigError(f"{settings.web_concurrency} API processes serve (WEB_CONCURRENCY or "
                          f"serve --workers): set QA_SESSION_SECRET, the same in each, so they accept "
                          f"each other's sessions (make one with: {MAKE_SECRET})")
    return secrets.token_bytes(32)


def session_secret(state: Any) -> bytes:
    """The app's signing secret, set on its state at start-up (`create_app`)."""
    return state.session_secret  # type: ignore[no-any-return]


def new_session_id() -> str:
    """A fresh random session id."""
    return secrets.token_urlsafe(32)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, body: str) -> str:
    return _b64(hmac.new(secret, body.encode(), hashlib.sha256).digest())


def make_token(secret: bytes, key_hash: str, session_id: str, *, now: float | None = None,
               max_age_s: int = MAX_AGE_S) -> str:
    """A signed token for this session of the API key with this hash, valid for `max_age_s` seconds."""
    issued = int(now if now is not None else time.time())
    payload = {"k": key_hash, "s": session_id, "exp": issued + max_age_s}
    body = _b64(json.dumps(payload, separators=(",", ":")).encode())
    return f"{body}.{_mac(secret, body)}"


def read_session(secret: bytes, token: str | None, *, now: float | None = None) -> Session | None:
    """The session a token names, or None when it is missing, forged, malformed or expired."""
    if not token or not token.isascii() or token.count(".") != 1:
        return None
    body, mac = token.split(".")
    if not hmac.compare_digest(mac, _mac(secret, body)):
        return None
    try:
        payload = json.loads(_unb64(body))
    except (ValueError, binascii.Error):
        return None
    if not isinstance(payload, dict):
        return None
    key_hash, session_id, expires = payload.get("k"), payload.get("s"), payload.get("exp")
    if not (isinstance(key_hash, str) and isinstance(session_id, str) and isinstance(expires, int)):
        return None
    if expires <= (now if now is not None else time.time()):
        return None
    return Session(id=session_id, key_hash=key_hash, expires=expires)


def read_token(secret: bytes, token: str | None, *, now: float | None = None) -> str | None:
    """The key hash a token names, or None when it is missing, forged, malformed or expired."""
    session = read_session(secret, token, now=now)
    return session.key_hash if session is not None else None


def form_token(secret: bytes, session_id: str) -> str:
    """The token the forms of a session's pages carry."""
    return _mac(secret, f"form:{session_id}")


def sign_in_token(secret: bytes, nonce: str) -> str:
    """The token the sign-in form carries, bound to the random value in its cookie."""
    return _mac(secret, f"sign-in:{nonce}")


def token_matches(expected: str, sent: object) -> bool:
    """Whether a posted form token is the expected one (compared in constant time)."""
    return isinstance(sent, str) and sent.isascii() and hmac.compare_digest(expected, sent)


def cross_site(headers: Mapping[str, str], netloc: str) -> bool:
    """Whether a form post came from another site, as the browser tells: its Origin or Sec-Fetch-Site."""
    # A sibling site (same-site) and a sandboxed frame (Origin: null) are other sites too.
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return True
    origin = headers.get("origin")
    if origin is None:
        return False  # older browsers and scripts: the form token decides
    return origin == "null" or urlsplit(origin).netloc != netloc
