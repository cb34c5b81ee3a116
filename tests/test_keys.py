"""API keys from the admin routes: list, create (shown once), revoke (at once), each audited; and the
key storage those routes rely on, on SQLite and PostgreSQL."""

from __future__ import annotations

import html
import re
import uuid

import pytest
from fastapi.testclient import TestClient

from qa_service.auth import hash_key, issue_key
from qa_service.errors import NotFound
from qa_service.storage import open_repository
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, encode
from qa_service.storage.repository import Scope
from tests.test_api import Api
from tests.test_paging import walk
from tests.test_web import form_token, sign_in


@pytest.fixture
def api(make_settings, redis_url, redis_conn):
    return Api(make_settings(redis_url=redis_url), redis_conn)


@pytest.mark.parametrize("role", ["qa", "supervisor", "telephony"])
def test_only_admins_manage_keys(api, role):
    some = api.repo.list_keys()[0].id
    for method, path, body in (("GET", "/v1/keys", None), ("GET", f"/v1/keys/{some}", None),
                               ("POST", "/v1/keys", {"role": "qa", "name": "x"}),
                               ("POST", f"/v1/keys/{some}/revoke", None)):
        r = api.client.request(method, path, json=body, headers=api.h(role))
        assert r.status_code == 403, (method, path)
        assert "admin" in r.json()["detail"]
    assert api.client.get("/v1/keys").status_code == 401
    assert len(api.repo.list_keys()) == 4 and not any(k.revoked for k in api.repo.list_keys())


def test_create_list_and_revoke_through_the_api(api):
    r = api.client.post("/v1/keys", json={"role": "supervisor", "name": "night shift"},
                        headers=api.h("admin"))
    assert r.status_code == 201, r.text
    made = r.json()
    key = made["key"]
    assert key.startswith("qak_") and made["prefix"] == key[:12] and made["role"] == "supervisor"
    assert r.headers["location"] == f"/v1/keys/{made['id']}" and r.headers["cache-control"] == "no-store"
    new = {"Authorization": f"Bearer {key}"}
    assert api.client.get("/v1/agents", headers=new).status_code == 200  # works at once

    answer = api.client.get("/v1/keys", headers=api.h("admin")).json()
    assert (answer["page_size"], answer["next_cursor"]) == (DEFAULT_PAGE_SIZE, None)
    listed = answer["keys"]
    # Newest first: the key just made heads the first page.
    assert [k["name"] for k in listed] == ["night shift", "supervisor key", "telephony key", "qa key",
                                           "admin key"]
    # The key is shown once: never in a listing, nor its hash.
    assert key not in repr(answer) and hash_key(key) not in repr(answer)
    assert set(listed[0]) == {"id", "name", "role", "prefix", "created_at", "revoked", "teams",
                              "vendors", "agent_id"}
    assert api.client.get(f"/v1/keys/{made['id']}", headers=api.h("admin")).json() == listed[0]

    # Warm the key's cache entry, then revoke it: it stops at once in this process all the same.
    assert api.client.get("/v1/agents", headers=new).status_code == 200
    r = api.client.post(f"/v1/keys/{made['id']}/revoke", headers=api.h("admin"))
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert api.client.get("/v1/agents", headers=new).status_code == 401
    # Revoking again changes nothing; an id in another form names the same key.
    again = api.client.post(f"/v1/keys/{uuid.UUID(made['id']).hex}/revoke", headers=api.h("admin"))
    assert again.status_code == 200 and again.json() == r.json()


def test_bad_key_requests_say_what_to_fix(api):
    admin = api.h("admin")
    for body, field in (({"role": "root", "name": "x"}, "role"), ({"role": "qa"}, "name"),
                        ({"role": "qa", "name": ""}, "name"),
                        ({"role": "qa", "name": "x", "key": "mine"}, "key")):
        r = api.client.post("/v1/keys", json=body, headers=admin)
        assert r.status_code == 422, body
        assert field in r.json()["detail"], r.json()
    r = api.client.post("/v1/keys", json={"role": "qa", "name": "   "}, headers=admin)
    assert r.status_code == 422 and "needs a name" in r.json()["detail"]
    for key_id in (str(uuid.uuid4()), "nope"):
        r = api.client.post(f"/v1/keys/{key_id}/revoke", headers=admin)
        assert r.status_code == 404 and "no API key with id" in r.json()["detail"]
        assert api.client.get(f"/v1/keys/{key_id}", headers=admin).status_code == 404
    assert len(api.repo.list_keys()) == 4 and not any(k.revoked for k in api.repo.list_keys())


def test_key_routes_are_audited(api):
    admin_key = next(k for k in api.repo.list_keys() if k.role == "admin")
    made = api.client.post("/v1/keys", json={"role": "qa", "name": "laptop"}, headers=api.h("admin")).json()
    api.client.get("/v1/keys", headers=api.h("admin"))
    api.client.post(f"/v1/keys/{made['id']}/revoke", headers=api.h("admin"))
    api.client.get("/v1/keys", headers=api.h("supervisor"))
    rows = api.repo.audit.entries(target_id=made["id"])
    assert [(e.action, e.key_id, e.target_kind, e.details) for e in rows] == [
        ("revoke_key", admin_key.id, "key", "status=200"), ("create_key", admin_key.id, "key", "status=201")]
    assert [e.action for e in api.repo.audit.entries(action="list_keys")] == ["list_keys"]
    refused = api.repo.audit.entries(action="forbidden")
    assert [(e.key_name, e.details.split(" tried=")[1]) for e in refused] == [("supervisor key", "list_keys")]
    assert made["key"] not in repr(api.repo.audit.entries())


def test_key_storage_keeps_prefixes_and_reads_ids_in_any_form(database_url):
    repo = open_repository(database_url)
    try:
        stored, key = issue_key(repo, "qa", "desk")
        assert repo.list_keys()[0].prefix == key[:12]
        assert repo.key_by_hash(hash_key(key)).prefix == key[:12]
        as_uuid = uuid.UUID(stored.id)
        # PostgreSQL and SQLite each read a different set of these forms unless the repository does.
        for written in (as_uuid.hex, stored.id.upper(), f"{{{stored.id}}}", as_uuid.urn):
            assert repo.revoke_key(written).id == stored.id
        for bad in ("", "nope", "urn:uuid:zz"):
            with pytest.raises(NotFound):
                repo.revoke_key(bad)
    finally:
        repo.dispose()


def test_keys_are_read_a_page_at_a_time_newest_first(make_settings, redis_url, redis_conn, database_url):
    api = Api(make_settings(redis_url=redis_url, database_url=database_url), redis_conn)
    try:
        for n in range(5):
            issue_key(api.repo, "agent", f"agent {n}", Scope(agent=f"agent-{n}"))
        every = api.repo.list_keys()
        newest_first = sorted(every, key=lambda k: (k.created_at, k.id), reverse=True)
        seen = walk(lambda url, **kw: api.client.get(url, headers=api.h("admin"), **kw), "/v1/keys", "keys")
        assert [k["id"] for k in seen] == [k.id for k in newest_first] and len(every) == 9
        assert seen[0]["name"] == "agent 4" and seen[-1]["name"] == "admin key"
    finally:
        api.repo.dispose()


def test_the_keys_listing_refuses_other_cursors_and_limits(api):
    admin = api.h("admin")
    for cursor in (encode("memberships", ("agent-1", "2026-01-01")), "garbled"):
        r = api.client.get("/v1/keys", params={"cursor": cursor}, headers=admin)
        assert r.status_code == 422 and "not one this listing gave" in r.json()["detail"]
    r = api.client.get("/v1/keys?limit=2", headers=admin)
    assert r.status_code == 422 and "page_size" in r.json()["detail"]
    assert api.client.get("/v1/keys?page_size=0", headers=admin).status_code == 422


def test_the_keys_page_links_to_the_next_page_and_revokes_back_to_it(api):
    for n in range(DEFAULT_PAGE_SIZE):
        issue_key(api.repo, "agent", f"agent {n}", Scope(agent=f"agent-{n}"))
    web = TestClient(api.app, base_url="http://testserver")
    assert sign_in(web, api.keys["admin"]).status_code == 303
    first = web.get("/keys")
    shown = re.findall(r'<tr id="key-([^"]+)"', first.text)
    oldest_first = [k.id for k in sorted(api.repo.list_keys(), key=lambda k: (k.created_at, k.id))]
    assert shown == oldest_first[::-1][:DEFAULT_PAGE_SIZE] and "agent 49" in first.text
    link = re.search(r'<a href="([^"]+)" rel="next">Next page', first.text)
    assert link and 'rel="first"' not in first.text
    second = web.get("/keys" + html.unescape(link.group(1)))
    rest = re.findall(r'<tr id="key-([^"]+)"', second.text)
    assert rest == oldest_first[:4][::-1] and not set(rest) & set(shown)
    assert 'rel="next"' not in second.text and 'rel="first"' in second.text
    # Revoking a key of the second page comes back to the second page.
    cursor = html.unescape(link.group(1)).split("cursor=")[1]
    r = web.post(f"/keys/{rest[0]}/revoke", data={"csrf": form_token(second.text), "cursor": cursor},
                 follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/keys?cursor={cursor}#key-{rest[0]}"
    # A cursor of another listing: said on the page, which shows the first page.
    other = web.get("/keys", params={"cursor": encode("memberships", ("a", "2026-01-01"))})
    assert other.status_code == 200 and "not one this listing gave" in other.text
    assert re.findall(r'<tr id="key-([^"]+)"', other.text) == shown
