"""Human review: reviewed verdicts over automatic ones, review sampling, review storage and the API."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from pydantic import ValidationError

from qa_service.review import (
    Review,
    ReviewError,
    apply_reviews,
    check_review,
    needs_review,
    rubric_terms,
    sample_fraction,
)
from qa_service.settings import Settings

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def card(**over) -> dict:
    """A scorecard: three criteria (20 + 30 + 50 points), one auto-fail violation."""
    base = {
        "call_id": "c1", "score": 50.0, "passed": False, "auto_fail": True,
        "criteria": [
            {"id": "greet", "passed": True, "applicable": True, "points": 20.0, "max_points": 20.0},
            {"id": "verify", "passed": True, "applicable": True, "points": 30.0, "max_points": 30.0},
            {"id": "close", "passed": False, "applicable": True, "points": 0.0, "max_points": 50.0},
        ],
        "violations": [{"id": "guarantee", "kind": "prohibited", "auto_fail": True, "text": "we guarantee"}],
    }
    base.update(over)
    return base


V, C = "violation", "criterion"


def rv(kind: str, target: str, action: str, minutes: int = 0, reason: str = "checked the audio",
       who: str = "Ana") -> Review:
    return Review(call_id="c1", scorecard_version=1, target_kind=kind, target_id=target,  # type: ignore[arg-type]
                  action=action, reason=reason, reviewer_key_id=str(uuid.uuid5(uuid.NAMESPACE_OID, who)),  # type: ignore[arg-type]
                  reviewer_name=who, created_at=T0 + timedelta(minutes=minutes))


@pytest.mark.parametrize(("reviews", "score", "auto_fail", "passed"), [
    ([], 50.0, True, False),
    # Dismissing the only auto-fail violation: the score (50) is still under the pass mark (60).
    ([rv(V, "guarantee", "dismiss")], 50.0, False, False),
    ([rv(V, "guarantee", "dismiss"), rv(C, "close", "override_pass", 1)], 100.0, False, True),
    ([rv(C, "close", "override_pass")], 100.0, True, False),
    ([rv(C, "greet", "override_fail"), rv(V, "guarantee", "dismiss", 1)], 30.0, False, False),
    # The newest review of a target wins; restore returns to the automatic verdict.
    ([rv(V, "guarantee", "dismiss"), rv(V, "guarantee", "restore", 5)], 50.0, True, False),
    ([rv(C, "close", "override_pass"), rv(C, "close", "restore", 5)], 50.0, True, False),
    # Order is by time, not by the order given.
    ([rv(C, "close", "restore", 5), rv(C, "close", "override_pass")], 50.0, True, False),
    # Auto-fail criterion: failing it by review fails the call.
    ([rv(V, "guarantee", "dismiss"), rv(C, "close", "override_pass", 1),
      rv(C, "verify", "override_fail", 2)], 70.0, True, False),
])
def test_apply_reviews_recomputes_the_reviewed_verdict(reviews, score, auto_fail, passed):
    original = card()
    out = apply_reviews(original, reviews, pass_mark=60.0, auto_fail_criteria={"verify"})
    assert out["review"]["reviewed_score"] == score
    assert out["review"]["reviewed_auto_fail"] is auto_fail
    assert out["review"]["reviewed_passed"] is passed
    # The automatic verdict stays as it was, and the input is not touched.
    assert (out["score"], out["passed"], out["auto_fail"]) == (50.0, False, True)
    assert original == card() and "review" not in original


def test_review_items_keep_automatic_and_reviewed_verdicts_and_history():
    reviews = [rv("criterion", "close", "override_pass", 0, "said in other words", "Ana"),
               rv("criterion", "close", "override_fail", 3, "second listen: not said", "Ben"),
               rv("violation", "guarantee", "dismiss", 4, "negated: nobody can guarantee", "Ben")]
    out = apply_reviews(card(), reviews, pass_mark=60.0)
    items = {i["id"]: i for i in out["review"]["items"]}
    close = items["close"]
    assert (close["automatic"], close["reviewed"], close["action"]) == ("fail", "fail", "override_fail")
    assert close["reviewer"]["name"] == "Ben" and close["reason"] == "second listen: not said"
    assert [h["action"] for h in close["history"]] == ["override_pass", "override_fail"]
    assert [h["reviewer"] for h in close["history"]] == ["Ana", "Ben"]
    assert (items["guarantee"]["automatic"], items["guarantee"]["reviewed"]) == ("violation", "dismissed")
    assert out["review"]["reviewed"] is True and out["review"]["stale"] == []


def test_reviews_of_targets_not_on_the_scorecard_are_kept_as_stale():
    out = apply_reviews(card(), [rv("violation", "gone-after-rescore", "dismiss")], pass_mark=60.0)
    assert out["review"]["items"] == []
    assert [s["id"] for s in out["review"]["stale"]] == ["gone-after-rescore"]
    assert out["review"]["reviewed_score"] == 50.0


def test_override_of_a_criterion_that_did_not_apply_counts_it():
    c = card(criteria=[
        {"id": "a", "passed": True, "applicable": True, "points": 10.0, "max_points": 10.0},
        {"id": "b", "passed": False, "applicable": False, "points": 0.0, "max_points": 10.0}],
        violations=[], score=100.0, auto_fail=False, passed=True)
    out = apply_reviews(c, [rv("criterion", "b", "override_fail")], pass_mark=80.0)
    assert out["review"]["reviewed_score"] == 50.0 and out["review"]["reviewed_passed"] is False


def test_without_a_pass_mark_an_unchanged_verdict_is_kept_and_a_changed_one_is_unknown():
    assert apply_reviews(card(), [])["review"]["reviewed_passed"] is False
    out = apply_reviews(card(), [rv("violation", "guarantee", "dismiss")])
    assert out["review"]["reviewed_passed"] is None


@pytest.mark.parametrize(("kind", "action", "reason", "ok"), [
    ("criterion", "override_pass", "heard it", True),
    ("criterion", "override_fail", "x", True),
    ("criterion", "restore", "x", True),
    ("violation", "dismiss", "x", True),
    ("violation", "restore", "x", True),
    ("criterion", "dismiss", "x", False),
    ("violation", "override_pass", "x", False),
    ("section", "restore", "x", False),
    ("criterion", "override_pass", "   ", False),
    ("violation", "dismiss", "", False),
    ("violation", "dismiss", "x" * 2000, True),
    ("violation", "dismiss", "x" * 2001, False),
])
def test_check_review(kind, action, reason, ok):
    if ok:
        check_review(kind, action, reason)
    else:
        with pytest.raises(ReviewError):
            check_review(kind, action, reason)


def test_rubric_terms_reads_pass_mark_and_auto_fail_criteria():
    text = "id: r\nversion: '1'\npass_mark: 75\ncriteria:\n  - id: a\n    auto_fail: true\n  - id: b\n"
    assert rubric_terms(text) == (75.0, frozenset({"a"}))
    assert rubric_terms("- just a list") == (None, frozenset())


# -- sampling ----------------------------------------------------------------------------------

def test_sampling_is_deterministic_and_depends_on_agent_and_week():
    d = date(2026, 11, 4)
    cid = "7d1f4a52-0000-4000-8000-000000000001"
    assert sample_fraction(cid, "agent-1", d) == sample_fraction(cid, "agent-1", d)
    # Same ISO week (Mon 2 Nov .. Sun 8 Nov): same number; another week or agent: another number.
    assert sample_fraction(cid, "agent-1", date(2026, 11, 8)) == sample_fraction(cid, "agent-1", d)
    assert sample_fraction(cid, "agent-1", date(2026, 11, 9)) != sample_fraction(cid, "agent-1", d)
    assert sample_fraction(cid, "agent-2", d) != sample_fraction(cid, "agent-1", d)
    assert 0.0 <= sample_fraction(cid, "agent-1", d) < 1.0


@pytest.mark.parametrize("share", [0.0, 0.05, 0.10, 0.25, 1.0])
def test_sampling_share_is_respected_per_agent_and_week(share):
    n = 4000
    for agent in ("agent-a", "agent-b"):
        picked = sum(needs_review(str(uuid.UUID(int=i + 1)), agent, date(2026, 11, 3), False, share)
                     for i in range(n))
        # Binomial standard deviation at n=4000 is at most 0.8%; allow four of them.
        assert abs(picked / n - share) <= 0.032
    if share == 0.0:
        assert picked == 0
    if share == 1.0:
        assert picked == n


def test_every_auto_fail_is_marked_for_review():
    ids = [str(uuid.UUID(int=i + 1)) for i in range(500)]
    assert all(needs_review(c, "agent-a", date(2026, 11, 3), True, 0.0) for c in ids)


@pytest.mark.parametrize(("env", "share"), [
    ({}, 0.10), ({"QA_REVIEW_SHARE": "0.25"}, 0.25), ({"QA_REVIEW_SHARE": "5%"}, 0.05),
    ({"QA_REVIEW_SHARE": "0"}, 0.0), ({"QA_REVIEW_SHARE": " "}, 0.10),
])
def test_review_share_setting(env, share, monkeypatch):
    monkeypatch.delenv("QA_REVIEW_SHARE", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert Settings().review_share == pytest.approx(share)


@pytest.mark.parametrize("bad", ["ten", "1.5", "-0.1", "150%"])
def test_bad_review_share_is_a_clear_error(bad, monkeypatch):
    monkeypatch.setenv("QA_REVIEW_SHARE", bad)
    with pytest.raises(ValidationError, match="QA_REVIEW_SHARE"):
        Settings()


# -- storage (SQLite and PostgreSQL) -----------------------------------------------------------

@pytest.fixture
def repo(database_url):
    from qa_service.storage import open_repository

    r = open_repository(database_url)
    yield r
    r.dispose()


def stored_call(repo, *, agent: str = "agent-1", day: date = date(2026, 11, 3),
                auto_fail: bool = False) -> str:
    from qa_service.storage import NewCall

    call, _ = repo.add_call(NewCall(id=str(uuid.uuid4()), agent_id=agent, call_date=day, rubric_id="r1",
                                    rubric_version="1", policy_pack_id="p1", policy_pack_version="1"))
    repo.finish_call(call.id, card(call_id=call.id, auto_fail=auto_fail))
    return call.id


def test_reviews_are_stored_in_order_and_kept(repo):

    cid = stored_call(repo)
    first = repo.reviews.add(Review(**{**rv(C, "close", "override_pass").__dict__, "call_id": cid}))
    second = repo.reviews.add(Review(**{**rv(C, "close", "restore", 2, who="Ben").__dict__,
                                               "call_id": cid}))
    assert second.id > first.id > 0
    got = repo.reviews.for_call(cid)
    assert [(r.action, r.reviewer_name, r.reason) for r in got] == [
        ("override_pass", "Ana", "checked the audio"), ("restore", "Ben", "checked the audio")]
    assert got[0].created_at == T0 and got[0].created_at.tzinfo is not None
    assert repo.reviews.for_call(stored_call(repo)) == []


def test_a_review_of_an_unknown_call_is_not_found(repo):
    from qa_service.errors import NotFound

    with pytest.raises(NotFound):
        repo.reviews.add(Review(**{**rv(V, "x", "dismiss").__dict__, "call_id": str(uuid.uuid4())}))


def test_the_database_refuses_an_empty_reason(repo):
    import sqlalchemy as sa


    cid = stored_call(repo)
    with pytest.raises(sa.exc.IntegrityError):
        repo.reviews.add(Review(**{**rv(V, "x", "dismiss", reason="  ").__dict__, "call_id": cid}))


def test_queue_candidates_skip_reviewed_calls_and_filter(repo):

    a1 = stored_call(repo, agent="a", auto_fail=True)
    a2 = stored_call(repo, agent="a", day=date(2026, 11, 20))
    b1 = stored_call(repo, agent="b")
    repo.reviews.add(Review(**{**rv(V, "guarantee", "dismiss").__dict__, "call_id": b1}))
    assert repo.reviews.reviewed_call_ids([a1, a2, b1]) == {b1}
    everything = {c.call_id: c for c in repo.reviews.queue_candidates()}
    assert set(everything) == {a1, a2}
    assert everything[a1].auto_fail and not everything[a2].auto_fail
    early = repo.reviews.queue_candidates(agent_id="a", date_to=date(2026, 11, 10))
    assert [c.call_id for c in early] == [a1]
    assert [c.call_id for c in repo.reviews.queue_candidates(date_from=date(2026, 11, 10))] == [a2]


def queue_walk(store, key, page_size: int = 2, **narrowing) -> list[str]:
    """Every call of the review queue (share 0: the auto-fails), read a page at a time."""
    from qa_service.services import reviews

    seen: list[str] = []
    cursor = None
    while True:
        page = reviews.review_queue(store=store, key=key, share=0.0, cursor=cursor, page_size=page_size,
                                    **narrowing)
        assert len(page.items) <= page_size and page.page_size == page_size
        seen += [c["call_id"] for c in page.items]
        cursor = page.next_cursor
        if cursor is None:
            return seen


def seed_queue(store) -> dict[str, list[str]]:
    """Waiting calls of agents a (team alpha) and b (team bravo), several on one day, with calls that do
    not wait and a reviewed one between them; the earliest day's call is stored last."""
    from qa_service.services import teams
    from qa_service.storage.repository import Membership

    teams.put_memberships(store=store, items=[
        Membership(agent_id="a", team="alpha", vendor="one", since=date(2026, 1, 1)),
        Membership(agent_id="b", team="bravo", vendor="two", since=date(2026, 1, 1))])
    day, later, earliest = date(2026, 11, 3), date(2026, 11, 4), date(2026, 11, 2)
    waiting = {"a": [], "b": []}
    for agent, when, fails in [("a", day, True), ("b", day, True), ("a", day, False), ("a", day, True),
                               ("b", later, True), ("a", day, True), ("b", day, False), ("b", day, True),
                               ("a", later, True), ("b", earliest, True)]:
        call_id = stored_call(store, agent=agent, day=when, auto_fail=fails)
        if fails:
            waiting[agent].append(call_id)
    reviewed = stored_call(store, agent="a", day=day, auto_fail=True)
    store.reviews.add(Review(**{**rv(V, "guarantee", "dismiss").__dict__, "call_id": reviewed}))
    return waiting


def queue_order(store, call_ids) -> list[str]:
    """The calls in the queue's order: call date, time received, call id."""
    calls = [store.get_call(i) for i in call_ids]
    return [c.id for c in sorted(calls, key=lambda c: (c.call_date, c.created_at, c.id))]


def admin_key(scope=None):
    from qa_service.storage.repository import StoredKey

    return StoredKey(id="k-admin", name="admin key", role="admin", key_hash="h", created_at=T0, revoked=False,
                     scope=scope)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres), "memory"])
def queue_store(request):
    """The SQL repository on SQLite and PostgreSQL, and its in-memory twin."""
    from qa_service.storage import open_repository
    from qa_service.storage.memory import MemoryRepository

    if request.param == "memory":
        yield MemoryRepository()
        return
    r = open_repository(str(request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")))
    yield r
    r.dispose()


def test_queue_pages_give_every_waiting_call_once_oldest_first(queue_store):
    from qa_service.storage.repository import Scope

    waiting = seed_queue(queue_store)
    everyone = queue_order(queue_store, waiting["a"] + waiting["b"])
    assert queue_walk(queue_store, admin_key()) == everyone
    assert queue_walk(queue_store, admin_key(), page_size=3) == everyone
    assert everyone[0] == waiting["b"][-1]  # the earliest call date first, though stored last
    # A scoped key's pages hold its teams' calls only, and every one of them.
    alpha = admin_key(Scope(teams=("alpha",)))
    assert queue_walk(queue_store, alpha) == queue_order(queue_store, waiting["a"])
    # Narrowed to a team, a reason or an agent, every page keeps the narrowing.
    assert queue_walk(queue_store, admin_key(), group=Scope(teams=("bravo",))) == \
        queue_order(queue_store, waiting["b"])
    assert queue_walk(queue_store, admin_key(), why="auto_fail") == everyone
    assert queue_walk(queue_store, admin_key(), why="sampled") == []
    assert queue_walk(queue_store, admin_key(), agent_id="b") == queue_order(queue_store, waiting["b"])


def test_queue_candidates_start_strictly_after_a_key(queue_store):
    waiting = seed_queue(queue_store)
    every = list(queue_store.reviews.queue_candidates())
    assert [c.call_id for c in every] == queue_order(queue_store, [c.call_id for c in every])
    for k in (0, 3, len(every) - 1):
        after = list(queue_store.reviews.queue_candidates(after=every[k].key))
        assert [c.call_id for c in after] == [c.call_id for c in every[k + 1:]]
    assert len(every) == len(waiting["a"]) + len(waiting["b"]) + 2  # the two calls that do not wait


def test_queue_candidates_are_read_in_keyset_batches(repo):
    from qa_service.storage.review import queue_candidates

    seed_queue(repo)
    every = [c.call_id for c in repo.reviews.queue_candidates()]
    assert [c.call_id for c in queue_candidates(repo.engine, batch=2)] == every
    assert [c.call_id for c in queue_candidates(repo.engine, batch=3)] == every


def test_a_queue_cursor_of_another_listing_is_refused():
    from qa_service.errors import InputError
    from qa_service.services import reviews
    from qa_service.storage.memory import MemoryRepository
    from qa_service.storage.paging import encode

    calls_cursor = encode("calls", (date(2026, 11, 3), T0, str(uuid.uuid4())))
    for cursor in (calls_cursor, "garbled"):
        with pytest.raises(InputError, match="not one this listing gave"):
            reviews.review_queue(store=MemoryRepository(), key=admin_key(), share=0.0, cursor=cursor)


# -- API ---------------------------------------------------------------------------------------

API_CARD = {
    "format": "scorecard/v1", "score": 25.0, "passed": False, "auto_fail": True,
    "rubric": {"id": "harbourline-intake", "version": "2026.10"},
    "transcript": [{"speaker": "agent", "start": 0.0, "end": 2.0, "text": "we guarantee approval"}],
    "criteria": [
        {"id": "greeting", "passed": True, "applicable": True, "points": 10.0, "max_points": 10.0},
        {"id": "recording_notice", "passed": False, "applicable": True, "points": 0.0, "max_points": 10.0},
        {"id": "identity_check", "passed": False, "applicable": True, "points": 0.0, "max_points": 20.0},
    ],
    "violations": [{"id": "promises_result", "kind": "prohibited", "auto_fail": True, "start": 0.0,
                    "end": 2.0, "speaker": "agent", "text": "we guarantee approval"}],
}


@pytest.fixture
def api(make_settings, redis_url, redis_conn):
    from tests.test_api import Api, seed_rules

    a = Api(make_settings(redis_url=redis_url), redis_conn)
    seed_rules(a.repo)
    return a


def scored(api, **card) -> str:
    call_id = api.submit().json()["id"]
    api.repo.start_call(call_id)
    api.repo.finish_call(call_id, {**API_CARD, **card})
    return call_id


def post(api, call_id, role="qa", **body):
    payload = {"target": "criterion", "id": "recording_notice", "action": "override_pass",
               "reason": "notice given before the recording started"} | body
    return api.client.post(f"/v1/calls/{call_id}/reviews", json=payload, headers=api.h(role))


@pytest.mark.parametrize(("role", "status"), [("qa", 201), ("admin", 201), ("supervisor", 403),
                                              ("telephony", 403)])
def test_who_may_review(api, role, status):
    assert post(api, scored(api), role).status_code == status


def test_review_errors(api):
    call_id = scored(api)
    assert post(api, str(uuid.uuid4())).status_code == 404
    assert post(api, call_id, id="no_such_criterion").status_code == 404
    assert post(api, call_id, target="violation", id="greeting", action="dismiss").status_code == 404
    assert post(api, call_id, reason="").status_code == 422
    assert post(api, call_id, reason="   ").status_code == 422
    assert post(api, call_id, action="dismiss").status_code == 422
    assert post(api, call_id, target="section").status_code == 422
    unscored = api.submit().json()["id"]
    assert post(api, unscored).status_code == 404
    assert api.client.post(f"/v1/calls/{call_id}/reviews", json={"target": "criterion"},
                           headers=api.h()).status_code == 422
    assert api.client.get(f"/v1/calls/{call_id}/reviews", headers=api.h()).json() == []


def test_reviews_change_the_reviewed_verdict_and_keep_the_automatic_one(api):
    call_id = scored(api)
    r = post(api, call_id)
    assert r.status_code == 201
    assert r.json()["review"]["reviewer"]["name"] == "qa key"
    assert r.json()["result"]["reviewed_score"] == 50.0 and r.json()["result"]["reviewed_passed"] is False
    post(api, call_id, role="admin", id="identity_check", reason="checked the date of birth")
    r = post(api, call_id, target="violation", id="promises_result", action="dismiss",
             reason="said: nobody can guarantee approval")
    assert r.json()["result"]["reviewed_passed"] is True

    card = api.client.get(f"/v1/calls/{call_id}/scorecard/reviewed", headers=api.h("supervisor")).json()
    assert (card["score"], card["passed"], card["auto_fail"]) == (25.0, False, True)
    review = card["review"]
    verdict = (review["reviewed_score"], review["reviewed_passed"], review["reviewed_auto_fail"])
    assert verdict == (100.0, True, False)
    items = {i["id"]: i for i in review["items"]}
    assert items["identity_check"]["reviewer"]["name"] == "admin key"
    assert (items["promises_result"]["automatic"], items["promises_result"]["reviewed"]) == ("violation",
                                                                                              "dismissed")
    # The stored automatic scorecard is unchanged.
    plain = api.client.get(f"/v1/calls/{call_id}/scorecard", headers=api.h()).json()
    assert plain == API_CARD

    # A second opinion supersedes the first; both stay in the history.
    post(api, call_id, action="override_fail", reason="notice came after personal details")
    card = api.client.get(f"/v1/calls/{call_id}/scorecard/reviewed", headers=api.h()).json()
    notice = next(i for i in card["review"]["items"] if i["id"] == "recording_notice")
    assert [h["action"] for h in notice["history"]] == ["override_pass", "override_fail"]
    assert notice["reviewed"] == "fail" and card["review"]["reviewed_passed"] is False
    listed = api.client.get(f"/v1/calls/{call_id}/reviews", headers=api.h("supervisor")).json()
    assert [x["action"] for x in listed] == ["override_pass", "override_pass", "dismiss", "override_fail"]
    assert api.client.get(f"/v1/calls/{call_id}/reviews", headers=api.h("telephony")).status_code == 403


def test_review_queue_lists_auto_fails_and_the_sample_until_reviewed(api, monkeypatch):
    failed = scored(api)
    fine = [scored(api, score=90.0, passed=True, auto_fail=False, violations=[]) for _ in range(3)]
    r = api.client.get("/v1/review-queue", headers=api.h("supervisor"))
    assert r.status_code == 200
    body = r.json()
    assert body["share"] == 0.10
    by_id = {c["call_id"]: c for c in body["calls"]}
    assert by_id[failed]["why"] == "auto_fail"
    sampled = {c for c in fine if needs_review(c, "agent-mira", date(2026, 10, 14), False, 0.10)}
    assert set(by_id) == {failed} | sampled
    # A passing call whose scorecard lists an outdated figure the recogniser was unsure of is queued too.
    unsure = {"id": "fee", "kind": "outdated_policy", "policy_id": "fee", "title": "Fee", "auto_fail": False,
              "detail": "stated 450; not counted", "start": 1.0, "end": 2.0, "speaker": "agent",
              "text": "the fee is four fifty", "segments": [0]}
    checking = scored(api, score=90.0, passed=True, auto_fail=False, violations=[], to_check=[unsure])
    queued = {c["call_id"]: c for c in api.client.get("/v1/review-queue", headers=api.h()).json()["calls"]}
    assert queued[checking]["why"] == "to_check" and queued[checking]["to_check"] == 1
    day = date(2026, 10, 14)
    assert needs_review(checking, "agent-mira", day, False, 0.0, to_check=True)
    assert not needs_review(checking, "agent-mira", day, False, 0.0)
    post(api, failed, target="violation", id="promises_result", action="dismiss", reason="negated")
    assert failed not in {c["call_id"] for c in api.client.get(
        "/v1/review-queue", headers=api.h()).json()["calls"]}
    assert api.client.get("/v1/review-queue?agent_id=someone-else", headers=api.h()).json()["count"] == 0
    assert api.client.get("/v1/review-queue?from=2026-10-15", headers=api.h()).json()["count"] == 0
    assert api.client.get("/v1/review-queue", headers=api.h("telephony")).status_code == 403

    from tests.test_api import Api

    everything = Api(api.settings.model_copy(update={"review_share": 1.0}), api.queue.connection)
    assert set(c["call_id"] for c in everything.client.get(
        "/v1/review-queue", headers=everything.h()).json()["calls"]) == {*fine, checking}


def test_review_queue_api_reads_pages_by_cursor(api):
    from qa_service.auth import issue_key
    from qa_service.services import teams
    from qa_service.storage.paging import encode
    from qa_service.storage.repository import Membership, Scope

    def failed(agent: str) -> str:
        call_id = api.submit(agent_id=agent).json()["id"]
        api.repo.start_call(call_id)
        api.repo.finish_call(call_id, API_CARD)
        return call_id

    ours = [failed("agent-mira") for _ in range(3)]
    theirs = [failed("agent-other") for _ in range(2)]
    teams.put_memberships(store=api.repo, items=[
        Membership(agent_id="agent-mira", team="alpha", vendor="one", since=date(2026, 1, 1)),
        Membership(agent_id="agent-other", team="bravo", vendor="two", since=date(2026, 1, 1))])
    _, alpha = issue_key(api.repo, "supervisor", "alpha lead", Scope(teams=("alpha",)))

    def walk(headers) -> list[str]:
        seen, params = [], {"page_size": 2}
        while True:
            body = api.client.get("/v1/review-queue", params=params, headers=headers).json()
            assert set(body) == {"share", "count", "calls", "page_size", "next_cursor"}
            assert body["page_size"] == 2 and body["count"] == len(body["calls"]) <= 2
            seen += [c["call_id"] for c in body["calls"]]
            if body["next_cursor"] is None:
                return seen
            params["cursor"] = body["next_cursor"]

    assert walk(api.h()) == queue_order(api.repo, ours + theirs)
    assert walk({"Authorization": f"Bearer {alpha}"}) == queue_order(api.repo, ours)
    other = encode("calls", (date(2026, 10, 14), T0, ours[0]))
    refused = api.client.get("/v1/review-queue", params={"cursor": other}, headers=api.h())
    assert refused.status_code == 422 and "not one this listing gave" in refused.text
    limited = api.client.get("/v1/review-queue", params={"limit": 2}, headers=api.h())
    assert limited.status_code == 422 and "page_size" in limited.text


def test_a_bad_review_share_stops_start_up(monkeypatch, capsys):
    from qa_service.cli import main

    monkeypatch.setenv("QA_REVIEW_SHARE", "lots")
    assert main(["serve"]) == 2  # stopped before the server starts, naming the setting
    assert "QA_REVIEW_SHARE" in capsys.readouterr().err


# -- the call page -----------------------------------------------------------------------------

def signed_in_client(api, role):
    from fastapi.testclient import TestClient

    from tests.test_web import sign_in

    client = TestClient(api.app)
    assert sign_in(client, api.keys[role]).status_code == 303
    return client


def test_review_from_the_call_page(api):
    from tests.test_web import form_token

    call_id = scored(api)
    qa = signed_in_client(api, "qa")
    page = qa.get(f"/calls/{call_id}")
    assert page.status_code == 200 and f'action="/calls/{call_id}/reviews"' in page.text
    assert 'id="reviewed-verdict"' not in page.text

    form = {"target": "violation", "id": "promises_result", "action": "dismiss",
            "reason": "negated in context", "csrf": form_token(page.text)}
    r = qa.post(f"/calls/{call_id}/reviews", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/calls/{call_id}#violations"
    page = qa.get(f"/calls/{call_id}").text
    assert 'data-review="violation-promises_result"' in page and "negated in context" in page
    assert 'id="reviewed-verdict"' in page
    [stored] = api.client.get(f"/v1/calls/{call_id}/reviews", headers=api.h()).json()
    assert (stored["action"], stored["reviewer"]["name"]) == ("dismiss", "qa key")

    assert qa.post(f"/calls/{call_id}/reviews", data={**form, "reason": " "}).status_code == 422
    assert qa.post(f"/calls/{call_id}/reviews", data={**form, "id": "nope"}).status_code == 404
    assert qa.post(f"/calls/{call_id}/reviews", data=form,
                   headers={"Origin": "https://elsewhere.example"}).status_code == 403

    supervisor = signed_in_client(api, "supervisor")
    page = supervisor.get(f"/calls/{call_id}").text
    assert f'action="/calls/{call_id}/reviews"' not in page
    refused = supervisor.post(f"/calls/{call_id}/reviews", data={**form, "csrf": form_token(page)})
    assert refused.status_code == 403
    assert len(api.client.get(f"/v1/calls/{call_id}/reviews", headers=api.h()).json()) == 1
    # The web review is in the audit log under the reviewer's key.
    with api.repo.engine.connect() as conn:
        import sqlalchemy as sa

        from qa_service.storage import tables as t

        actions = [(r.action, r.key_name, r.details) for r in conn.execute(
            sa.select(t.audit_log).where(t.audit_log.c.target_id == call_id).order_by(t.audit_log.c.id))]
    assert ("review", "qa key", "status=303") in actions and ("read_call", "qa key", "status=200") in actions


def test_the_call_page_form_keeps_the_reasons_limit(api):
    from tests.test_web import form_token

    call_id = scored(api)
    qa = signed_in_client(api, "qa")
    form = {"target": "violation", "id": "promises_result", "action": "dismiss",
            "csrf": form_token(qa.get(f"/calls/{call_id}").text)}
    for reason in ("x" * 2001, "y" * 1_000_000):
        r = qa.post(f"/calls/{call_id}/reviews", data={**form, "reason": reason}, follow_redirects=False)
        assert r.status_code == 422 and "limited to 2,000 characters" in r.text
    # The API holds the same limit.
    assert post(api, call_id, reason="x" * 2001).status_code == 422
    assert api.client.get(f"/v1/calls/{call_id}/reviews", headers=api.h()).json() == []
    r = qa.post(f"/calls/{call_id}/reviews", data={**form, "reason": "z" * 2000}, follow_redirects=False)
    assert r.status_code == 303
    [stored] = api.client.get(f"/v1/calls/{call_id}/reviews", headers=api.h()).json()
    assert stored["reason"] == "z" * 2000


@pytest.mark.parametrize("headers", [{"Origin": "null"}, {"Origin": "https://sibling.example"},
                                     {"Sec-Fetch-Site": "same-site"}])
def test_review_forms_from_other_sites_or_without_token_are_refused(api, headers):
    from tests.test_web import form_token

    call_id = scored(api)
    qa = signed_in_client(api, "qa")
    form = {"target": "violation", "id": "promises_result", "action": "dismiss", "reason": "planted"}
    token = form_token(qa.get(f"/calls/{call_id}").text)
    r = qa.post(f"/calls/{call_id}/reviews", data={**form, "csrf": token}, headers=headers)
    assert r.status_code == 403 and "came from another site" in r.text
    for data in (form, {**form, "csrf": "x" * 43}):
        assert qa.post(f"/calls/{call_id}/reviews", data=data).status_code == 403
    # Another session's token is no good for this one.
    other = form_token(signed_in_client(api, "qa").get(f"/calls/{call_id}").text)
    assert qa.post(f"/calls/{call_id}/reviews", data={**form, "csrf": other}).status_code == 403
    assert api.client.get(f"/v1/calls/{call_id}/reviews", headers=api.h()).json() == []


NEARLY = {"id": "promises_result", "kind": "prohibited", "policy_id": None, "title": "Promises a result",
          "auto_fail": True,
          "detail": 'nearly heard, "approval" unclear (confidence 0.21): promises a result',
          "start": 0.0, "end": 2.0, "speaker": "agent", "text": "we guarantee a pearl", "segments": [0]}
PASSING = {"score": 100.0, "passed": True, "auto_fail": False, "violations": [],
           "criteria": [{**c, "passed": True, "points": c["max_points"]} for c in API_CARD["criteria"]]}


def agent_line(api) -> dict:
    body = api.client.get("/v1/agents?from=2026-10-01&to=2026-10-31", headers=api.h("supervisor")).json()
    return next(a for a in body["agents"] if a["agent_id"] == "agent-mira")


def test_a_confirmed_item_to_check_counts_as_a_violation_in_the_verdict_and_aggregates(api):
    call_id = scored(api, **PASSING, to_check=[NEARLY])
    before = agent_line(api)
    assert (before["pass_rate"], before["auto_fails"], before["violations"]["prohibited"]) == (1.0, 0, 0)
    assert post(api, call_id, target="to_check", id="no_such_item", action="confirm").status_code == 404
    wrong = post(api, call_id, target="to_check", id="promises_result", action="override_pass")
    assert wrong.status_code == 422

    r = post(api, call_id, target="to_check", id="promises_result", action="confirm",
             reason="listened: the agent promised approval")
    assert r.status_code == 201
    assert (r.json()["result"]["reviewed_passed"], r.json()["result"]["reviewed_auto_fail"]) == (False, True)
    card = api.client.get(f"/v1/calls/{call_id}/scorecard/reviewed", headers=api.h()).json()
    assert [v["id"] for v in card["review"]["violations"]] == ["promises_result"]
    item = card["review"]["items"][0]
    assert (item["target"], item["automatic"], item["reviewed"]) == ("to_check", "to check", "violation")
    after = agent_line(api)
    assert (after["pass_rate"], after["auto_fails"], after["violations"]["prohibited"]) == (0.0, 1, 1)

    post(api, call_id, target="to_check", id="promises_result", action="dismiss", reason="said 'no promise'")
    dismissed = agent_line(api)
    assert (dismissed["pass_rate"], dismissed["auto_fails"]) == (1.0, 0)
    assert dismissed["violations"]["prohibited"] == 0


def test_a_provisional_fail_waits_for_a_reviewer_and_is_marked_in_aggregates(api):
    reason = "promises_result: the recogniser was unsure of these words (confidence 0.31)"
    failing = {**PASSING, "passed": False, "auto_fail": True, "violations": API_CARD["violations"]}
    call_id = scored(api, **failing, provisional=True, provisional_reasons=[reason])
    firm = scored(api)
    queued = {c["call_id"]: c for c in api.client.get("/v1/review-queue", headers=api.h()).json()["calls"]}
    assert queued[call_id]["why"] == "provisional" and queued[call_id]["provisional"] is True
    assert queued[firm]["why"] == "auto_fail" and queued[firm]["provisional"] is False
    assert agent_line(api)["provisional"] == 1
    summary = api.client.get("/v1/agents/agent-mira/summary?from=2026-10-01&to=2026-10-31",
                             headers=api.h("supervisor"))
    assert summary.status_code == 200 and summary.json()["aggregate"]["provisional_count"] == 1
    listed = api.client.get("/v1/calls?agent_id=agent-mira", headers=api.h("supervisor")).json()
    assert {c["call_id"]: c["provisional"] for c in listed["items"]} == {call_id: True, firm: False}

    r = post(api, call_id, target="verdict", id="verdict", action="confirm", reason="listened: he said it")
    assert r.status_code == 201 and r.json()["result"]["reviewed_provisional"] is False
    assert r.json()["result"]["reviewed_passed"] is False
    assert agent_line(api)["provisional"] == 0
    assert post(api, firm, target="verdict", id="the verdict", action="confirm").status_code == 404


def test_items_to_check_and_a_provisional_verdict_are_reviewed_from_the_call_page(api):
    from tests.test_web import form_token

    reason = "promises_result: the recogniser was unsure of these words (confidence 0.31)"
    failing = {**PASSING, "passed": False, "auto_fail": True, "violations": API_CARD["violations"]}
    call_id = scored(api, **failing, provisional=True, provisional_reasons=[reason],
                     to_check=[{**NEARLY, "id": "pressure"}])
    qa = signed_in_client(api, "qa")
    page = qa.get(f"/calls/{call_id}").text
    assert 'id="provisional"' in page and "Provisional verdict." in page and reason in page
    assert 'data-check="0"' in page and "auto-fail if confirmed" in page and "nearly heard" in page

    form = {"target": "to_check", "id": "pressure", "action": "confirm", "reason": "heard it at 0:01",
            "csrf": form_token(page)}
    r = qa.post(f"/calls/{call_id}/reviews", data=form, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == f"/calls/{call_id}#to-check"
    page = qa.get(f"/calls/{call_id}").text
    assert 'data-review="to_check-pressure"' in page and "heard it at 0:01" in page
    assert 'id="provisional"' in page  # confirming another item does not settle the verdict

    form = {"target": "verdict", "id": "verdict", "action": "confirm", "reason": "listened: it was said",
            "csrf": form_token(page)}
    assert qa.post(f"/calls/{call_id}/reviews", data=form, follow_redirects=False).headers["location"] == \
        f"/calls/{call_id}#verdict"
    page = qa.get(f"/calls/{call_id}").text
    assert 'id="provisional"' not in page and "has been reviewed" in page
