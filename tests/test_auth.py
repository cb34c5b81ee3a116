"""API keys: created random, stored hashed, verified, revoked, checked against roles."""

from __future__ import annotations

import time
import uuid

import pytest

from qa_service.auth import (
    create_key,
    find_key,
    hash_key,
    issue_key,
    require_role,
    revoke_key,
    shown_key,
    verify_key,
)
from qa_service.errors import AuthError, Forbidden, InputError, NotFound
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


@pytest.mark.parametrize(("role", "name", "message"), [("root", "x", "unknown role 'root'; choose one of"),
                                                       ("qa", "  ", "needs a name")])
def test_bad_role_or_name(repo, role, name, message):
    # An InputError: the command line prints it, the API answers 422 with it.
    with pytest.raises(InputError, match=message):
        create_key(repo, role, name)
    assert repo.list_keys() == []


def test_a_key_keeps_its_first_characters_to_be_recognised_by(repo):
    stored, key = issue_key(repo, "supervisor", "night shift")
    assert stored.prefix == key[:12] and stored.prefix.startswith("qak_") and len(stored.prefix) == 12
    [listed] = repo.list_keys()
    assert listed.prefix == stored.prefix and listed.key_hash == hash_key(key)
    # The prefix is not the key: 35 of the key's 47 characters are nowhere but with its holder.
    assert key not in repr(listed) and len(key) - len(stored.prefix) >= 35
    with pytest.raises(AuthError):
        verify_key(repo, stored.prefix)


def test_keys_made_before_prefixes_were_kept_have_none(repo):
    old = repo.add_key("old", "qa", hash_key("qak_" + "o" * 43))
    assert old.prefix is None and find_key(repo, old.id).prefix is None


REAL = "qak_" + "A1b2C3d4" + "x" * 35


@pytest.mark.parametrize(("token", "shown"), [
    (None, "none"),
    ("", "none"),
    (REAL, "qak_A1b2C3d4"),
    # Too short to be one of ours: the start of some other secret is not shown, only its length.
    ("qak_nope", "not-a-key(8 chars)"),
    ("hunter2-correct-horse", "not-a-key(21 chars)"),
    ("x" * 60, "not-a-key(60 chars)"),
])
def test_a_presented_token_shows_at_most_a_key_prefix(token, shown):
    assert shown_key(token) == shown


def test_revoking_is_idempotent_and_unknown_ids_are_named(repo):
    stored, key = issue_key(repo, "telephony", "pbx")
    revoked, changed = revoke_key(repo, stored.id)
    assert changed and revoked.revoked and revoked.id == stored.id
    with pytest.raises(AuthError, match="revoked"):
        verify_key(repo, key, max_age_s=3600)
    again, changed = revoke_key(repo, stored.id)
    assert not changed and again.revoked
    # The id as printed without hyphens or in capitals is the same key.
    assert revoke_key(repo, uuid.UUID(stored.id).hex.upper())[0].id == stored.id
    for unknown in (str(uuid.uuid4()), "no-such-key", ""):
        with pytest.raises(NotFound, match="no API key with id"):
            revoke_key(repo, unknown)
    assert [k.revoked for k in repo.list_keys()] == [True]


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
