"""API keys: random bearer tokens, stored only as sha256 hashes, each with one role.

Roles: admin (everything), qa (upload calls and rules, read scorecards), supervisor (read calls,
scorecards and agent aggregates), telephony (submit calls and read their status, not scorecards).

Each process remembers a verified key for KEY_CACHE_TTL_S seconds, so a request does not wait on a
database round trip just to check its key. A key revoked through the same repository (same process)
stops working at once; one revoked elsewhere (the command line, another API worker) stops working
in every process within KEY_CACHE_TTL_S. A new key works at once: unknown keys are never remembered.
"""

from __future__ import annotations

import hashlib
import secrets

from qa_service.errors import AuthError, Forbidden
from qa_service.storage.repository import ROLES, Repository, StoredKey

KEY_PREFIX = "qak_"
# How stale a remembered key may be: the longest a revocation made in another process can take to apply.
KEY_CACHE_TTL_S = 30.0


def hash_key(key: str) -> str:
    """The sha256 hex digest stored in place of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def create_key(repo: Repository, role: str, name: str) -> str:
    """Make a new key with this role, store its hash, and return the key (shown once, never stored)."""
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not name.strip():
        raise ValueError("a key needs a name saying who or what uses it")
    # The prefix lets secret scanners and people recognise a leaked key.
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    repo.add_key(name.strip(), role, hash_key(key))
    return key


def verify_key(repo: Repository, key: str | None, *, max_age_s: float = KEY_CACHE_TTL_S) -> StoredKey:
    """The stored key for a presented bearer token; AuthError when missing, unknown or revoked."""
    if not key:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    stored = repo.key_by_hash(hash_key(key), max_age_s=max_age_s)
    # The lookup is by hash of a high-entropy token, so timing reveals nothing useful.
    if stored is None or stored.revoked:
        raise AuthError("invalid or revoked API key")
    return stored


def require_role(key: StoredKey, allowed: tuple[str, ...]) -> StoredKey:
    """Pass the key through when its role is allowed (admin always is); Forbidden otherwise."""
    if key.role != "admin" and key.role not in allowed:
        raise Forbidden(f"role {key.role!r} may not do this; needs one of: {', '.join(('admin', *allowed))}")
    return key
