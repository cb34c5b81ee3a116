"""API keys: random bearer tokens, stored only as sha256 hashes, each with one role.

Roles: admin (everything), qa (upload calls and rules, read scorecards), supervisor (read calls,
scorecards and agent aggregates), telephony (submit calls and read their status, not scorecards),
agent (bound to one agent id: read, acknowledge and dispute that agent's own scorecards, nothing else).

Each process remembers a verified key for KEY_CACHE_TTL_S seconds, so a request does not wait on a
database round trip just to check its key. A key revoked through the same repository (same process)
stops working at once; one revoked elsewhere (the command line, another API worker) stops working
in every process within KEY_CACHE_TTL_S. A new key works at once: unknown keys are never remembered.

Each key's first characters (`qak_` and eight more, PREFIX_CHARS) are stored beside its hash, so a
listing or an audit row can say which key someone holds without holding anything usable.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from qa_service.errors import AuthError, Forbidden, InputError, NotFound
from qa_service.storage.repository import ROLES, Repository, Scope, StoredKey, canonical_uuid

KEY_PREFIX = "qak_"
# Characters of a key's random part that are shown: 48 of its 256 bits, the rest stays secret.
PREFIX_CHARS = 8
# Shorter tokens are not keys of ours: showing their start could show most of some other secret.
MIN_SHOWN_KEY_LENGTH = 40
# How stale a remembered key may be: the longest a revocation made in another process can take to apply.
KEY_CACHE_TTL_S = 30.0


def hash_key(key: str) -> str:
    """The sha256 hex digest stored in place of a key."""
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def key_prefix(key: str) -> str:
    """The first characters of a key, kept and shown to recognise it (`qak_` and eight more)."""
    return key[:len(KEY_PREFIX) + PREFIX_CHARS]


def shown_key(token: str | None) -> str:
    """What a log or audit row may show of a presented token: a key's prefix, never a whole secret."""
    if not token:
        return "none"
    if token.startswith(KEY_PREFIX) and len(token) >= MIN_SHOWN_KEY_LENGTH:
        return key_prefix(token)
    return f"not-a-key({len(token)} chars)"


@dataclass(frozen=True)
class Presented:
    """A key presented with a request, as much of it as may be kept: its hash (to find the stored key)
    and what a log may show of it."""

    key_hash: str | None
    shown: str


def presented(token: str | None) -> Presented:
    """The hash and the showable prefix of a presented token."""
    return Presented(hash_key(token) if token else None, shown_key(token))


def issue_key(repo: Repository, role: str, name: str, scope: Scope | None = None) -> tuple[StoredKey, str]:
    """Make a new key with this role (and scope: the teams and vendors whose calls it reads) and store its
    hash: the stored record and the key (shown once)."""
    if role not in ROLES:
        raise InputError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
    if not name.strip():
        raise InputError("a key needs a name saying who or what uses it")
    # The prefix lets secret scanners and people recognise a leaked key.
    key = KEY_PREFIX + secrets.token_urlsafe(32)
    return repo.add_key(name.strip(), role, hash_key(key), key_prefix(key), scope=scope), key


def create_key(repo: Repository, role: str, name: str) -> str:
    """Make a new key with this role, store its hash, and return the key (shown once, never stored)."""
    return issue_key(repo, role, name)[1]


def find_key(repo: Repository, key_id: str) -> StoredKey:
    """The stored key with this id, revoked or not; NotFound otherwise."""
    wanted = canonical_uuid(key_id)
    for key in repo.list_keys():
        if key.id == wanted:
            return key
    raise NotFound(f"no API key with id {key_id!r}; `qa-service keys list` shows them")


def revoke_key(repo: Repository, key_id: str) -> tuple[StoredKey, bool]:
    """Revoke a key (it stops at once in this process): the key, and False when it already was revoked."""
    key = find_key(repo, key_id)
    if key.revoked:
        return key, False
    return repo.revoke_key(key.id), True


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
