"""Supervisor views: listings and aggregates over the latest scorecards, on SQLite and PostgreSQL.

The seeded calls are small but realistic scorecards stored through the repository; the expected
numbers below are worked out by hand from the table in `SEED`.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
import wave
from dataclasses import dataclass
from datetime import date

import pytest
from fastapi.testclient import TestClient

from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.settings import Settings
from qa_service.storage.repository import NewCall
from qa_service.storage.views import Filters

RUBRIC_YAML = "id: intake\nversion: '1'\ntitle: Intake\npass_mark: 70\ncriteria: []\n"
CHAT_RUBRIC_YAML = "id: chat-intake\nversion: '1'\ntitle: Chat intake\npass_mark: 70\ncriteria: []\n"
POLICY_YAML = "id: fees\nversion: '2026-10'\nfacts: []\n"

# id, title, section, points
CRITERIA = [
    ("greeting", "Greets the caller and names the company", "opening", 10),
    ("identity", "Checks who the caller is", "compliance", 20),
    ("disclosure", "Says the call is recorded", "compliance", 30),
    ("next_steps", "Explains the next steps", "closing", 40),
]
VIOLATIONS = {
    "guarantee": ("prohibited", "Promises a result", True),
    "rude": ("prohibited", "Talks down to the caller", False),
    "fee-amount": ("outdated_policy", "Application fee", False),
}

# The customer's real name appears only in the raw input, never in a scorecard.
RAW_NAME = "Marisol Quintanilla"
TRANSCRIPT = [
    ("agent", 0.4, 3.8, "Thanks for calling Harbourline, this call is recorded."),
    ("customer", 4.5, 8.9, "Hi, I'm <PERSON> and my reference is <ID_NUMBER>."),
    ("agent", 9.6, 13.2, "Thank you. Can you confirm your date of birth?"),
    ("customer", 13.0, 15.1, "It is <DATE_TIME>."),
    ("agent", 16.0, 21.5, "The fee is four hundred and fifty and we guarantee your permit."),
    ("agent", 22.0, 27.4, "The next step is the form; it usually takes twelve weeks."),
    ("customer", 28.0, 29.0, "Okay, thanks."),
]
# Which transcript segment proves each criterion and each violation.
EVIDENCE_SEGMENT = {"greeting": 0, "identity": 2, "disclosure": 0, "next_steps": 5}
VIOLATION_SEGMENT = {"guarantee": 4, "rude": 4, "fee-amount": 4}


@dataclass(frozen=True)
class Seed:
    """One stored call: which criteria passed (None = not applicable), violations, and the result."""

    key: str
    agent: str
    day: date
    passed: dict[str, bool | None]
    violations: tuple[str, ...]
    score: float
    ok: bool
    rubric: str = "intake"


ALL = {"greeting": True, "identity": True, "disclosure": True, "next_steps": True}
SEED = [
    Seed("a1", "agent-a", date(2026, 11, 2), ALL, (), 100.0, True),
    Seed("a2", "agent-a", date(2026, 11, 4),
         {"greeting": True, "identity": True, "disclosure": None, "next_steps": True}, ("guarantee",), 70.0,
         False),
    # a3 is scored twice: this first version must never count.
    Seed("a3-v1", "agent-a", date(2026, 11, 10), ALL, ("rude",), 100.0, True),
    Seed("a3", "agent-a", date(2026, 11, 10),
         {"greeting": True, "identity": False, "disclosure": True, "next_steps": False}, ("fee-amount",),
         40.0, False),
    Seed("a4", "agent-a", date(2026, 11, 12),
         {"greeting": False, "identity": True, "disclosure": True, "next_steps": True}, ("fee-amount",), 90.0,
         True),
    Seed("b1", "agent-b", date(2026, 11, 3),
         {"greeting": True, "identity": True, "disclosure": False, "next_steps": False}, (), 30.0, False),
    Seed("b2", "agent-b", date(2026, 11, 20), ALL, ("rude",), 100.0, True, rubric="chat-intake"),
]


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def make_scorecard(seed: Seed, call_id: str) -> dict:
    """A scorecard in format v1 as the pipeline writes it."""
    def ev(i: int) -> dict:
        speaker, start, end, text = TRANSCRIPT[i]
        return {"start": start, "end": end, "speaker": speaker, "text": text, "segments": [i]}

    criteria = []
    for cid, title, section, points in CRITERIA:
        verdict = seed.passed[cid]
        criteria.append({
            "id": cid, "title": title, "section": section, "passed": bool(verdict),
            "applicable": verdict is not None, "points": float(points) if verdict else 0.0,
            "max_points": float(points), "reason": "" if verdict else "not said by the agent",
            "evidence": [ev(EVIDENCE_SEGMENT[cid])] if verdict else [],
        })
    violations = []
    for vid in seed.violations:
        kind, title, auto_fail = VIOLATIONS[vid]
        violations.append({
            "id": vid, "kind": kind, "policy_id": vid if kind == "outdated_policy" else None, "title": title,
            "auto_fail": auto_fail,
            "detail": "stated 450 for application fee; that value applied until 2026-06-30" if kind ==
            "outdated_policy" else "said by the agent",
            **ev(VIOLATION_SEGMENT[vid]),
        })
    return {
        "format": "scorecard/v1", "call_id": seed.key, "agent_id": seed.agent,
        "call_date": seed.day.isoformat(), "duration_s": 30.0, "language": "en",
        "rubric": {"id": seed.rubric, "version": "1", "sha256": sha(RUBRIC_YAML)},
        "policies": {"id": "fees", "version": "2026-10", "sha256": sha(POLICY_YAML)},
        "models": {"asr": {"name": "tiny.en"}, "source": "audio"},
        "transcript": [{"speaker": s, "start": a, "end": b, "text": x} for s, a, b, x in TRANSCRIPT],
        "redactions": [{"entity_type": "PERSON", "start": 4.9, "end": 5.6, "speaker": "customer"}],
        "criteria": criteria, "violations": violations, "sections": {},
        "to_check": [{"id": "processing-weeks", "kind": "outdated_policy", "policy_id": "processing-weeks",
                      "title": "Processing time", "auto_fail": False,
                      "detail": "stated 12 weeks for processing time; not counted: the recogniser was unsure "
                                "of the number (confidence 0.21)", **ev(5)}] if seed.violations else [],
        "metrics": {"talk_time_s": {"agent": 16.4, "customer": 7.5}, "silence_s": 4.1,
                    "longest_silence_s": 0.8, "overtalk_s": 0.2, "agent_talk_ratio": 0.686,
                    "words_per_minute": {"agent": 150.0, "customer": 120.0},
                    "interruptions": {"agent": 1, "customer": 0}},
        "warnings": [], "score": seed.score, "auto_fail": any(VIOLATIONS[v][2] for v in seed.violations),
        "passed": seed.ok,
    }


def silent_wav(seconds: float = 1.0) -> bytes:
    """A short silent 8 kHz WAV, standing in for a redacted recording."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))
    return buf.getvalue()


def seed_calls(repo, storage_dir=None) -> dict[str, str]:
    """Store the SEED calls (plus one queued and one failed call); returns call ids by key."""
    repo.put_rules("rubric", "intake", "1", sha(RUBRIC_YAML), RUBRIC_YAML)
    repo.put_rules("rubric", "chat-intake", "1", sha(CHAT_RUBRIC_YAML), CHAT_RUBRIC_YAML)
    repo.put_rules("policy_pack", "fees", "2026-10", sha(POLICY_YAML), POLICY_YAML)
    ids: dict[str, str] = {}

    def add(key: str, agent: str, day: date, rubric: str = "intake") -> str:
        call_id = str(uuid.uuid4())
        input_path = None
        if storage_dir is not None:
            folder = storage_dir / call_id
            folder.mkdir(parents=True, exist_ok=True)
            input_path = folder / "input.txt"
            input_path.write_text(f"Customer: Hi, I'm {RAW_NAME}.\nAgent: Thanks for calling.\n")
        repo.add_call(NewCall(id=call_id, external_id=f"ext-{key}", agent_id=agent, call_date=day,
                              rubric_id=rubric, rubric_version="1", policy_pack_id="fees",
                              policy_pack_version="2026-10", input_kind="transcript",
                              input_path=str(input_path) if input_path else None))
        ids[key] = call_id
        return call_id

    for s in SEED:
        key = s.key.split("-v")[0]
        call_id = ids.get(key) or add(key, s.agent, s.day, s.rubric)
        repo.start_call(call_id)
        repo.finish_call(call_id, make_scorecard(s, f"ext-{key}"))
    add("queued", "agent-b", date(2026, 11, 21))
    failed = add("failed", "agent-a", date(2026, 11, 13))
    repo.start_call(failed)
    repo.fail_call(failed, "the recording could not be decoded")
    return ids


# -- the views over the database -----------------------------------------------------------------

@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path_factory):
    """One database per backend for the whole module: every test here only reads."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('views') / 'qa.db'}"
        return
    import sqlalchemy as sa

    base = request.getfixturevalue("pg_database")
    schema = f"v_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield sa.engine.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"}) \
            .render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(scope="module")
def stored(db_url):
    """The seeded repository and the ids of its calls."""
    from qa_service.storage import open_repository

    repo = open_repository(db_url)
    ids = seed_calls(repo)
    yield repo, ids
    repo.dispose()


@pytest.fixture
def seeded(stored):
    repo, ids = stored
    return repo.views, ids, repo


def test_totals_use_only_the_latest_version(seeded):
    views, _ids, _repo = seeded
    totals = views.totals(Filters(agent_id="agent-a"))
    assert totals.count == 4
    assert totals.mean_score == 75.0
    assert totals.pass_rate == 0.5
    assert totals.auto_fail_count == 1
    # a3's first version had a "rude" violation; only its latest (fee-amount) counts.
    assert totals.violations == {"prohibited": 1, "outdated_policy": 2}


def test_agents_list_per_agent_with_date_range(seeded):
    views, _ids, _repo = seeded
    rows = {a.agent_id: a.totals for a in views.agents(Filters())}
    assert set(rows) == {"agent-a", "agent-b"}
    assert (rows["agent-b"].count, rows["agent-b"].mean_score, rows["agent-b"].pass_rate) == (2, 65.0, 0.5)
    assert rows["agent-b"].violations == {"prohibited": 1, "outdated_policy": 0}
    ranged = {a.agent_id: a.totals for a in views.agents(Filters(date_from=date(2026, 11, 4),
                                                                  date_to=date(2026, 11, 10)))}
    assert set(ranged) == {"agent-a"}
    assert (ranged["agent-a"].count, ranged["agent-a"].mean_score) == (2, 55.0)


def test_weekly_trend_groups_by_iso_week(seeded):
    views, _ids, _repo = seeded
    trend = views.weekly_trend(Filters(agent_id="agent-a"))
    assert [(w.week, w.week_start, w.count, w.mean_score, w.pass_rate) for w in trend] == [
        ("2026-W45", date(2026, 11, 2), 2, 85.0, 0.5),
        ("2026-W46", date(2026, 11, 9), 2, 65.0, 0.5),
    ]


def test_criterion_rates_skip_calls_where_the_criterion_did_not_apply(seeded):
    views, _ids, _repo = seeded
    rates = {c.id: c for c in views.criterion_rates(Filters(agent_id="agent-a"))}
    assert [c.id for c in views.criterion_rates(Filters(agent_id="agent-a"))] == \
        ["greeting", "identity", "disclosure", "next_steps"]  # rubric order, not alphabetical
    assert (rates["greeting"].passed, rates["greeting"].total) == (3, 4)
    disclosure = rates["disclosure"]
    assert (disclosure.passed, disclosure.total, disclosure.pass_rate) == (3, 3, 1.0)
    assert rates["next_steps"].pass_rate == 0.75
    assert rates["identity"].title == "Checks who the caller is"


def test_call_list_filters_and_pages(seeded):
    views, ids, _repo = seeded
    # Newest call date first, page after page by cursor, without repeats; the last page has no cursor.
    seen, cursor, pages = [], None, 0
    while True:
        page = views.calls(Filters(), cursor, page_size=3)
        seen += [c.call_id for c in page.items]
        pages += 1
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert pages == 3 and len(seen) == len(set(seen)) == 8
    assert seen[0] == ids["queued"] and seen[1] == ids["b2"]
    assert [(c.call_date, c.created_at) for c in views.calls(Filters(), page_size=8).items] == sorted(
        ((c.call_date, c.created_at) for c in views.calls(Filters(), page_size=8).items), reverse=True)
    # Exactly a page's worth: no cursor to an empty page.
    assert views.calls(Filters(), page_size=8).next_cursor is None
    assert views.calls(Filters(), page_size=7).next_cursor is not None
    # A cursor keeps its place when a newer call arrives: nothing repeats, nothing is skipped.
    first = views.calls(Filters(agent_id="agent-a"), page_size=2)
    rest = views.calls(Filters(agent_id="agent-a"), first.next_cursor, page_size=10)
    assert len({c.call_id for c in [*first.items, *rest.items]}) == 5 and rest.next_cursor is None

    failing = views.calls(Filters(agent_id="agent-a", verdict="fail"))
    assert {c.call_id for c in failing.items} == {ids["a2"], ids["a3"]}
    passing = views.calls(Filters(agent_id="agent-a", verdict="pass"))
    assert {c.call_id for c in passing.items} == {ids["a1"], ids["a4"]}

    fee = views.calls(Filters(violation="fee-amount"))
    assert {c.call_id for c in fee.items} == {ids["a3"], ids["a4"]}
    # a3's first version said something rude; its latest did not.
    assert {c.call_id for c in views.calls(Filters(violation="rude")).items} == {ids["b2"]}
    assert views.calls(Filters(violation="no-such-thing")).items == []

    ranged = views.calls(Filters(date_from=date(2026, 11, 10), date_to=date(2026, 11, 13)))
    assert {c.call_id for c in ranged.items} == {ids["a3"], ids["a4"], ids["failed"]}
    [failed] = views.calls(Filters(status="failed")).items
    assert failed.failure_reason == "the recording could not be decoded"
    assert {c.call_id for c in views.calls(Filters(rubric_id="chat-intake")).items} == {ids["b2"]}


def test_call_rows_carry_the_latest_verdict(seeded):
    views, ids, _repo = seeded
    rows = {c.call_id: c for c in views.calls(Filters(), page_size=50).items}
    a3 = rows[ids["a3"]]
    assert (a3.version, a3.score, a3.passed, a3.violation_count, a3.status) == (2, 40.0, False, 1, "done")
    queued = rows[ids["queued"]]
    assert (queued.status, queued.score, queued.passed, queued.violation_count) == \
        ("queued", None, None, None)


def test_agent_report_scope_and_list_narrowing(seeded):
    views, ids, _repo = seeded
    report = views.agent_report("agent-a", Filters(verdict="fail"), page_size=1)
    # aggregate covers the whole scope; the verdict narrows only the list
    assert report.totals.count == 4
    assert len(report.calls.items) == 1 and report.calls.next_cursor is not None
    assert report.calls.items[0].call_id == ids["a3"]  # newest first
    after = views.agent_report("agent-a", Filters(verdict="fail"), report.calls.next_cursor, page_size=1)
    assert [c.call_id for c in after.calls.items] == [ids["a2"]] and after.calls.next_cursor is None


def test_violation_choices_and_counts(seeded):
    views, _ids, _repo = seeded
    assert [v[0] for v in views.violation_ids()] == ["fee-amount", "guarantee", "rude"]
    counts = views.counts()
    assert counts.calls_by_status == {"done": 6, "queued": 1, "failed": 1}
    assert (counts.scorecards, counts.scored_calls) == (7, 6)


def test_export_streams_latest_scorecards(seeded):
    views, ids, _repo = seeded
    rows = list(views.scorecards(Filters(agent_id="agent-a")))
    assert [r.call_id for r, _ in rows] == [ids["a4"], ids["a3"], ids["a2"], ids["a1"]]
    assert rows[1][1]["score"] == 40.0


# -- the HTTP routes -------------------------------------------------------------------------------

class Client:
    def __init__(self, settings, repo, ids):
        self.app = create_app(settings, repo=repo)
        self.repo = repo
        self.client = TestClient(self.app)
        self.keys = {r: create_key(repo, r, f"{r} key") for r in ("admin", "qa", "telephony", "supervisor")}
        self.ids = ids

    def get(self, url: str, role: str | None = "supervisor", **kw):
        headers = {"Authorization": f"Bearer {self.keys[role]}"} if role else {}
        return self.client.get(url, headers=headers, **kw)


@pytest.fixture(scope="module")
def api(stored, db_url, tmp_path_factory):
    repo, ids = stored
    folder = tmp_path_factory.mktemp("views-app")
    settings = Settings(database_url=db_url, storage_dir=folder / "storage",
                        model_cache_dir=folder / "models")
    return Client(settings, repo, ids)


@pytest.mark.parametrize("url", [
    "/v1/agents", "/v1/agents/agent-a/summary", "/v1/agents/agent-a/scorecards.csv", "/v1/calls",
    "/v1/calls?format=csv",
])
def test_views_need_a_reading_role(api, url):
    assert api.get(url, role=None).status_code == 401
    assert api.get(url, role="telephony").status_code == 403
    for role in ("supervisor", "qa", "admin"):
        assert api.get(url, role=role).status_code == 200, (role, url)


def test_agents_endpoint(api):
    r = api.get("/v1/agents?from=2026-11-01&to=2026-11-30")
    assert r.status_code == 200
    body = r.json()
    assert body["from"] == "2026-11-01"
    a = {x["agent_id"]: x for x in body["agents"]}["agent-a"]
    assert a == {"agent_id": "agent-a", "calls": 4, "mean_score": 75.0, "pass_rate": 0.5, "auto_fails": 1,
                 "provisional": 0, "violations": {"prohibited": 1, "outdated_policy": 2}}


def test_agent_summary_endpoint(api):
    first = api.get("/v1/agents/agent-a/summary?verdict=fail&page_size=1").json()
    assert [s["call_id"] for s in first["scorecards"]] == [api.ids["a3"]] and first["next_cursor"]
    r = api.get("/v1/agents/agent-a/summary", params={"verdict": "fail", "page_size": 1,
                                                       "cursor": first["next_cursor"]})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["aggregate"]["count"] == 4 and body["aggregate"]["violations"]["outdated_policy"] == 2
    assert [w["week"] for w in body["trend"]] == ["2026-W45", "2026-W46"]
    assert body["trend"][0] == {"week": "2026-W45", "week_start": "2026-11-02", "count": 2,
                                "mean_score": 85.0, "pass_rate": 0.5}
    crit = {c["id"]: c for c in body["criteria"]}
    assert crit["disclosure"]["pass_rate"] == 1.0 and crit["disclosure"]["calls"] == 3
    assert (body["page_size"], body["next_cursor"]) == (1, None)
    assert [s["call_id"] for s in body["scorecards"]] == [api.ids["a2"]]
    assert body["scorecards"][0]["violations"] == 1 and body["scorecards"][0]["passed"] is False


def test_agent_summary_violation_and_rubric_filters(api):
    body = api.get("/v1/agents/agent-a/summary?violation=fee-amount&rubric_id=intake").json()
    assert {s["call_id"] for s in body["scorecards"]} == {api.ids["a3"], api.ids["a4"]}
    assert api.get("/v1/agents/agent-b/summary?rubric_id=chat-intake").json()["aggregate"]["count"] == 1


@pytest.mark.parametrize(("query", "field"), [
    ("verdict=maybe", "verdict"), ("from=2026-13-01", "from"), ("page=2", "cursor"),
    ("page_size=100000", "page_size"), ("cursor=bm90LWEtY3Vyc29y", "cursor"), ("cursor=%%%", "cursor"),
])
def test_bad_query_is_422_naming_the_field(api, query, field):
    r = api.get(f"/v1/calls?{query}")
    assert r.status_code == 422
    assert field in r.json()["detail"]


def test_from_after_to_is_422(api):
    r = api.get("/v1/agents?from=2026-12-01&to=2026-11-01")
    assert r.status_code == 422 and "from" in r.json()["detail"]


def test_calls_endpoint(api):
    body = api.get("/v1/calls?agent_id=agent-a&page_size=2").json()
    assert (body["page_size"], len(body["items"])) == (2, 2) and body["next_cursor"]
    listed = [c["call_id"] for c in body["items"]]
    while body["next_cursor"]:
        body = api.get("/v1/calls", params={"agent_id": "agent-a", "page_size": 2,
                                            "cursor": body["next_cursor"]}).json()
        listed += [c["call_id"] for c in body["items"]]
    assert len(listed) == len(set(listed)) == 5
    body = api.get("/v1/calls?agent_id=agent-a&page_size=2").json()
    first = body["items"][0]
    assert first["call_id"] == api.ids["failed"] and first["status"] == "failed" and first["score"] is None
    assert first["scorecard_url"] is None
    body = api.get("/v1/calls?violation=guarantee").json()
    assert [c["call_id"] for c in body["items"]] == [api.ids["a2"]]
    assert body["items"][0]["scorecard_url"] == f"/v1/calls/{api.ids['a2']}/scorecard"
    assert len(api.get("/v1/calls?status=queued").json()["items"]) == 1


def test_csv_export_columns(api):
    r = api.get("/v1/agents/agent-a/scorecards.csv?from=2026-11-01")
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert list(rows[0]) == ["call_id", "external_id", "agent_id", "call_date", "rubric_id", "rubric_version",
                             "scorecard_version", "score", "passed", "auto_fail", "prohibited",
                             "outdated_policy", "violation_ids", "failed_criteria"]
    by_id = {row["call_id"]: row for row in rows}
    assert set(by_id) == {api.ids[k] for k in ("a1", "a2", "a3", "a4")}
    a3 = by_id[api.ids["a3"]]
    assert (a3["score"], a3["passed"], a3["scorecard_version"], a3["violation_ids"]) == ("40.0", "false", "2",
                                                                                         "fee-amount")
    assert a3["failed_criteria"] == "identity;next_steps"
    assert by_id[api.ids["a2"]]["failed_criteria"] == ""  # disclosure did not apply, so it did not fail

    calls_csv = api.get("/v1/calls?format=csv&verdict=fail")
    assert {row["call_id"] for row in csv.DictReader(io.StringIO(calls_csv.text))} == \
        {api.ids[k] for k in ("a2", "a3", "b1")}


def test_csv_file_name_stays_ascii_for_any_agent_id(api):
    r = api.get("/v1/agents/agént-ü 李/scorecards.csv")
    assert r.status_code == 200
    assert r.headers["content-disposition"] == 'attachment; filename="ag_nt-___-scorecards.csv"'
    assert r.text.strip().split(",")[0] == "call_id"  # header row only: no such agent
