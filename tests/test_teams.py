"""Teams and vendors: memberships by date, keys scoped to teams, aggregates by team and vendor, the
vendor comparison page.

The matrix at the end walks every route the app serves: each one must be declared here as reading
call data (and then a key scoped to team A must get nothing of team B's agents and calls from it),
as refused to scoped keys, or as holding no call data. A new route without that decision fails.
"""

from __future__ import annotations

import html
import re
from datetime import date
from itertools import product
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa_service.app import create_app
from qa_service.auth import create_key, hash_key, issue_key
from qa_service.cli import main
from qa_service.errors import Forbidden, InputError, NotFound
from qa_service.services import calibration, teams
from qa_service.services.calls import readable_call
from qa_service.services.disputes import raise_dispute
from qa_service.services.imports import ImportRefused
from qa_service.services.reviews import add_review
from qa_service.settings import Settings
from qa_service.storage import open_repository
from qa_service.storage.memory import MemoryRepository
from qa_service.storage.paging import encode
from qa_service.storage.paging import every as every_page
from qa_service.storage.repository import Certification, Membership, NewCall, Scope, TrainingRecord
from qa_service.storage.views import Filters
from qa_service.web import pages
from tests.test_api import Api
from tests.test_audit import app_routes
from tests.test_paging import walk
from tests.test_views import ALL, Seed, make_scorecard, seed_calls, silent_wav
from tests.test_web import form_token, sign_in

TEAM_A, TEAM_B = "team-alpha", "team-bravo"
VENDOR_A, VENDOR_B = "vendor-one", "vendor-two"
START = date(2026, 1, 1)


def m(agent: str, team: str, vendor: str, since: date, until: date | None = None) -> Membership:
    return Membership(agent_id=agent, team=team, vendor=vendor, since=since, until=until)


# -- memberships -----------------------------------------------------------------------------------

def test_a_membership_file_is_read_whole_or_refused_naming_each_line():
    text = ("agent_id,team,vendor,from,to\n"
            "a-1,alpha,acme,2026-01-01,2026-03-31\n"
            "a-1,bravo,acme,2026-04-01,\n"
            "a-2,alpha,in-house,2026-02-01,\n")
    items = teams.read_memberships(text)
    assert items[1] == m("a-1", "bravo", "acme", date(2026, 4, 1))
    assert items[0].on(date(2026, 3, 31)) and not items[0].on(date(2026, 4, 1))
    bad = ("agent_id,team,vendor,from,to\n"
           "a-1,alpha,acme,2026-01-01,2026-05-01\n"
           "a-1,bravo,acme,2026-04-01,\n"          # overlaps line 2
           "a-2,,acme,2026-13-01,\n"               # no team, no date
           "a-3,alpha,acme,2026-02-01,2026-01-01\n")  # ends before it starts
    with pytest.raises(ImportRefused) as refused:
        teams.read_memberships(bad)
    assert [n for n, _ in refused.value.problems] == [3, 4, 4, 5]
    assert "overlaps" in str(refused.value) and "team is empty" in str(refused.value)
    with pytest.raises(ImportRefused, match="header"):
        teams.read_memberships("agent,team\nx,y\n")
    with pytest.raises(ImportRefused, match="unknown fields"):
        teams.check_items([{"agent_id": "a", "team": "t", "vendor": "v", "from": "2026-01-01", "x": "1"}])


def test_a_move_closes_the_open_period_and_an_overlap_is_refused():
    store = MemoryRepository()
    counts = teams.put_memberships(store=store, items=[m("a-1", "alpha", "acme", date(2026, 1, 1))])
    assert (counts.added, counts.updated) == (1, 0)
    # The agent moves on 1 April: the open period ends on 31 March.
    counts = teams.put_memberships(store=store, items=[m("a-1", "bravo", "acme", date(2026, 4, 1))])
    assert (counts.added, counts.updated) == (1, 1)
    assert store.teams.memberships(agent_id="a-1") == [
        m("a-1", "alpha", "acme", date(2026, 1, 1), date(2026, 3, 31)),
        m("a-1", "bravo", "acme", date(2026, 4, 1))]
    # The same file again changes nothing.
    again = teams.put_memberships(store=store, items=[m("a-1", "bravo", "acme", date(2026, 4, 1))])
    assert (again.added, again.updated, again.unchanged) == (0, 0, 1)
    # A period inside a closed one is refused, and nothing is stored.
    with pytest.raises(ImportRefused, match="overlaps the stored period in alpha"):
        teams.put_memberships(store=store, items=[m("a-1", "charlie", "acme", date(2026, 2, 1),
                                                    date(2026, 2, 10))])
    assert len(store.teams.memberships()) == 2


def test_scopes_are_for_supervisor_and_qa_keys():
    assert teams.make_scope("supervisor") is None
    assert teams.make_scope("supervisor", [" alpha ", "alpha"], ["acme"]) == Scope(("alpha",), ("acme",))
    for role in ("admin", "telephony"):
        with pytest.raises(InputError, match=f"{role} keys cannot be scoped"):
            teams.make_scope(role, ["alpha"])
    with pytest.raises(InputError, match="empty"):
        teams.make_scope("qa", [""])


def test_a_scoped_key_keeps_its_scope_in_both_databases(database_url):
    repo = open_repository(database_url)
    try:
        stored, _ = issue_key(repo, "supervisor", "lead", Scope(teams=("alpha", "bravo"), vendors=("acme",)))
        plain, _ = issue_key(repo, "supervisor", "everyone")
        found = {k.id: k for k in repo.list_keys()}
        assert found[stored.id].scope == Scope(teams=("alpha", "bravo"), vendors=("acme",))
        assert found[plain.id].scope is None
        assert repo.key_by_hash(stored.key_hash).scope == stored.scope
    finally:
        repo.dispose()


# -- history by date, on both databases ------------------------------------------------------------

def test_a_call_counts_for_the_team_the_agent_was_in_that_day(database_url):
    """An agent moves from alpha to bravo on 10 November: calls before count for alpha, after for bravo,
    in the aggregates, the listings and what a scoped key reads."""
    repo = open_repository(database_url)
    try:
        ids = seed_calls(repo)  # agent-a: 2, 4, 10, 12 (+ failed 13) November; agent-b: 3 and 20 November
        teams.put_memberships(store=repo, items=[m("agent-a", "alpha", "acme", START),
                                                 m("agent-b", "bravo", "in-house", START)])
        teams.put_memberships(store=repo, items=[m("agent-a", "bravo", "in-house", date(2026, 11, 10))])
        views = repo.views
        by_team = {g.name: g.totals for g in views.groups(Filters(), "team")}
        # alpha: a1 (100) and a2 (70); bravo: a3 (40), a4 (90), b1 (30), b2 (100).
        assert {k: (t.count, t.mean_score) for k, t in by_team.items()} == {"alpha": (2, 85.0),
                                                                            "bravo": (4, 65.0)}
        by_vendor = {g.name: g.totals.count for g in views.groups(Filters(), "vendor")}
        assert by_vendor == {"acme": 2, "in-house": 4}
        alpha_calls = {c.call_id for c in views.calls(Filters(team="alpha")).items}
        assert alpha_calls == {ids["a1"], ids["a2"]}
        bravo_a = {c.call_id for c in views.calls(Filters(team="bravo", agent_id="agent-a")).items}
        assert bravo_a == {ids["a3"], ids["a4"], ids["failed"]}
        # A key scoped to alpha reads agent-a's calls from before the move only.
        lead = Scope(teams=("alpha",))
        assert {c.call_id for c in views.calls(Filters(allowed=lead)).items} == {ids["a1"], ids["a2"]}
        assert views.totals(Filters(allowed=lead)).count == 2
        assert [a.agent_id for a in views.agents(Filters(allowed=lead))] == ["agent-a"]
        key, _ = issue_key(repo, "supervisor", "alpha lead", lead)
        assert readable_call(repo, key, ids["a2"]).id == ids["a2"]
        with pytest.raises(NotFound):
            readable_call(repo, key, ids["a3"])
        # Team and vendor together: both must hold on the day.
        both = Filters(allowed=Scope(teams=("bravo",), vendors=("in-house",)), agent_id="agent-a")
        assert views.totals(both).count == 2
        assert views.totals(Filters(allowed=Scope(teams=("alpha",), vendors=("in-house",)))).count == 0
        # Agents without a membership count for no team.
        z = "00000000-0000-4000-8000-000000000001"
        repo.add_call(NewCall(id=z, external_id="ext-z", agent_id="agent-z", call_date=date(2026, 11, 5),
                              rubric_id="intake", rubric_version="1", policy_pack_id="fees",
                              policy_pack_version="2026-10", input_kind="transcript"))
        repo.start_call(z)
        seed = Seed("z1", "agent-z", date(2026, 11, 5), ALL, (), 100.0, True)
        repo.finish_call(z, make_scorecard(seed, "ext-z"))
        assert sum(g.totals.count for g in views.groups(Filters(), "team")) == 6
        assert "agent-z" not in {a.agent_id for a in views.agents(Filters(allowed=Scope(vendors=("acme",
                                                                                                 "in-house"))))}
    finally:
        repo.dispose()


# -- a site with two teams -------------------------------------------------------------------------

class Site:
    """One app over SQLite: agent-a in team alpha with vendor one, agent-b in team bravo with vendor two,
    their certifications, training and redacted audio; keys of every kind."""

    def __init__(self, folder):
        self.settings = Settings(database_url=f"sqlite:///{folder / 'qa.db'}", storage_dir=folder / "storage",
                                 model_cache_dir=folder / "models", redis_url="redis://127.0.0.1:1/0",
                                 review_share=1.0)
        self.app = create_app(self.settings)
        self.repo = repo = self.app.state.repo
        self.ids = seed_calls(repo, self.settings.storage_dir)
        for key in ("a2", "b1"):
            (self.settings.storage_dir / self.ids[key] / "redacted.wav").write_bytes(silent_wav(1.0))
        teams.put_memberships(store=repo, items=[m("agent-a", TEAM_A, VENDOR_A, START),
                                                 m("agent-b", TEAM_B, VENDOR_B, START)])
        repo.certification.import_certifications([
            Certification(agent, name, ("fees",), date(2025, 1, 1), expires)
            for agent in ("agent-a", "agent-b")
            for name, expires in (("fees", date(2026, 1, 1)), ("fees", date(2027, 1, 1)),
                                  ("chat", date(2026, 6, 1)))])
        # Everyone trained on an earlier version of the fee policy, nobody yet on the current one.
        repo.put_rules("policy_pack", "fees", "2026-09", "0" * 64, "id: fees\nversion: 2026-09\n")
        repo.certification.import_training([TrainingRecord(agent, "fees", "2026-09", date(2026, 9, 1))
                                            for agent in ("agent-a", "agent-b")])
        self.keys = {r: create_key(repo, r, f"{r} person") for r in ("admin", "qa", "supervisor")}
        self.keys["alpha"] = issue_key(repo, "supervisor", "alpha lead", Scope(teams=(TEAM_A,)))[1]
        self.keys["alpha-qa"] = issue_key(repo, "qa", "alpha reviewer", Scope(teams=(TEAM_A,)))[1]
        self.keys["one"] = issue_key(repo, "supervisor", "vendor one lead", Scope(vendors=(VENDOR_A,)))[1]
        reviewer = repo.key_by_hash(hash_key(self.keys["qa"]))
        for key in ("a1", "b1"):
            add_review(store=repo, key=reviewer, call_id=self.ids[key], target="verdict", target_id="verdict",
                       action="confirm", reason="listened")
        # Each agent disputes a finding of theirs, so the dispute routes have something of each team.
        for agent, call, target, target_id in (("agent-a", "a3", "criterion", "identity"),
                                               ("agent-b", "b1", "criterion", "disclosure")):
            agent_key = issue_key(repo, "agent", agent, Scope(agent=agent))[0]
            raise_dispute(store=repo, key=agent_key, call_id=self.ids[call], target=target,
                          target_id=target_id, reason="I did not say that", window_days=7)
        # Two calibration sessions: one over team A's calls, one over both teams' (refused to scoped keys).
        lead = repo.key_by_hash(hash_key(self.keys["admin"]))
        both = ["admin person", "qa person"]
        calibration.create_session(store=repo, key=lead, name="alpha calls", reviewers=both,
                                   calls=[self.ids["a1"], self.ids["a2"]])
        self.mixed_session = calibration.create_session(
            store=repo, key=lead, name="both teams", reviewers=both,
            calls=[self.ids["a1"], self.ids["b1"]]).id

    def api(self, who: str) -> TestClient:
        return TestClient(self.app, headers={"Authorization": f"Bearer {self.keys[who]}"})

    def web(self, who: str) -> TestClient:
        c = TestClient(self.app, base_url="http://testserver")
        assert sign_in(c, self.keys[who]).status_code == 303
        return c

    def team_b(self) -> set[str]:
        """What must never reach a reader scoped to team A: B's call ids, external ids, agent, team and
        vendor."""
        return {self.ids["b1"], self.ids["b2"], self.ids["queued"], "ext-b1", "ext-b2", "ext-queued",
                "agent-b", TEAM_B, VENDOR_B}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    s = Site(tmp_path_factory.mktemp("teams"))
    yield s
    s.repo.dispose()


def test_team_and_vendor_aggregates_and_csv(site):
    api = site.api("supervisor")
    listed = api.get("/v1/teams").json()
    assert [(g["name"], g["calls"]) for g in listed["groups"]] == [(TEAM_A, 4), (TEAM_B, 2)]
    vendors = api.get("/v1/vendors", params={"from": "2026-11-04"}).json()["groups"]
    assert [(g["name"], g["calls"]) for g in vendors] == [(VENDOR_A, 3), (VENDOR_B, 1)]
    report = api.get(f"/v1/teams/{TEAM_B}/scorecards").json()
    assert report["team"] == TEAM_B and report["aggregate"]["count"] == 2
    assert report["aggregate"]["mean_score"] == 65.0 and report["aggregate"]["pass_rate"] == 0.5
    assert {c["external_id"] for c in report["scorecards"]} == {"ext-b1", "ext-b2", "ext-queued"}
    assert report["criteria"] and report["trend"]
    failing = api.get(f"/v1/vendors/{VENDOR_A}/scorecards", params={"verdict": "fail"}).json()
    assert failing["vendor"] == VENDOR_A and failing["aggregate"]["count"] == 4
    assert {c["external_id"] for c in failing["scorecards"]} == {"ext-a2", "ext-a3"}
    csv = api.get(f"/v1/vendors/{VENDOR_B}/scorecards.csv")
    assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
    assert "ext-b1" in csv.text and "ext-a1" not in csv.text
    first = api.get(f"/v1/teams/{TEAM_B}/scorecards", params={"page_size": 2}).json()
    assert len(first["scorecards"]) == 2 and first["next_cursor"] and first["aggregate"]["count"] == 2
    rest = api.get(f"/v1/teams/{TEAM_B}/scorecards", params={"page_size": 2,
                                                              "cursor": first["next_cursor"]}).json()
    assert {c["external_id"] for c in [*first["scorecards"], *rest["scorecards"]]} == {
        "ext-b1", "ext-b2", "ext-queued"} and rest["next_cursor"] is None
    for url in ("/v1/calls", "/v1/agents/agent-a/summary", f"/v1/teams/{TEAM_A}/scorecards",
                f"/v1/vendors/{VENDOR_A}/scorecards"):
        refused = api.get(url, params={"page": 2})
        assert refused.status_code == 422 and "cursor" in refused.json()["detail"], url
        bad = api.get(url, params={"cursor": "bm9wZQ"})
        assert bad.status_code == 422 and "next_cursor" in bad.json()["detail"], url
    by_team = api.get("/v1/calls", params={"team": TEAM_A, "page_size": 100}).json()
    assert {c["external_id"] for c in by_team["items"]} == {"ext-a1", "ext-a2", "ext-a3", "ext-a4",
                                                             "ext-failed"}
    assert api.get("/v1/agents", params={"vendor": VENDOR_B}).json()["agents"][0]["agent_id"] == "agent-b"
    assert api.get("/v1/calls", params={"team": "x" * 101}).status_code == 422


def _every_page(api: TestClient, url: str, items: str) -> list[dict]:
    """Every item of a paged API listing, read one item a page."""
    found, cursor = [], None
    for _ in range(20):
        body = api.get(url, params={"page_size": 1, **({"cursor": cursor} if cursor else {})}).json()
        assert len(body[items]) <= 1 and body["page_size"] == 1
        found += body[items]
        cursor = body["next_cursor"]
        if cursor is None:
            return found
    raise AssertionError("the pages never end")


def test_agent_team_and_vendor_listings_are_read_by_cursor(site):
    api = site.api("supervisor")
    assert [a["agent_id"] for a in _every_page(api, "/v1/agents", "agents")] == \
        [a["agent_id"] for a in api.get("/v1/agents").json()["agents"]] == ["agent-a", "agent-b"]
    assert [g["name"] for g in _every_page(api, "/v1/teams", "groups")] == [TEAM_A, TEAM_B]
    assert [g["name"] for g in _every_page(api, "/v1/vendors", "groups")] == [VENDOR_A, VENDOR_B]
    # A scoped lead's pages hold its own team only, and say nothing of another page.
    alpha = site.api("alpha")
    assert [g["name"] for g in _every_page(alpha, "/v1/teams", "groups")] == [TEAM_A]
    assert [a["agent_id"] for a in _every_page(alpha, "/v1/agents", "agents")] == ["agent-a"]
    agents_cursor = api.get("/v1/agents", params={"page_size": 1}).json()["next_cursor"]
    for url in ("/v1/agents", "/v1/teams", "/v1/vendors"):
        refused = api.get(url, params={"limit": 10})
        assert refused.status_code == 422 and "page_size" in refused.json()["detail"], url
    foreign = api.get("/v1/teams", params={"cursor": agents_cursor})
    assert foreign.status_code == 422 and "next_cursor" in foreign.json()["detail"]


def test_the_agents_page_pages(site, monkeypatch):
    monkeypatch.setattr(pages, "AGENTS_PAGE_SIZE", 1)
    web = site.web("supervisor")
    first = web.get("/agents")
    assert first.status_code == 200 and "agent-a" in first.text and "agent-b" not in first.text
    older = re.search(r'href="([^"]+)" rel="next"', first.text)
    assert older is not None
    second = web.get("/agents" + html.unescape(older.group(1)))
    assert "agent-b" in second.text and 'rel="next"' not in second.text
    assert "not one this listing gave" in web.get("/agents?cursor=bm9wZQ").text


def test_memberships_through_the_api(site):
    admin = site.api("admin")
    r = admin.post("/v1/memberships", content="agent_id,team,vendor,from,to\nagent-q,t,v,2026-01-01,\n",
                   headers={"Content-Type": "text/csv"})
    assert r.status_code == 200 and r.json()["added"] == 1
    r = admin.post("/v1/memberships",
                   json=[{"agent_id": "agent-q", "team": "t", "vendor": "v", "from": "nope"}])
    assert r.status_code == 422 and r.json()["errors"] == [{"item": 1, "message": "from 'nope' is not a date "
                                                                                  "(YYYY-MM-DD)"}]
    assert site.api("supervisor").post("/v1/memberships", json=[]).status_code == 403
    # A scoped reviewer may not move agents into its scope.
    assert site.api("alpha-qa").post("/v1/memberships", json=[]).status_code == 403
    mine = site.api("alpha").get("/v1/memberships").json()["memberships"]
    assert [(x["agent_id"], x["team"], x["from"], x["to"]) for x in mine] == [
        ("agent-a", TEAM_A, "2026-01-01", None)]


def test_memberships_are_read_a_page_at_a_time_inside_the_scope(make_settings, redis_url, redis_conn,
                                                                database_url):
    api = Api(make_settings(redis_url=redis_url, database_url=database_url), redis_conn)
    try:
        # Agents who move between teams: a scoped key sees only the periods in its teams, on every page.
        moved = date(2026, 6, 1)
        first = [m(f"agent-{n}", TEAM_A if n % 2 else TEAM_B, VENDOR_A, START) for n in range(7)]
        then = [m(f"agent-{n}", TEAM_B if n % 2 else TEAM_A, VENDOR_B, moved) for n in range(0, 7, 3)]
        for items in (first, then):
            teams.put_memberships(store=api.repo, items=items)
        alpha = issue_key(api.repo, "supervisor", "alpha lead", Scope(teams=(TEAM_A,)))[1]

        def reader(headers: dict[str, str]) -> Any:
            return lambda url, **kw: api.client.get(url, headers=headers, **kw)

        every = walk(reader(api.h("admin")), "/v1/memberships", "memberships")
        order = [(x["agent_id"], x["from"]) for x in every]
        assert order == sorted(order) and len(order) == len(set(order)) == 10
        scoped = walk(reader({"Authorization": f"Bearer {alpha}"}), "/v1/memberships", "memberships",
                      page_size=1)
        assert [(x["agent_id"], x["from"]) for x in scoped] == [(x["agent_id"], x["from"]) for x in every
                                                                if x["team"] == TEAM_A]
        one = walk(reader(api.h("admin")), "/v1/memberships", "memberships", agent_id="agent-3")
        assert [(x["team"], x["from"], x["to"]) for x in one] == [(TEAM_A, "2026-01-01", "2026-05-31"),
                                                                   (TEAM_B, "2026-06-01", None)]
        # The in-memory twin pages alike.
        twin = MemoryRepository()
        for items in (first, then):
            teams.put_memberships(store=twin, items=items)
        assert [(x.agent_id, x.since.isoformat()) for x in every_page(twin.teams.membership_page)] == order
    finally:
        api.repo.dispose()


def test_the_memberships_listing_refuses_other_cursors_and_limits(site):
    api = site.api("admin")
    r = api.get("/v1/memberships", params={"cursor": encode("keys", ("2026-01-01T00:00:00+00:00", "x"))})
    assert r.status_code == 422 and "not one this listing gave" in r.json()["detail"]
    r = api.get("/v1/memberships", params={"limit": 5})
    assert r.status_code == 422 and "page_size" in r.json()["detail"]


def test_keys_with_a_scope_through_the_api_and_the_command_line(site, tmp_path, monkeypatch, capsys):
    admin = site.api("admin")
    made = admin.post("/v1/keys", json={"role": "supervisor", "name": "bravo lead", "teams": [TEAM_B]})
    assert made.status_code == 201 and made.json()["teams"] == [TEAM_B] and made.json()["vendors"] == []
    scoped = TestClient(site.app, headers={"Authorization": f"Bearer {made.json()['key']}"})
    assert {c["external_id"] for c in scoped.get("/v1/calls").json()["items"]} == {"ext-b1", "ext-b2",
                                                                                   "ext-queued"}
    refused = admin.post("/v1/keys", json={"role": "telephony", "name": "pbx", "vendors": ["x"]})
    assert refused.status_code == 422 and "cannot be scoped" in refused.json()["detail"]

    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'cli.db'}")
    monkeypatch.setenv("QA_STORAGE_DIR", str(tmp_path / "storage"))
    assert main(["keys", "create", "--role", "supervisor", "--name", "lead", "--team", "A",
                 "--vendor", "V"]) == 0
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert listing[0].split()[-1] == "scope" and listing[1].endswith("team=A vendor=V")
    assert main(["keys", "create", "--role", "admin", "--name", "x", "--team", "A"]) != 0
    assert "admin keys cannot be scoped" in capsys.readouterr().err
    csv = tmp_path / "teams.csv"
    csv.write_text("agent_id,team,vendor,from,to\nagent-a,A,V,2026-01-01,\nagent-b,B,in-house,2026-01-01,\n")
    assert main(["teams", "import", str(csv)]) == 0
    assert "2 added" in capsys.readouterr().out
    assert main(["teams", "list", "--vendor", "V"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split() == ["agent", "team", "vendor", "from", "to"] and len(rows) == 2
    assert rows[1].split() == ["agent-a", "A", "V", "2026-01-01", "-"]


def test_the_vendor_comparison_page(site):
    page = site.web("supervisor").get("/vendors")
    assert page.status_code == 200
    heads = re.findall(r'<th scope="col" class="group-name">([^<]+)</th>', page.text)
    assert heads == [VENDOR_A, VENDOR_B]
    row = re.search(r'<tr><th scope="row">Calls</th>(.*?)</tr>', page.text, re.S)
    assert row and re.findall(r'<td class="num">(\d+)</td>', row.group(1)) == ["4", "2"]
    # Mean score, pass rate and one row per criterion, side by side.
    assert "Pass rate</th>" in page.text and "Mean score</th>" in page.text
    assert page.text.count('<tr class="criterion">') >= 4 and "85%" not in page.text.split("Calls")[0]
    assert 'aria-current="page">Vendors' in page.text
    teams_page = site.web("supervisor").get("/teams")
    assert re.findall(r'class="group-name">([^<]+)<', teams_page.text) == [TEAM_A, TEAM_B]
    # A key scoped to vendor one compares what it may read: vendor one alone.
    scoped = site.web("one").get("/vendors")
    assert re.findall(r'class="group-name">([^<]+)<', scoped.text) == [VENDOR_A]


def test_rescore_runs_are_refused_to_scoped_keys(site):
    r = site.api("alpha").get("/v1/rescores")
    assert r.status_code == 403 and "scoped" in r.json()["detail"]
    assert site.api("supervisor").get("/v1/rescores").status_code == 200


def test_a_scoped_reviewer_cannot_review_or_retry_another_teams_call(site):
    qa = site.api("alpha-qa")
    before = len(site.repo.reviews.for_call(site.ids["b1"]))
    body = {"target": "verdict", "id": "verdict", "action": "confirm", "reason": "checked"}
    r = qa.post(f"/v1/calls/{site.ids['b1']}/reviews", json=body)
    assert r.status_code == 404
    assert qa.post(f"/v1/calls/{site.ids['failed']}/retry").status_code != 404  # its own team's call
    assert qa.post(f"/v1/calls/{site.ids['b1']}/retry").status_code == 404
    web = site.web("alpha-qa")
    token = form_token(web.get(f"/calls/{site.ids['a1']}").text)
    r = web.post(f"/calls/{site.ids['b1']}/reviews", data={**body, "csrf": token}, follow_redirects=False)
    assert r.status_code == 404
    assert len(site.repo.reviews.for_call(site.ids["b1"])) == before


def test_calibration_sessions_over_other_teams_are_refused_to_scoped_keys(site):
    alpha = site.api("alpha")
    listed = alpha.get("/v1/calibrations").json()["sessions"]
    assert [x["name"] for x in listed] == ["alpha calls"]
    assert alpha.get(f"/v1/calibrations/{listed[0]['id']}").status_code == 200
    assert alpha.get(f"/v1/calibrations/{site.mixed_session}").status_code == 403
    assert site.api("alpha-qa").post(f"/v1/calibrations/{site.mixed_session}/close").status_code == 403
    assert len(site.api("supervisor").get("/v1/calibrations").json()["sessions"]) == 2
    # A reviewer scoped to team A cannot be asked to score team B's call, nor open a session over it.
    body = {"name": "x", "calls": [site.ids["a1"], site.ids["b1"]],
            "reviewers": ["alpha reviewer", "qa person"]}
    r = site.api("admin").post("/v1/calibrations", json=body)
    assert r.status_code == 422 and "'alpha reviewer' is scoped" in r.json()["detail"]
    own = {**body, "reviewers": ["qa person", "admin person"]}
    assert site.api("alpha-qa").post("/v1/calibrations", json=own).status_code == 404


# -- the matrix: every route, a key scoped to team A, nothing of team B ------------------------------

# Routes that read calls, agents, scorecards, aggregates, CSV, audio, the review queue or agents'
# records: a scoped key gets only its teams' part of them.
SCOPED = {
    "/v1/calls", "/v1/calls/{call_id}", "/v1/calls/{call_id}/scorecard", "/v1/calls/{call_id}/audio",
    "/v1/calls/{call_id}/reviews", "/v1/calls/{call_id}/scorecard/reviewed",
    "/v1/agents", "/v1/agents/{agent_id}/scorecards", "/v1/agents/{agent_id}/summary",
    "/v1/agents/{agent_id}/scorecards.csv", "/v1/policy-currency", "/v1/review-queue",
    "/v1/certifications", "/v1/certifications/expiring", "/v1/certifications/lapsed", "/v1/training-records",
    "/v1/policy-packs/{pack_id}/versions/{version}/untrained", "/v1/memberships",
    "/v1/teams", "/v1/vendors", "/v1/teams/{team}/scorecards", "/v1/vendors/{vendor}/scorecards",
    "/v1/teams/{team}/scorecards.csv", "/v1/vendors/{vendor}/scorecards.csv",
    "/agents", "/agents/{agent_id}", "/agents/{agent_id}/scorecards.csv", "/calls", "/calls/{call_id}",
    "/calls/{call_id}/audio", "/certifications", "/vendors", "/teams",
    "/v1/calls/{call_id}/disputes", "/v1/disputes", "/v1/overturn-rates", "/disputes",
    "/v1/calibrations", "/calibrations", "/review-queue", "/search", "/v1/search",
}
# Routes that cover every team at once: refused (403) to scoped keys.
# A calibration session is refused when any of its calls is outside the key's scope (one over the key's own
# calls reads as usual).
REFUSED = {"/v1/rescores", "/v1/rescores/{run_id}", "/rescores", "/rescores/{run_id}",
           "/v1/calibrations/{session_id}", "/calibrations/{session_id}",
           "/calibrations/{session_id}/calls/{call_id}"}
# Routes with no call or agent data, or that a supervisor's key cannot use at all.
NO_CALL_DATA = {
    "/openapi.json", "/docs", "/docs-assets", "/healthz", "/metrics", "/static", "/",
    "/v1/rubrics", "/v1/policy-packs", "/v1/rubrics/{rubric_id}/{version}",
    "/v1/policy-packs/{pack_id}/{version}",
    "/v1/keys", "/v1/keys/{key_id}", "/v1/audit", "/keys",  # admin only
    "/upload", "/upload/recent",  # a supervisor's key does not upload; a key lists the calls it uploaded
}
# Routes that change something, each with how a scoped key is kept to its teams.
CHANGES = {
    ("POST", "/v1/calls"): "a call id another team used answers 409 without the call (test_api)",
    ("POST", "/v1/calls/{call_id}/retry"): "readable_call: 404",
    ("POST", "/v1/calls/{call_id}/reviews"): "readable_call in add_review: 404",
    ("POST", "/calls/{call_id}/reviews"): "readable_call in add_review: 404",
    ("POST", "/v1/memberships"): "scoped keys refused",
    ("POST", "/v1/webhooks/telephony"): "telephony keys are never scoped",
    ("POST", "/v1/rubrics"): "no call data", ("POST", "/v1/policy-packs"): "no call data",
    ("POST", "/v1/rescores"): "qa keys start runs; reading them is refused to scoped keys",
    ("POST", "/v1/certifications"): "agents' records in, nothing read",
    ("POST", "/v1/training-records"): "agents' records in, nothing read",
    ("POST", "/v1/keys"): "admin only", ("POST", "/v1/keys/{key_id}/revoke"): "admin only",
    ("POST", "/upload"): "as POST /v1/calls (submit_call with may_read)",
    ("POST", "/keys"): "admin only", ("POST", "/keys/{key_id}/revoke"): "admin only",
    ("DELETE", "/v1/calls/{call_id}"): "admin only", ("DELETE", "/v1/calls"): "admin only",
    ("DELETE", "/v1/agents/{agent_id}/calls"): "admin only",
    ("POST", "/sign-in"): "no call data", ("POST", "/sign-out"): "no call data",
    ("POST", "/v1/calls/{call_id}/acknowledgement"): "agent keys only, own calls (readable_call: 404)",
    ("POST", "/calls/{call_id}/acknowledgement"): "agent keys only, own calls (readable_call: 404)",
    ("POST", "/v1/calls/{call_id}/disputes"): "agent keys only, own calls (readable_call: 404)",
    ("POST", "/calls/{call_id}/disputes"): "agent keys only, own calls (readable_call: 404)",
    ("POST", "/v1/disputes/{dispute_id}/resolution"): "readable_call of the dispute's call: 404",
    ("POST", "/disputes/{dispute_id}/resolution"): "readable_call of the dispute's call: 404",
    ("POST", "/v1/calibrations"): "readable_call on each call: 404; reviewers' scopes must hold every call",
    ("PUT", "/v1/calibrations/{session_id}/calls/{call_id}/answers"):
        "reviewers only; each was checked against the calls when the session opened",
    ("POST", "/v1/calibrations/{session_id}/close"): "readable_session: 403 when a call is outside the scope",
    ("POST", "/calibrations/{session_id}/calls/{call_id}"): "as the PUT of answers",
}


def test_every_route_has_a_scope_decision(site):
    routes = app_routes(site.app)
    gets = {path for method, path in routes if method == "GET"}
    undecided = sorted(gets - SCOPED - REFUSED - NO_CALL_DATA)
    assert undecided == [], "GET routes without a scope decision: add them to SCOPED, REFUSED or NO_CALL_DATA"
    others = {(method, path) for method, path in routes if method != "GET"}
    assert sorted(others - set(CHANGES)) == [], "routes that change data without a scope decision"
    # Nothing listed that the app no longer serves.
    assert (SCOPED | REFUSED | NO_CALL_DATA) <= gets and set(CHANGES) <= others


def _urls(site, template: str, team: str) -> list[str]:
    """Concrete URLs for a route template, naming team `team`'s calls, agent, team and vendor ("a" or
    "b"), with the listing filters that name them too."""
    ids = site.ids
    values = {
        "call_id": [ids[f"{team}1"], ids[f"{team}2"]] + ([ids["queued"]] if team == "b" else [ids["failed"]]),
        "agent_id": [f"agent-{team}"], "team": [TEAM_A if team == "a" else TEAM_B],
        "vendor": [VENDOR_A if team == "a" else VENDOR_B], "pack_id": ["fees"], "version": ["2026-10"],
        "run_id": ["00000000-0000-4000-8000-000000000000"],
    }
    names = re.findall(r"\{([^}]+)\}", template)
    urls = []
    for combo in product(*(values[n] for n in names)):
        url = template
        for name, value in zip(names, combo, strict=True):
            url = url.replace("{" + name + "}", value)
        urls.append(url)
    if not names:
        agent = f"agent-{team}"
        urls += [f"{template}?agent_id={agent}", f"{template}?team={values['team'][0]}",
                 f"{template}?vendor={values['vendor'][0]}"]
        if template == "/v1/calls":
            urls += ["/v1/calls?format=csv", "/v1/calls?page_size=500"]
        if template in ("/search", "/v1/search"):  # by external id, and by a word of every transcript
            urls += [f"{template}?q=ext-{team}1", f"{template}?q=thanks"]
        if template == "/certifications":
            urls += [f"/certifications?agent_id={agent}&within_days=3650"]
        if template == "/v1/certifications/expiring":
            urls += ["/v1/certifications/expiring?within_days=3650"]
    return urls


def _read(site, clients: dict[str, TestClient], url: str) -> tuple[int, str]:
    client = clients["api"] if url.startswith("/v1/") else clients["web"]
    r = client.get(url, follow_redirects=False)
    return r.status_code, r.content.decode("latin-1")


def test_a_key_scoped_to_team_a_gets_nothing_of_team_b(site):
    scoped = {"api": site.api("alpha"), "web": site.web("alpha")}
    everyone = {"api": site.api("supervisor"), "web": site.web("supervisor")}
    forbidden = site.team_b()
    leaks, unexercised, errors = [], [], []
    for template in sorted(SCOPED):
        scope_made_a_difference = False
        for url in _urls(site, template, "b"):
            status, body = _read(site, scoped, url)
            if status >= 500:
                errors.append((url, status))
            # What the reader sent may come back (an error naming the id asked for); nothing else may.
            shown = {x for x in forbidden if x in body and x not in url}
            if shown:
                leaks.append((url, status, sorted(shown)))
            if ("{call_id}" in template or "{agent_id}" in template) and status != 404:
                leaks.append((url, status, "not answered as unknown"))
            # Control: an unscoped key asking the same gets something else (team B's data), so the
            # request reached data the scope had to keep out.
            plain = _read(site, everyone, url)
            scope_made_a_difference |= plain[0] == 200 and plain != (status, body)
        if not scope_made_a_difference:
            unexercised.append(template)
    assert errors == []
    assert leaks == []
    assert unexercised == []


def test_a_key_scoped_to_team_a_reads_team_a(site):
    """The other half of the matrix: every scoped route answers the scoped key with its own team's data."""
    scoped = {"api": site.api("alpha"), "web": site.web("alpha")}
    mine = {site.ids["a1"], site.ids["a2"], "ext-a1", "agent-a", TEAM_A, VENDOR_A}
    silent = []
    for template in sorted(SCOPED):
        answers = [_read(site, scoped, url) for url in _urls(site, template, "a")]
        if not any(status == 200 and (template.endswith("/audio") or any(x in body for x in mine))
                   for status, body in answers):
            silent.append(template)
    assert silent == []
    for route in REFUSED:
        url = route.replace("{run_id}", "00000000-0000-4000-8000-000000000000").replace(
            "{session_id}", site.mixed_session).replace("{call_id}", site.ids["a1"])
        assert _read(site, scoped, url)[0] == 403


def test_a_scoped_key_reaches_its_own_calls_and_audio(site):
    api = site.api("alpha")
    assert api.get(f"/v1/calls/{site.ids['a2']}/audio").status_code == 200
    assert api.get(f"/v1/calls/{site.ids['b1']}/audio").status_code == 404
    assert site.api("supervisor").get(f"/v1/calls/{site.ids['b1']}/audio").status_code == 200
    queue = api.get("/v1/review-queue").json()
    assert queue["count"] > 0 and {c["agent_id"] for c in queue["calls"]} == {"agent-a"}
    everyone = site.api("supervisor").get("/v1/review-queue").json()
    assert {c["agent_id"] for c in everyone["calls"]} == {"agent-a", "agent-b"}


def test_scope_helpers_refuse_and_narrow():
    store = MemoryRepository()
    key = store.add_key("lead", "supervisor", "ab" * 32, scope=Scope(teams=("alpha",)))
    with pytest.raises(Forbidden):
        teams.unscoped_only(key, "a rescore run")
    with pytest.raises(NotFound):
        teams.readable_group(key, "team", "bravo")
    teams.readable_group(key, "vendor", "anyone")  # a team scope names no vendor
    assert teams.scoped(key, Filters(agent_id="x")).allowed == Scope(teams=("alpha",))


def test_policy_currency_names_only_the_scoped_teams_agents(site):
    everyone = site.api("supervisor").get("/v1/policy-currency").json()
    alpha = site.api("alpha").get("/v1/policy-currency").json()
    bravo_key = issue_key(site.repo, "supervisor", "bravo lead", Scope(teams=(TEAM_B,)))[1]
    bravo = TestClient(site.app, headers={"Authorization": f"Bearer {bravo_key}"}).get("/v1/policy-currency")
    # agent-a stated an outdated fee twice; agent-b never did.
    assert set(everyone["agents"]) == set(alpha["agents"]) == {"agent-a"}
    assert bravo.json()["agents"] == {}
    assert (alpha["calls_read"], bravo.json()["calls_read"], everyone["calls_read"]) == (4, 2, 6)
