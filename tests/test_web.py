"""The web pages through the ASGI app: sessions, form tokens, hosts, what each page shows, privacy,
audio, /metrics.

One SQLite database seeded through the repository serves the module (the pages only read); the
queries behind the pages are tested on both databases in test_views.py.
"""

from __future__ import annotations

import json
import re
import time
from types import SimpleNamespace

import pytest
from fastapi.testclient import TestClient

from qa_service.access.session import (
    COOKIE_NAME,
    SIGN_IN_COOKIE,
    make_token,
    read_session,
    read_token,
    session_secret,
)
from qa_service.api.metrics import collect
from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.settings import Settings
from qa_service.web import callview, charts
from tests.test_views import EVIDENCE_SEGMENT, RAW_NAME, seed_calls, silent_wav


def form_token(html: str) -> str:
    """The token a page's forms carry."""
    found = re.search(r'<input type="hidden" name="csrf" value="([^"]+)">', html)
    assert found, "the page has no form token"
    return found.group(1)


def sign_in(client: TestClient, api_key: str, **form: str):
    """Sign in as a browser does: open the sign-in form, then post it with its token."""
    token = form_token(client.get("/").text)
    return client.post("/sign-in", data={"api_key": api_key, "csrf": token, **form}, follow_redirects=False)


def sign_out(client: TestClient, page: str = "/agents", **headers: str):
    """Press the sign-out button of a page."""
    token = form_token(client.get(page).text)
    return client.post("/sign-out", data={"csrf": token}, headers=headers, follow_redirects=False)


class Site:
    def __init__(self, folder, **settings):
        settings = {"redis_url": "redis://127.0.0.1:1/0", **settings}
        self.settings = Settings(database_url=f"sqlite:///{folder / 'qa.db'}", storage_dir=folder / "storage",
                                 model_cache_dir=folder / "models", **settings)
        self.app = create_app(self.settings)
        self.repo = self.app.state.repo
        self.ids = seed_calls(self.repo, self.settings.storage_dir)
        (self.settings.storage_dir / self.ids["a2"] / "redacted.wav").write_bytes(silent_wav(2.0))
        self.keys = {r: create_key(self.repo, r, f"{r} person")
                     for r in ("admin", "qa", "telephony", "supervisor")}

    def client(self, role: str | None = "supervisor") -> TestClient:
        """A client signed in with a key of this role (None: not signed in)."""
        c = TestClient(self.app, base_url="http://testserver")
        if role is not None:
            r = sign_in(c, self.keys[role])
            assert r.status_code == 303, r.text
        return c


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("web"))
    yield s
    s.repo.dispose()


@pytest.fixture(scope="module")
def web(site):
    return site.client()


# -- signing in and out --------------------------------------------------------------------------

def test_sign_in_page_is_a_form(site):
    r = site.client(None).get("/")
    assert r.status_code == 200
    assert 'name="api_key"' in r.text and 'action="/sign-in"' in r.text
    assert "default-src 'self'" in r.headers["content-security-policy"]
    # Its token is bound to a random value in a cookie of its own.
    assert form_token(r.text)
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{SIGN_IN_COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=strict", "Path=/"):
        assert attribute in cookie


def test_sign_in_sets_a_signed_httponly_cookie(site):
    c = TestClient(site.app)
    r = sign_in(c, site.keys["supervisor"], next="/calls?verdict=fail")
    assert r.status_code == 303 and r.headers["location"] == "/calls?verdict=fail"
    [cookie] = [h for h in r.headers.get_list("set-cookie") if h.startswith(f"{COOKIE_NAME}=")]
    for attribute in ("HttpOnly", "SameSite=lax", "Path=/", "Max-Age=43200"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain http, QA_SECURE_COOKIES off
    assert site.keys["supervisor"] not in cookie  # the browser never holds the key itself
    assert c.get("/calls", follow_redirects=False).status_code == 200
    assert SIGN_IN_COOKIE not in c.cookies  # the sign-in form's cookie is cleared


def test_secure_cookies_by_setting(tmp_path):
    site = Site(tmp_path, secure_cookies=True)
    c = TestClient(site.app)
    page = c.get("/")
    assert "Secure" in page.headers["set-cookie"]
    # httpx keeps Secure cookies from plain-http pages away from them; post the form as a browser
    # on https would.
    r = c.post("/sign-in", data={"api_key": site.keys["qa"], "csrf": form_token(page.text)},
               cookies={SIGN_IN_COOKIE: page.cookies[SIGN_IN_COOKIE]}, follow_redirects=False)
    assert r.status_code == 303
    [cookie] = [h for h in r.headers.get_list("set-cookie") if h.startswith(f"{COOKIE_NAME}=")]
    assert "Secure" in cookie and "HttpOnly" in cookie
    site.repo.dispose()


@pytest.mark.parametrize(("key", "status", "message"), [
    ("qak_not-a-real-key", 401, "not valid"),
    ("", 401, "not valid"),
    ("telephony", 403, "cannot view scorecards"),
])
def test_bad_or_wrong_role_key_gets_no_session(site, key, status, message):
    c = TestClient(site.app)
    r = sign_in(c, site.keys.get(key, key))
    assert r.status_code == status
    assert message in r.text
    assert COOKIE_NAME not in r.headers.get("set-cookie", "")
    assert c.get("/agents", follow_redirects=False).status_code == 303


@pytest.mark.parametrize("target", ["//evil.example/x", "https://evil.example/", "/\\evil.example"])
def test_next_never_leaves_the_site(site, target):
    r = sign_in(TestClient(site.app), site.keys["qa"], next=target)
    assert r.headers["location"] == "/agents"


def test_sign_in_needs_its_forms_token(site):
    c = TestClient(site.app)
    page = c.get("/")
    other = TestClient(site.app)
    other_token = form_token(other.get("/").text)  # valid, but bound to another browser's cookie
    for data in ({}, {"csrf": ""}, {"csrf": "x" * 43}, {"csrf": other_token}):
        r = c.post("/sign-in", data={"api_key": site.keys["qa"], **data}, follow_redirects=False)
        assert r.status_code == 403, data
        assert "expired or came from another site" in r.text and "sign in again" in r.text
        assert COOKIE_NAME not in r.headers.get("set-cookie", "")
        assert form_token(r.text)  # the form comes back, ready to send again
    # Without its cookie the form's own token is no good either.
    without_cookie = {"api_key": site.keys["qa"], "csrf": form_token(page.text)}
    r = TestClient(site.app).post("/sign-in", data=without_cookie, follow_redirects=False)
    assert r.status_code == 403
    assert c.get("/agents", follow_redirects=False).status_code == 303
    assert sign_in(c, site.keys["qa"]).status_code == 303


@pytest.mark.parametrize("headers", [
    {"Origin": "null"},  # a sandboxed frame
    {"Origin": "https://sibling.example"},
    {"Origin": "http://testserver.evil.example"},
    {"Sec-Fetch-Site": "same-site"},  # a sibling site: another site all the same
    {"Sec-Fetch-Site": "cross-site"},
])
def test_forms_posted_from_other_sites_are_refused(site, headers):
    c = TestClient(site.app)
    token = form_token(c.get("/").text)
    r = c.post("/sign-in", data={"api_key": site.keys["qa"], "csrf": token}, headers=headers,
               follow_redirects=False)
    assert r.status_code == 403 and COOKIE_NAME not in r.headers.get("set-cookie", "")
    assert sign_in(c, site.keys["qa"]).status_code == 303
    r = sign_out(c, **headers)
    assert r.status_code == 403 and "came from another site" in r.text
    assert c.get("/agents", follow_redirects=False).status_code == 200  # still signed in
    # The same site says so, or says nothing (older browsers): the token decides.
    same = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert sign_out(c, **same).status_code == 303


@pytest.mark.parametrize("path", ["/agents", "/agents/agent-a", "/calls", "/calls/{a2}",
                                  "/agents/agent-a/scorecards.csv"])
def test_pages_send_strangers_to_sign_in(site, path):
    r = site.client(None).get(path.format(a2=site.ids["a2"]) + "?from=2026-11-01", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"].startswith("/?next=%2F")


def test_forged_tampered_and_expired_sessions_are_refused(site):
    secret = session_secret(site.app.state)
    key = [k for k in site.repo.list_keys() if k.role == "qa"][0]
    c = site.client("qa")
    good = c.cookies[COOKIE_NAME]
    session = read_session(secret, good)
    assert session is not None and read_token(secret, good) == key.key_hash
    body, mac = good.split(".")
    for token in (make_token(b"another-secret-entirely", key.key_hash, session.id), f"{body}x.{mac}", body,
                  make_token(secret, key.key_hash, session.id, now=time.time() - 13 * 3600), "a.b",
                  make_token(secret, key.key_hash, "a-session-the-server-never-started")):
        c = TestClient(site.app, cookies={COOKIE_NAME: token})
        assert c.get("/agents", follow_redirects=False).status_code == 303, token
    assert TestClient(site.app, cookies={COOKIE_NAME: good}).get("/agents").status_code == 200
    assert read_token(secret, "é.é") is None and read_token(secret, None) is None


def test_revoking_the_key_ends_its_sessions(site):
    key = create_key(site.repo, "supervisor", "leaving soon")
    c = TestClient(site.app)
    sign_in(c, key)
    assert c.get("/agents", follow_redirects=False).status_code == 200
    [stored] = [k for k in site.repo.list_keys() if k.name == "leaving soon"]
    site.repo.revoke_key(stored.id)
    assert c.get("/agents", follow_redirects=False).status_code == 303


def test_sign_out_clears_the_cookie(site):
    c = site.client("qa")
    r = sign_out(c)
    assert r.status_code == 303 and r.headers["location"] == "/"
    assert f'{COOKIE_NAME}=""' in r.headers["set-cookie"] and "Max-Age=0" in r.headers["set-cookie"]
    assert c.get("/agents", follow_redirects=False).status_code == 303


def test_sign_out_ends_the_session_on_the_server(site):
    c = site.client("qa")
    captured = c.cookies[COOKIE_NAME]
    assert sign_out(c).status_code == 303
    replay = TestClient(site.app, cookies={COOKIE_NAME: captured})
    r = replay.get("/agents", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/?next=")
    assert replay.get(f"/calls/{site.ids['a2']}/audio").status_code == 401


def test_sign_out_needs_its_token(site):
    c = site.client("qa")
    for data in ({}, {"csrf": "forged"}):
        r = c.post("/sign-out", data=data, follow_redirects=False)
        assert r.status_code == 403 and "reload the page" in r.text
    assert c.get("/agents", follow_redirects=False).status_code == 200


def test_session_pages_carry_the_sessions_form_token(site):
    qa, other = site.client("qa"), site.client("qa")
    tokens = {form_token(qa.get(page).text) for page in ("/agents", "/calls", f"/calls/{site.ids['a2']}")}
    assert len(tokens) == 1  # one token per session, on every page
    assert tokens != {form_token(other.get("/agents").text)}  # and another for another session
    review_form = re.search(r'<form method="post" action="/calls/[^"]+/reviews">.*?</form>',
                            qa.get(f"/calls/{site.ids['a2']}").text, re.S).group(0)
    assert form_token(review_form) in tokens and 'maxlength="2000"' in review_form


def test_sessions_are_kept_by_hash_and_end_on_sign_out_or_expiry(database_url):
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from qa_service.access.session import new_session_id
    from qa_service.storage import open_repository
    from qa_service.storage import tables as t

    repo = open_repository(database_url)
    create_key(repo, "qa", "one")
    create_key(repo, "qa", "two")
    one, two = (k.id for k in repo.list_keys())
    now = datetime(2026, 12, 1, 9, tzinfo=UTC)
    live, old = new_session_id(), new_session_id()
    repo.sessions.start(old, one, 60, now=now - timedelta(hours=1))
    repo.sessions.start(live, one, 3600, now=now)
    assert repo.sessions.is_live(live, one, now=now + timedelta(minutes=59))
    assert not repo.sessions.is_live(live, one, now=now + timedelta(hours=1))  # expired
    assert not repo.sessions.is_live(live, two, now=now)  # another key's
    assert not repo.sessions.is_live(old, one, now=now)
    with repo.engine.connect() as conn:
        stored = conn.execute(sa.select(t.web_sessions.c.id)).scalars().all()
    assert len(stored) == 1 and live not in stored[0]  # the expired one was cleared; no id in clear
    repo.sessions.end(live)
    repo.sessions.end(live)  # twice is no error
    assert not repo.sessions.is_live(live, one, now=now)
    repo.dispose()


def test_signing_out_in_one_process_ends_the_session_in_all(database_url, make_settings):
    # Two API processes share the database and QA_SESSION_SECRET.
    settings = make_settings(database_url=database_url, session_secret="s" * 32, web_concurrency=2,
                             redis_url="redis://127.0.0.1:1/0")
    first, second = create_app(settings), create_app(settings)
    key = create_key(first.state.repo, "supervisor", "two processes")
    on_first = TestClient(first)
    assert sign_in(on_first, key).status_code == 303
    cookie = on_first.cookies[COOKIE_NAME]
    on_second = TestClient(second, cookies={COOKIE_NAME: cookie})
    assert on_second.get("/agents", follow_redirects=False).status_code == 200
    assert sign_out(on_second).status_code == 303
    for app in (first, second):
        replay = TestClient(app, cookies={COOKIE_NAME: cookie})
        assert replay.get("/agents", follow_redirects=False).status_code == 303
    # A process with a secret of its own accepts none of the others' sessions.
    assert sign_in(on_first, key).status_code == 303
    alone = create_app(make_settings(database_url=database_url, redis_url="redis://127.0.0.1:1/0"))
    lost = TestClient(alone, cookies={COOKIE_NAME: on_first.cookies[COOKIE_NAME]})
    assert lost.get("/agents", follow_redirects=False).status_code == 303
    for app in (first, second, alone):
        app.state.repo.dispose()


# -- hosts -------------------------------------------------------------------------------------

PATHS_THAT_REDIRECT = ["/", "/agents", "/agents/", "/calls/", "/static", "/v1/calls/", "/healthz/", "/docs/"]


@pytest.mark.parametrize("path", PATHS_THAT_REDIRECT)
def test_a_foreign_host_is_refused_and_never_reflected(site, path):
    for host in ("evil.example", "evil.example:8000", "testserver.evil.example"):
        r = TestClient(site.app).get(path, headers={"Host": host}, follow_redirects=False)
        assert r.status_code == 400, (path, host)
        assert "evil.example" not in r.headers.get("location", "") and "evil.example" not in r.text
    ok = TestClient(site.app).get(path, follow_redirects=False)
    assert ok.status_code in (200, 303, 307), path


def test_probes_answer_whatever_host_they_name(site):
    # Monitors probe by address; these routes never build a URL from the Host header.
    for path in ("/healthz", "/metrics"):
        assert TestClient(site.app).get(path, headers={"Host": "10.1.2.3:8000"}).status_code in (200, 503)


def test_a_request_naming_no_host_is_answered_from_the_servers_own_address(site):
    import asyncio

    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    # HTTP/1.0 has no Host header: nothing in the request names a host, so nothing is reflected.
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.0", "method": "GET",
             "scheme": "http", "path": "/calls/", "raw_path": b"/calls/", "query_string": b"",
             "root_path": "", "headers": [], "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}
    asyncio.run(site.app(scope, receive, send))
    start = sent[0]
    assert start["status"] == 307
    assert dict(start["headers"])[b"location"] == b"http://127.0.0.1:8000/calls"


def test_the_default_hosts_are_the_loopback_names(tmp_path, monkeypatch):
    monkeypatch.delenv("QA_TRUSTED_HOSTS")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'qa.db'}", storage_dir=tmp_path / "storage",
                        redis_url="redis://127.0.0.1:1/0")
    assert settings.trusted_hosts == ["localhost", "127.0.0.1", "[::1]"]
    app = create_app(settings)
    for base in ("http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"):
        assert TestClient(app, base_url=base).get("/").status_code == 200, base
    assert TestClient(app).get("/").status_code == 400  # "testserver"
    app.state.repo.dispose()


@pytest.mark.parametrize(("hosts", "ok"), [
    ('["qa.example.com", "*.qa.example.com"]', True),
    ('["*"]', True),
    ('["qa.example.com:8000"]', False),
    ('["https://qa.example.com"]', False),
    ('["qa.*.com"]', False),
    ('["*example.com"]', False),
    ('[""]', False),
])
def test_trusted_hosts_setting(monkeypatch, hosts, ok):
    from pydantic import ValidationError

    monkeypatch.setenv("QA_TRUSTED_HOSTS", hosts)
    if ok:
        assert Settings().trusted_hosts == json.loads(hosts)
    else:
        with pytest.raises(ValidationError, match="QA_TRUSTED_HOSTS"):
            Settings()


# -- what the pages show -------------------------------------------------------------------------

def test_agents_page_lists_agents_with_bars(web):
    r = web.get("/agents")
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    rows = re.findall(r'class="agent-link" href="/agents/([^"?]+)', r.text)
    assert rows == ["agent-a", "agent-b"]
    assert r.text.count('<svg class="bar"') == 4  # mean score and pass rate for each agent
    ranged = web.get("/agents?from=2026-11-15&to=2026-11-30").text
    assert re.findall(r'class="agent-link" href="/agents/([^"?]+)', ranged) == ["agent-b"]


def test_agent_page_has_trend_chart_criteria_and_calls(site, web):
    r = web.get("/agents/agent-a")
    assert r.status_code == 200
    chart = re.search(r'<svg class="trend".*?</svg>', r.text, re.S).group(0)
    assert chart.count("<title>") >= 4  # a column and a dot per week
    assert "mean score 85.0 over 2 calls" in chart and "mean score 65.0 over 2 calls" in chart
    assert "Checks who the caller is" in r.text and "3/4" in r.text and "3/3" in r.text
    assert all(f"/calls/{site.ids[k]}" in r.text for k in ("a1", "a2", "a3", "a4", "failed"))
    assert f"/calls/{site.ids['b1']}" not in r.text
    failing = web.get("/agents/agent-a?verdict=fail").text
    assert f"/calls/{site.ids['a1']}" not in failing and f"/calls/{site.ids['a3']}" in failing
    assert 'href="/agents/agent-a/scorecards.csv?verdict=fail"' in failing


def test_agent_csv_for_the_signed_in_browser(web):
    r = web.get("/agents/agent-a/scorecards.csv?verdict=pass")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = r.text.strip().splitlines()
    assert lines[0].startswith("call_id,external_id,agent_id") and len(lines) == 3


def test_call_list_filters(site, web):
    def listed(query: str) -> set[str]:
        page = web.get(f"/calls{query}")
        assert page.status_code == 200
        return set(re.findall(r'href="/calls/([0-9a-f-]{36})"', page.text))

    ids = site.ids
    assert listed("") == set(ids.values())
    assert listed("?verdict=fail") == {ids["a2"], ids["a3"], ids["b1"]}
    assert listed("?violation=fee-amount&agent_id=agent-a") == {ids["a3"], ids["a4"]}
    assert listed("?from=2026-11-20&to=&verdict=") == {ids["b2"], ids["queued"]}  # empty fields are no filter
    assert listed("?status=failed") == {ids["failed"]}


def test_call_list_pages_by_cursor(site, web, monkeypatch):
    """Older → follows next_cursor page after page; « Newest goes back to the first page."""
    import html as html_lib

    from qa_service.web import pages

    monkeypatch.setattr(pages, "PAGE_SIZE", 3)
    seen: list[str] = []
    url, hops = "/calls", 0
    while url is not None:
        page = web.get(url)
        assert page.status_code == 200
        seen += re.findall(r'href="/calls/([0-9a-f-]{36})"', page.text)
        older = re.search(r'<a href="([^"]+)" rel="next">Older', page.text)
        url = "/calls" + html_lib.unescape(older.group(1)) if older else None
        hops += 1
        if hops > 1:
            assert 'rel="first">« Newest' in page.text
    assert hops == 3 and len(seen) == len(set(seen)) == len(site.ids)


def test_a_bad_cursor_is_explained_on_the_page(site, web):
    r = web.get("/calls?cursor=not-a-cursor")
    assert r.status_code == 200 and "the cursor is not one this listing gave" in r.text
    assert set(re.findall(r'href="/calls/([0-9a-f-]{36})"', r.text)) == set(site.ids.values())


def test_bad_filters_are_explained_on_the_page(web):
    r = web.get("/calls?from=yesterday&verdict=maybe")
    assert r.status_code == 200
    assert "must be a date" in r.text and "verdict must be pass or fail" in r.text


def test_call_page_marks_evidence_and_shows_no_raw_personal_data(site, web):
    r = web.get(f"/calls/{site.ids['a2']}")
    assert r.status_code == 200
    html = r.text
    # Every evidence line carries its criteria, so a click (or ?c=) can highlight it.
    for crit in ("greeting", "identity", "next_steps"):
        line = re.search(rf'<li id="seg-{EVIDENCE_SEGMENT[crit]}"[^>]*data-crits="([^"]*)"', html)
        assert line and crit in line.group(1).split(), crit
    assert 'class="seg hl' not in html and " hl\"" not in html  # nothing selected yet
    assert '<span class="pii" title="Removed: PERSON">PERSON</span>' in html
    # The raw name is only in the stored input, which the page must never read.
    assert RAW_NAME not in html and "input.txt" not in html
    assert "&lt;PERSON&gt;" not in html
    # Verdict, violation quote with detail, metrics.
    assert 'class="badge fail"' in html and "auto-fail" in html
    assert "we guarantee your permit" in html and "Promises a result" in html
    assert "did not apply" in html  # the criterion that did not apply says so
    # A mention resting on a number the recogniser was unsure of is shown apart, uncounted.
    to_check = html[html.index('id="to-check"'):html.index('id="metrics"')]
    assert "Processing time" in to_check and "unsure of the number (confidence 0.21)" in to_check
    assert f'href="#seg-{EVIDENCE_SEGMENT["next_steps"]}"' in to_check
    assert 'class="badge viol">1<' in html  # the violations' count leaves it out
    assert '<svg class="bar stacked"' in html and "Overtalk" in html and "Interruptions" in html


def test_call_page_server_side_highlight(site, web):
    html = web.get(f"/calls/{site.ids['a2']}?c=identity").text
    highlighted = re.findall(r'<li id="(seg-\d+)" class="seg [a-z]+ hl', html)
    assert highlighted == [f"seg-{EVIDENCE_SEGMENT['identity']}"]
    assert re.search(r'class="crit pass active" id="crit-identity"', html)
    violation = web.get(f"/calls/{site.ids['a2']}?v=0").text
    assert re.findall(r'<li id="(seg-\d+)" class="seg [a-z]+ hl', violation) == ["seg-4"]


def test_call_page_for_unscored_calls(site, web):
    failed = web.get(f"/calls/{site.ids['failed']}").text
    assert "Processing failed: the recording could not be decoded" in failed
    queued = web.get(f"/calls/{site.ids['queued']}").text
    assert "not scored yet" in queued
    missing = web.get("/calls/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "No such call" in missing.text
    assert web.get("/calls/not-a-uuid").status_code == 404


def test_audio_player_and_stream(site, web):
    with_audio = web.get(f"/calls/{site.ids['a2']}").text
    player = f'<audio id="player" controls preload="metadata" src="/calls/{site.ids["a2"]}/audio">'
    assert player in with_audio
    without = web.get(f"/calls/{site.ids['a4']}").text
    assert "<audio" not in without and "No audio is kept for this call" in without

    r = web.get(f"/calls/{site.ids['a2']}/audio")
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    assert r.content == silent_wav(2.0)
    part = web.get(f"/calls/{site.ids['a2']}/audio", headers={"Range": "bytes=0-99"})
    assert part.status_code == 206 and len(part.content) == 100  # seeking works
    assert web.get(f"/calls/{site.ids['a4']}/audio").status_code == 404
    assert site.client(None).get(f"/calls/{site.ids['a2']}/audio").status_code == 401


def test_audio_api_route_roles(site):
    c = TestClient(site.app)
    url = f"/v1/calls/{site.ids['a2']}/audio"
    assert c.get(url).status_code == 401
    assert c.get(url, headers={"Authorization": f"Bearer {site.keys['telephony']}"}).status_code == 403
    ok = c.get(url, headers={"Authorization": f"Bearer {site.keys['qa']}"})
    assert ok.status_code == 200 and ok.content[:4] == b"RIFF"
    none = c.get(f"/v1/calls/{site.ids['a4']}/audio", headers={"Authorization": f"Bearer {site.keys['qa']}"})
    assert none.status_code == 404 and "no redacted audio" in none.json()["detail"]


def test_audio_from_an_object_store_seeks_by_ranged_reads(tmp_path, s3_env):
    import io
    import uuid

    from qa_service.storage.objects import input_store, make_client

    bucket = f"qa-{uuid.uuid4().hex[:20]}"
    make_client(s3_env).create_bucket(Bucket=bucket)
    s = Site(tmp_path, storage_url=f"s3://{bucket}/qa")
    audio = silent_wav(2.0)
    input_store(s.settings).put_redacted_audio(s.ids["a2"], io.BytesIO(audio))
    api = TestClient(s.app)
    qa = {"Authorization": f"Bearer {s.keys['qa']}"}
    url = f"/v1/calls/{s.ids['a2']}/audio"
    whole = api.get(url, headers=qa)
    assert whole.status_code == 200 and whole.content == audio
    assert whole.headers["accept-ranges"] == "bytes" and whole.headers["content-length"] == str(len(audio))
    part = api.get(url, headers={**qa, "Range": "bytes=44-143"})
    assert part.status_code == 206 and part.content == audio[44:144]
    assert part.headers["content-range"] == f"bytes 44-143/{len(audio)}"
    tail = s.client().get(f"/calls/{s.ids['a2']}/audio", headers={"Range": "bytes=-16"})
    assert tail.status_code == 206 and tail.content == audio[-16:]
    beyond = api.get(url, headers={**qa, "Range": f"bytes={len(audio)}-"})
    assert beyond.status_code == 416 and beyond.headers["content-range"] == f"bytes */{len(audio)}"
    s.repo.dispose()


def test_static_files_are_served_by_the_app(site):
    c = site.client(None)
    assert "seg.hl" in c.get("/static/app.css").text
    assert "data-crits" in c.get("/static/app.js").text
    page = c.get("/").text
    assert "http://" not in page and "https://" not in page  # nothing from a CDN


# -- /metrics ------------------------------------------------------------------------------------

def test_metrics_exposition(site):
    r = TestClient(site.app).get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = r.text
    assert 'qa_calls{status="done"} 6' in text and 'qa_calls{status="queued"} 1' in text
    assert 'qa_calls{status="failed"} 1' in text and 'qa_calls{status="processing"} 0' in text
    assert "qa_scorecards_stored 7" in text and "qa_scored_calls 6" in text
    assert "qa_queue_up 0" in text  # the app's Redis URL points at a closed port
    assert "# TYPE qa_calls gauge" in text
    for line in text.splitlines():
        sample = r'[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? \d+'
        assert line.startswith("#") or re.fullmatch(sample, line), line


def test_metrics_queue_depth_from_redis(site, redis_conn):
    from rq import Queue

    queue = Queue("calls", connection=redis_conn)
    for _ in range(3):
        queue.enqueue("qa_service.worker.jobs.process_call", "00000000-0000-0000-0000-000000000000")
    text = collect(site.repo, queue)
    assert "qa_queue_up 1" in text
    assert 'qa_queue_jobs{queue="calls",state="queued"} 3' in text


def test_metrics_report_a_database_that_is_away():
    broken = SimpleNamespace(engine=None)
    text = collect(broken, SimpleNamespace())
    assert "qa_database_up 0" in text and "qa_queue_up 0" in text and "qa_calls{" not in text


# -- pure pieces ---------------------------------------------------------------------------------

def test_redacted_text_is_escaped_and_placeholders_become_chips():
    html = str(callview.redacted_html('<script>alert("x")</script> call <EMAIL_ADDRESS> now'))
    assert "<script>" not in html and "&lt;script&gt;" in html
    assert '<span class="pii" title="Removed: EMAIL_ADDRESS">EMAIL ADDRESS</span>' in html


@pytest.mark.parametrize(("evidence", "expected"), [
    ({"start": 9.6, "end": 13.2, "speaker": "agent"}, (1,)),
    ({"start": 9.6, "end": 13.2, "speaker": "customer"}, (2,)),  # same time, other lane
    ({"start": 0.0, "end": 20.0, "speaker": "agent"}, (0, 1)),  # a merged utterance spans lines
    ({"start": 99.0, "end": 99.5, "speaker": "agent", "text": "confirm your date"}, (1,)),  # by words
    ({"start": 99.0, "end": 99.5, "speaker": "agent", "text": ""}, ()),
    ({"start": 0.0, "end": 20.0, "speaker": "agent", "segments": [2, 0]}, (0, 2)),  # named segments win
    ({"start": 9.6, "end": 13.2, "speaker": "agent", "segments": [7]}, (1,)),  # out of range: use times
    ("Thanks for calling.", (0,)),  # bare text, as early scorecards kept it
])
def test_evidence_lines(evidence, expected):
    lines = [callview.Line(0, "agent", 0.4, 3.8, "Thanks for calling."),
             callview.Line(1, "agent", 9.6, 13.2, "Can you confirm your date of birth?"),
             callview.Line(2, "customer", 13.0, 15.1, "It is <DATE_TIME>.")]
    assert callview.evidence_lines(lines, evidence) == expected


def test_clock():
    assert [callview.clock(x) for x in (0, 4.9, 65, 3725, None)] == ["0:00", "0:04", "1:05", "1:02:05", "-"]


@pytest.mark.parametrize(("asr", "rows"), [
    ({"audio": {"format": "wav/pcm_mulaw", "sample_rate": 8000, "channels": 1},
      "mean_word_confidence": 0.731},
     [("Recording", "8 kHz, 1 channel (wav/pcm_mulaw)"),
      ("Recogniser confidence", "73% per word on average")]),
    ({"audio": {"format": "flac/flac", "sample_rate": 16000, "channels": 2}},
     [("Recording", "16 kHz, 2 channels (flac/flac)")]),
    ({"audio": {"format": "wav/pcm_s16le", "sample_rate": 8000, "channels": 2},
      "vocabulary": {"phrases": 31, "channels": ["agent", "customer"]}},
     [("Recording", "8 kHz, 2 channels (wav/pcm_s16le)"),
      ("Recogniser hints", "told to expect the rubric's 31 phrases and policy topics (agent, customer)")]),
    ({"name": "base", "audio": {"format": "wav/pcm_s16le", "sample_rate": 16000, "channels": 1},
      "language_detection": {"language": "zh", "probability": 0.996, "english": 0.001, "model": "base"}},
     [("Recording", "16 kHz, 1 channel (wav/pcm_s16le)"),
      ("Language", "zh (100% likely), transcribed by base")]),
    ({"audio": {"format": "wav/pcm_s16le", "sample_rate": 8000, "channels": 1},
      "lines": {"call": {"band": "telephone", "model": "base"}}},
     [("Recording", "8 kHz, 1 channel (wav/pcm_s16le)"), ("Speech model", "base (telephone band)")]),
    ({"lines": {"agent": {"band": "telephone", "model": "base"},
                "customer": {"band": "full", "model": "tiny.en"}}},
     [("Speech model", "agent base (telephone band), customer tiny.en (full band)")]),
    ({}, []),  # a call that came as text, or a scorecard from before the audio was recorded
])
def test_call_page_says_what_the_transcript_was_made_from(asr, rows):
    card = {"transcript": [], "criteria": [], "violations": [], "metrics": {}, "duration_s": 10.0,
            "models": {"asr": asr}}
    assert callview.build(card).metrics == rows


def test_bars_and_trend_chart():
    assert 'width="100.00"' in charts.bar(1.7) and 'class="fill good"' in charts.bar(0.9)
    assert 'width="0.00"' in charts.bar(None) and 'class="fill poor"' in charts.bar(0.2)
    parts = [charts.Part(30, "agent", "a"), charts.Part(10, "customer", "c")]
    stacked = str(charts.stacked_bar(parts, total=80))
    assert 'x="0.00" width="37.50"' in stacked and 'x="37.50" width="12.50"' in stacked
    assert "No scored calls" in charts.trend_chart([])
    chart = str(charts.trend_chart([charts.TrendPoint("W1", 100, 1.0, 2), charts.TrendPoint("W2", 0, 0.0, 1)],
                                   pass_mark=70))
    # 100 sits on the top gridline and 0 on the bottom one (top=12, plot height 168).
    assert re.search(r'<path class="line" d="M[\d.]+,12\.0 L[\d.]+,180\.0"/>', chart)
    assert 'class="passmark"' in chart
    assert "<script" not in str(charts.trend_chart([charts.TrendPoint("<script>", 50, 0.5, 1)]))
