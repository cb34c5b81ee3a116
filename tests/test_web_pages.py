"""The staff pages without a browser: the review queue, search, the call's version history and
dismissed items, upload and keys (their looks are in tests/test_browser_pages.py)."""

from __future__ import annotations

import re

import pytest

from qa_service.auth import issue_key
from qa_service.storage.repository import Scope
from tests.test_web import Site, form_token, sign_in


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("pages"))
    yield s
    s.repo.dispose()


@pytest.fixture(scope="module")
def web(site):
    return site.client("qa")


def linked_calls(html: str) -> list[str]:
    return re.findall(r'class="call-link" href="/calls/([0-9a-f-]{36})"', html)


# -- review queue ----------------------------------------------------------------------------------

def test_review_queue_lists_external_ids_why_and_oldest_first(site, web):
    r = web.get("/review-queue")
    assert r.status_code == 200 and "<h1>Review queue</h1>" in r.text
    ids = site.ids
    listed = linked_calls(r.text)
    # a2 auto-fails, a3 and a4 quote outdated policy, b2 has an item to check; oldest call first.
    assert {ids["a2"], ids["a3"], ids["a4"]} <= set(listed)
    days = re.findall(r"<td>(2026-\d\d-\d\d)</td>", r.text)
    assert days == sorted(days) and len(days) == len(listed)
    assert f'href="/calls/{ids["a2"]}">ext-a2</a>' in r.text
    assert 'data-why="auto_fail"' in r.text and 'data-why="outdated_policy"' in r.text


def test_review_queue_filters(site, web):
    ids = site.ids
    outdated = linked_calls(web.get("/review-queue?why=outdated_policy").text)
    assert set(outdated) == {ids["a3"], ids["a4"]}
    assert linked_calls(web.get("/review-queue?agent_id=agent-b&why=outdated_policy").text) == []
    assert linked_calls(web.get("/review-queue?from=2026-11-11&to=2026-11-30&why=outdated_policy").text) == \
        [ids["a4"]]
    bad = web.get("/review-queue?why=bogus&from=yesterday")
    assert bad.status_code == 200 and "unknown reason" in bad.text and "must be a date" in bad.text


def next_link(html: str) -> str | None:
    found = re.search(r'<a href="([^"]+)" rel="next">', html)
    return found.group(1).replace("&amp;", "&") if found else None


def test_review_queue_pages_link_to_the_next_with_the_filters(site, web, monkeypatch):
    from qa_service.web import queue

    whole = linked_calls(web.get("/review-queue").text)
    monkeypatch.setattr(queue, "PAGE_SIZE", 2)
    seen, page = [], web.get("/review-queue")
    while (link := next_link(page.text)) is not None:
        assert "Next page" in page.text and "cursor=" in link
        seen += linked_calls(page.text)
        page = web.get("/review-queue" + link)
    seen += linked_calls(page.text)
    assert len(whole) > 2 and seen == whole
    monkeypatch.setattr(queue, "PAGE_SIZE", 1)
    first = web.get("/review-queue?why=outdated_policy")
    link = next_link(first.text)
    assert link is not None and "why=outdated_policy" in link
    assert linked_calls(first.text) + linked_calls(web.get("/review-queue" + link).text) == \
        [site.ids["a3"], site.ids["a4"]]
    # A cursor the queue did not give (here: the calls listing's) is reported over the first page.
    from datetime import UTC, date, datetime

    from qa_service.storage.views import encode_cursor

    calls_cursor = encode_cursor(date(2026, 11, 2), datetime.now(UTC), site.ids["a1"])
    for cursor in ("garbled", calls_cursor):
        bad = web.get("/review-queue", params={"cursor": cursor, "why": "outdated_policy"})
        assert bad.status_code == 200 and "not one this listing gave" in bad.text
        assert linked_calls(bad.text) == [site.ids["a3"]]


def test_review_queue_refuses_agents_keys(site):
    stored, key = issue_key(site.repo, "agent", "agent a", Scope(agent="agent-a"))
    client = site.client(None)
    assert sign_in(client, key).status_code == 303
    for page in ("/review-queue", "/search?q=fee"):
        r = client.get(page)
        assert r.status_code == 403 and "ext-a2" not in r.text


def test_a_scoped_key_queues_and_finds_only_its_teams_calls(site):
    from datetime import date

    from qa_service.services import teams
    from qa_service.storage.repository import Membership

    teams.put_memberships(store=site.repo, items=[
        Membership(agent_id="agent-b", team="bravo", vendor="two", since=date(2026, 1, 1))])
    _, key = issue_key(site.repo, "supervisor", "bravo lead", Scope(teams=("bravo",)))
    client = site.client(None)
    assert sign_in(client, key).status_code == 303
    queued = client.get("/review-queue").text
    assert site.ids["a2"] not in queued and "agent-a" not in queued
    found = client.get("/search?q=fee").text
    assert site.ids["b2"] in found and site.ids["a2"] not in found
    assert "No call has the external id" in client.get("/search?q=ext-a2").text


# -- search ----------------------------------------------------------------------------------------

def test_search_by_external_id_and_by_words(site, web):
    r = web.get("/search?q=ext-a3")
    assert r.status_code == 200 and f'href="/calls/{site.ids["a3"]}">ext-a3</a>' in r.text
    go = web.get("/search?q=ext-a3&go=1", follow_redirects=False)
    assert go.status_code == 303 and go.headers["location"] == f"/calls/{site.ids['a3']}"
    words = web.get("/search?q=guarantee+permit")
    assert "<mark>guarantee</mark>" in words.text and "<mark>permit</mark>" in words.text
    assert set(linked_calls(words.text)) == {site.ids[k] for k in ("a1", "a2", "a3", "a4", "b1", "b2")}
    assert "No transcript holds all of these words" in web.get("/search?q=zebra").text
    assert "at most 200 characters" in web.get("/search?q=" + "x" * 201).text


def test_search_shows_only_redacted_text_escaped(site, web):
    from tests.test_views import RAW_NAME

    r = web.get("/search?q=person")
    assert "&lt;<mark>PERSON</mark>&gt;" in r.text or "<mark>PERSON</mark>" in r.text
    assert RAW_NAME not in r.text
    # The raw input names the customer; the index holds the redacted transcript only.
    raw = web.get("/search", params={"q": RAW_NAME}).text
    assert "No transcript holds all of these words" in raw and linked_calls(raw) == []


def test_search_api(site):
    from fastapi.testclient import TestClient

    client = TestClient(site.app)
    h = {"Authorization": f"Bearer {site.keys['supervisor']}"}
    body = client.get("/v1/search", params={"q": "ext-b1"}, headers=h).json()
    exact = body["by_external_id"]
    assert exact["call_id"] == site.ids["b1"] and exact["external_id"] == "ext-b1"
    words = client.get("/v1/search", params={"q": "twelve weeks", "page_size": 2}, headers=h).json()
    assert words["count"] == 2 and words["more"] is True and words["page_size"] == 2
    assert all("twelve weeks" in c["snippet"] and "\x02" not in c["snippet"] for c in words["calls"])
    # The pages after it hold the other calls, once each, and no match by external id.
    seen, params = [c["call_id"] for c in words["calls"]], {"q": "twelve weeks", "page_size": 2}
    while words["next_cursor"] is not None:
        words = client.get("/v1/search", params={**params, "cursor": words["next_cursor"]}, headers=h).json()
        assert words["by_external_id"] is None and words["more"] == (words["next_cursor"] is not None)
        seen += [c["call_id"] for c in words["calls"]]
    whole = client.get("/v1/search", params={"q": "twelve weeks"}, headers=h).json()
    assert len(seen) > 2 and seen == [c["call_id"] for c in whole["calls"]] and whole["next_cursor"] is None
    limited = client.get("/v1/search", params={"q": "fee", "limit": 2}, headers=h)
    assert limited.status_code == 422 and "page_size" in limited.text
    from qa_service.storage.paging import encode

    queue_cursor = encode("review-queue", ("2026-11-02", "2026-11-02T00:00:00+00:00", site.ids["a1"]))
    refused = client.get("/v1/search", params={"q": "fee", "cursor": queue_cursor}, headers=h)
    assert refused.status_code == 422 and "not one this listing gave" in refused.text
    assert client.get("/v1/search", params={"q": ""}, headers=h).status_code == 422
    assert client.get("/v1/search", params={"q": "fee"},
                      headers={"Authorization": f"Bearer {site.keys['telephony']}"}).status_code == 403


def test_search_pages_link_to_the_next(site, web, monkeypatch):
    from qa_service.web import search

    whole = linked_calls(web.get("/search?q=guarantee").text)
    monkeypatch.setattr(search, "PAGE_SIZE", 2)
    seen, page = [], web.get("/search?q=guarantee")
    while (link := next_link(page.text)) is not None:
        assert "Next page" in page.text and "q=guarantee" in link and "cursor=" in link
        seen += linked_calls(page.text)
        page = web.get("/search" + link)
        assert 'id="by-external-id"' not in page.text  # matched on the first page only
    seen += linked_calls(page.text)
    assert len(whole) > 2 and seen == whole
    bad = web.get("/search", params={"q": "guarantee", "cursor": "garbled"})
    assert bad.status_code == 200 and "not one this listing gave" in bad.text
    assert linked_calls(bad.text) == whole[:2]


def test_pages_carry_their_form_token(site, web):
    assert form_token(web.get("/search").text)


# -- the call page: versions and dismissed items ------------------------------------------------------

def _new_call(site, external_id: str, seed_index: int) -> str:
    import uuid
    from datetime import date

    from qa_service.storage.repository import NewCall
    from tests.test_views import SEED, make_scorecard

    call_id = str(uuid.uuid4())
    site.repo.add_call(NewCall(id=call_id, external_id=external_id, agent_id="agent-c",
                               call_date=date(2026, 10, 1), rubric_id="intake", rubric_version="1",
                               policy_pack_id="fees", policy_pack_version="2026-10", input_kind="transcript"))
    site.repo.start_call(call_id)
    site.repo.finish_call(call_id, make_scorecard(SEED[seed_index], external_id))
    return call_id


def test_call_page_lists_earlier_versions_and_why(site, web):
    call_id = _new_call(site, "ext-hist", 5)  # 30, FAIL under rubric intake 1
    first = site.repo.get_scorecard(call_id).data
    site.repo.add_scorecard_versions([(call_id, {
        **first, "score": 87.5, "passed": True,
        "rubric": {**first["rubric"], "version": "2026.10", "sha256": "x"},
        "rescored_from": {"rubric": first["rubric"], "score": 30.0, "passed": False}})])
    page = web.get(f"/calls/{call_id}").text
    assert 'id="history"' in page
    assert "was <strong>30 FAIL under rubric intake 1</strong>" in page
    assert "is <strong>87.5 PASS under rubric intake 2026.10</strong>" in page
    assert "first scoring" in page and "rescored under rubric intake 2026.10" in page
    # A call scored once shows no history section.
    assert 'id="history"' not in web.get(f"/calls/{site.ids['a1']}").text


def test_a_dismissed_violation_shows_as_dismissed_and_does_not_count(site, web):
    call_id = _new_call(site, "ext-dismiss", 1)  # 70, auto-fail for "guarantee"
    before = web.get(f"/calls/{call_id}").text
    assert 'id="violation-count" class="badge viol">1<' in before and "data-dismissed" not in before
    assert 'data-score="70"' in before
    r = web.post(f"/calls/{call_id}/reviews", data={
        "csrf": form_token(before), "target": "violation", "id": "guarantee", "action": "dismiss",
        "reason": "the agent was quoting the customer"}, follow_redirects=False)
    assert r.status_code == 303
    after = web.get(f"/calls/{call_id}").text
    assert 'data-dismissed="guarantee"' in after and "dismissed · not counted" in after
    assert 'id="violation-count"' not in after and "1 dismissed, not counted" in after
    assert 'id="reviewed-verdict">after review · automatic: 70' in after
    assert re.search(r'class="verdict-box pass" id="shown-verdict"', after), "auto-fail given back: it passes"


# -- keys ------------------------------------------------------------------------------------------

def test_keys_page_makes_shows_once_and_revokes(site):
    admin = site.client("admin")
    page = admin.get("/keys")
    assert page.status_code == 200 and "<h1>API keys</h1>" in page.text and "qa person" in page.text
    assert page.headers["cache-control"] == "no-store"
    made = admin.post("/keys", data={"csrf": form_token(page.text), "role": "supervisor",
                                     "name": "Night lead", "teams": "bravo, alpha", "vendors": "",
                                     "agent_id": ""})
    assert made.status_code == 201 and "shown this once" in made.text
    secret = re.search(r'id="secret" class="secret" readonly value="([^"]+)"', made.text).group(1)
    new = next(k for k in site.repo.list_keys() if k.name == "Night lead")
    assert new.role == "supervisor" and new.scope == Scope(teams=("bravo", "alpha"))
    # The new key signs in; the list shows it without its secret.
    assert sign_in(site.client(None), secret).status_code == 303
    listing = admin.get("/keys").text
    assert "Night lead" in listing and secret not in listing and "teams bravo, alpha" in listing
    r = admin.post(f"/keys/{new.id}/revoke", data={"csrf": form_token(listing)}, follow_redirects=False)
    assert r.status_code == 303
    assert next(k for k in site.repo.list_keys() if k.id == new.id).revoked
    assert sign_in(site.client(None), secret).status_code == 401


def test_keys_page_explains_a_bad_key_and_refuses_other_roles(site):
    admin = site.client("admin")
    token = form_token(admin.get("/keys").text)
    bad = admin.post("/keys", data={"csrf": token, "role": "telephony", "name": "pbx", "teams": "alpha"})
    assert bad.status_code == 422 and "telephony keys cannot be scoped" in bad.text
    assert 'value="pbx"' in bad.text  # what was typed stays in the form
    assert admin.post("/keys", data={"csrf": "forged", "role": "qa", "name": "x"}).status_code == 403
    for role in ("qa", "supervisor"):
        client = site.client(role)
        assert client.get("/keys").status_code == 403
        token = form_token(client.get("/search").text)
        assert client.post("/keys", data={"csrf": token, "role": "admin", "name": "me"}).status_code == 403
    assert not any(k.name == "me" for k in site.repo.list_keys())


# -- upload ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def queued_site(tmp_path_factory, redis_url):
    s = Site(tmp_path_factory.mktemp("upload"), redis_url=redis_url)
    yield s
    s.repo.dispose()


TRANSCRIPT = (b"Agent: Thanks for calling Harbourline, this call is recorded.\n"
              b"Customer: Hi, I need a permit.\n")
JSON = {"Accept": "application/json"}
FIELDS = {"agent_id": "agent-u", "call_date": "2026-11-02", "rubric_id": "intake", "policy_pack_id": "fees",
          "channels": "auto"}


def test_upload_one_call_through_the_form(queued_site):
    site = queued_site
    qa = site.client("qa")
    page = qa.get("/upload")
    assert page.status_code == 200 and "Nothing uploaded with this key yet" in page.text
    assert '<label for="files">Files' in page.text and 'src="/static/upload.js"' in page.text
    r = qa.post("/upload", data={**FIELDS, "call_id": "CRM-1", "csrf": form_token(page.text)},
                files=[("files", ("first.txt", TRANSCRIPT, "text/plain"))])
    assert r.status_code == 200 and "first.txt" in r.text
    call = site.repo.find_call("CRM-1")
    assert call is not None and call.status == "queued" and call.input_kind == "transcript"
    qa_key = next(k for k in site.repo.list_keys() if k.name == "qa person")
    assert call.submitted_by_key_id == qa_key.id and call.agent_id == "agent-u"
    # The list is the server's: a reload shows it, and the page polls the same list as JSON.
    assert f'data-call="{call.id}" data-status="queued"' in qa.get("/upload").text
    recent = qa.get("/upload/recent").json()
    assert recent[0]["call_id"] == call.id and recent[0]["external_id"] == "CRM-1"
    # Sending it again stores nothing new.
    again = qa.post("/upload", data={**FIELDS, "call_id": "CRM-1", "csrf": form_token(page.text)},
                    files=[("files", ("first.txt", TRANSCRIPT, "text/plain"))], headers=JSON)
    assert again.status_code == 200 and again.json()["again"] is True
    assert len(qa.get("/upload/recent").json()) == 1


def test_upload_many_files_named_by_their_file_names(queued_site):
    site = queued_site
    qa = site.client("qa")
    token = form_token(qa.get("/upload").text)
    files = [("files", (f"CRM-{n}.txt", TRANSCRIPT, "text/plain")) for n in (10, 11, 12)]
    r = qa.post("/upload", data={**FIELDS, "ids_from_names": "1", "csrf": token}, files=files,
                headers={"Accept": "application/json"})
    assert r.status_code == 200
    assert [x["call"]["external_id"] for x in r.json()["results"]] == ["CRM-10", "CRM-11", "CRM-12"]
    # The page's script sends one file per request and reads its answer.
    one = qa.post("/upload", data={**FIELDS, "ids_from_names": "1", "csrf": token},
                  files=[("files", ("CRM-13.json", b'[{"speaker": "agent", "text": "Hello"}]', "text/json"))],
                  headers=JSON)
    assert one.status_code == 202 and one.json()["call"]["status"] == "queued"
    bad = qa.post("/upload", data={**FIELDS, "ids_from_names": "1", "csrf": token},
                  files=[("files", ("not a name!.txt", TRANSCRIPT, "text/plain")),
                         ("files", ("junk.txt", b"\x00\x01 no speakers here", "text/plain"))])
    assert bad.status_code == 422 and "its name cannot be a call id" in bad.text and "not stored" in bad.text


def test_upload_explains_bad_fields_and_stores_nothing(queued_site):
    site = queued_site
    qa = site.client("qa")
    token = form_token(qa.get("/upload").text)
    before = len(site.repo.uploads.recent(next(k.id for k in site.repo.list_keys() if k.name == "qa person")))
    wrong = {**FIELDS, "agent_id": "", "call_date": "soon", "call_id": "a b", "csrf": token}
    r = qa.post("/upload", data=wrong, files=[("files", ("x.txt", TRANSCRIPT, "text/plain"))])
    assert r.status_code == 422
    for problem in ("agent id:", "call date:", "call id:"):
        assert problem in r.text
    unknown = qa.post("/upload", data={**FIELDS, "rubric_id": "nope", "csrf": token},
                      files=[("files", ("x.txt", TRANSCRIPT, "text/plain"))], headers=JSON)
    assert unknown.status_code == 422 and "nope" in unknown.json()["error"]
    assert len(site.repo.uploads.recent(next(k.id for k in site.repo.list_keys() if k.name == "qa person"))) \
        == before


def test_upload_is_for_qa_and_admin_keys_with_their_form_token(queued_site):
    site = queued_site
    supervisor = site.client("supervisor")
    assert supervisor.get("/upload").status_code == 403
    assert supervisor.get("/upload/recent").status_code == 403
    token = form_token(supervisor.get("/search").text)
    r = supervisor.post("/upload", data={**FIELDS, "csrf": token}, files=[("files", ("x.txt", TRANSCRIPT))])
    assert r.status_code == 403
    qa = site.client("qa")
    forged = qa.post("/upload", data={**FIELDS, "csrf": "forged"}, files=[("files", ("x.txt", TRANSCRIPT))])
    assert forged.status_code == 403
    assert site.client(None).get("/upload/recent").status_code == 401
    assert site.client("admin").get("/upload").status_code == 200


def test_the_upload_page_checks_ids_as_the_api_does():
    from qa_service.api.schemas import ID_PATTERN
    from qa_service.web import upload

    assert upload.ID_PATTERN == ID_PATTERN
