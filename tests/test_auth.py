"""API keys: created random, stored hashed, verified, revoked, checked against roles."""

from __future__ import annotations

import time

import pytest

from qa_service.auth import create_key, hash_key, require_role, verify_key
from qa_service.errors import AuthError, Forbidden
from qa_service.storage import open_repository


@pytest.fixture
def repo(sqlite_url):
    r = open_repository(sqlite_url)
    yield r
    r.dispose()


def test_key_is_stored_only_as_hash(repo):
    key = create_key(repo, "qa", "qa team laptop")
    assert key.startswith("qak_") and len(key) > 40
    [stored] = repo.list_keys()
    assert stored.key_hash == hash_key(key) and key not in stored.key_hash
    assert (stored.role, stored.name) == ("qa", "qa team laptop")
    assert verify_key(repo, key).id == stored.id


def test_keys_differ(repo):
    assert create_key(repo, "qa", "a") != create_key(repo, "qa", "b")


@pytest.mark.parametrize("presented", [None, "", "qak_not-a-real-key"])
def test_missing_or_unknown_key_is_rejected(repo, presented):
    create_key(repo, "admin", "root")
    with pytest.raises(AuthError):
        verify_key(repo, presented)


def test_revoked_key_is_rejected(repo):
    key = create_key(repo, "telephony", "pbx")
    repo.revoke_key(verify_key(repo, key).id)
    with pytest.raises(AuthError, match="revoked"):
        verify_key(repo, key)


@pytest.mark.parametrize(("role", "name"), [("root", "x"), ("qa", "  ")])
def test_bad_role_or_name(repo, role, name):
    with pytest.raises(ValueError):
        create_key(repo, role, name)


@pytest.mark.parametrize(("role", "allowed", "ok"), [
    ("admin", ("qa",), True),
    ("qa", ("qa", "supervisor"), True),
    ("supervisor", ("qa", "supervisor"), True),
    ("telephony", ("qa", "supervisor"), False),
    ("supervisor", ("qa",), False),
])
def test_roles(repo, role, allowed, ok):
    stored = verify_key(repo, create_key(repo, role, "k"))
    if ok:
        assert require_role(stored, allowed) is stored
    else:
        with pytest.raises(Forbidden):
            require_role(stored, allowed)


def test_a_key_revoked_elsewhere_stops_working_within_the_cache_ttl(sqlite_url):
    # Two repositories on one database stand for two processes (an API worker and the command line).
    api, cli = open_repository(sqlite_url), open_repository(sqlite_url)
    key = create_key(cli, "qa", "laptop")
    stored = verify_key(api, key, max_age_s=0.5)
    cli.revoke_key(stored.id)
    # Remembered: still accepted for a while by the process that did not revoke it...
    assert verify_key(api, key, max_age_s=0.5).id == stored.id
    # ...but never beyond the TTL,
    time.sleep(0.6)
    with pytest.raises(AuthError, match="revoked"):
        verify_key(api, key, max_age_s=0.5)
    # and without a TTL the database is asked every time.
    other = create_key(cli, "qa", "desk")
    verify_key(api, other, max_age_s=0)
    cli.revoke_key(verify_key(cli, other).id)
    with pytest.raises(AuthError):
        verify_key(api, other, max_age_s=0)
    api.dispose()
    cli.dispose()


def test_revoking_in_the_same_process_applies_at_once_despite_the_cache(repo):
    key = create_key(repo, "qa", "pbx")
    stored = verify_key(repo, key, max_age_s=3600)
    assert verify_key(repo, key, max_age_s=3600) == stored
    repo.revoke_key(stored.id)
    with pytest.raises(AuthError, match="revoked"):
        verify_key(repo, key, max_age_s=3600)


def test_an_unknown_key_is_not_remembered(sqlite_url):
    # A key made by another process works at once, even right after it was refused.
    api, cli = open_repository(sqlite_url), open_repository(sqlite_url)
    key = "qak_" + "x" * 43
    with pytest.raises(AuthError):
        verify_key(api, key, max_age_s=3600)
    stored = cli.add_key("made elsewhere", "supervisor", hash_key(key))
    assert verify_key(api, key, max_age_s=3600).id == stored.id
    api.dispose()
    cli.dispose()
