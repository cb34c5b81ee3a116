"""Search: calls by external id and by words of their redacted transcripts, on SQLite (FTS5) and
PostgreSQL (tsvector + GIN); the index follows new scorecard versions, erasure and retention."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from qa_service.storage.repository import ErasureNote, NewCall
from qa_service.storage.search import MARK_END, MARK_START
from qa_service.storage.sql import open_repository
from tests.test_erasure import database_hits
from tests.test_views import POLICY_YAML, RUBRIC_YAML, SEED, make_scorecard, sha

WORD = "quokkaberry"  # a word no other row of any table holds


def card(external_id: str, *lines: str) -> dict:
    """A scorecard whose redacted transcript says these lines (the agent and the customer in turn)."""
    out = make_scorecard(SEED[0], external_id)
    out["transcript"] = [{"speaker": "agent" if i % 2 == 0 else "customer", "start": i * 5.0,
                          "end": i * 5.0 + 4, "text": text} for i, text in enumerate(lines)]
    return out


def add(repo, external_id: str, *lines: str, agent: str = "agent-a", day: date = date(2026, 11, 2)) -> str:
    call_id = str(uuid.uuid4())
    repo.add_call(NewCall(id=call_id, external_id=external_id, agent_id=agent, call_date=day,
                          rubric_id="intake", rubric_version="1", policy_pack_id="fees",
                          policy_pack_version="2026-10", input_kind="transcript"))
    repo.start_call(call_id)
    repo.finish_call(call_id, card(external_id, *lines))
    return call_id


@pytest.fixture
def repo(database_url):
    r = open_repository(database_url)
    r.put_rules("rubric", "intake", "1", sha(RUBRIC_YAML), RUBRIC_YAML)
    r.put_rules("policy_pack", "fees", "2026-10", sha(POLICY_YAML), POLICY_YAML)
    yield r
    r.dispose()


def test_words_find_calls_newest_first_with_the_words_marked(repo):
    older = add(repo, "s-1", "Your application fee is due today.", "I'm <PERSON>, thanks.",
                day=date(2026, 11, 1))
    newer = add(repo, "s-2", "The Application FEE went up last month.", day=date(2026, 11, 9))
    add(repo, "s-3", "Nothing about money here.")
    hits = repo.search.find("application fee")
    assert [h.call_id for h in hits] == [newer, older]
    assert [h.external_id for h in hits] == ["s-2", "s-1"]
    assert f"{MARK_START}fee{MARK_END}" in hits[1].snippet and "due today" in hits[1].snippet
    # Every word must be there; case does not matter (accents do, on both databases); a redacted name is
    # found by its type.
    assert repo.search.find("application money") == []
    assert [h.call_id for h in repo.search.find("FEE")] == [newer, older]
    assert repo.search.find("fée") == []
    assert [h.call_id for h in repo.search.find("person")] == [older]
    assert repo.search.find("   ") == [] and repo.search.find("!!") == []


def staff_key(scope=None):
    from qa_service.storage.repository import StoredKey

    return StoredKey(id="k-search", name="search key", role="qa", key_hash="h", created_at=datetime.now(UTC),
                     revoked=False, scope=scope)


def seed_hits(repo) -> dict[str, list[str]]:
    """Calls of agents a (team alpha) and b (team bravo) that say the word, several on one day, and
    calls that do not; the newest day's call is stored first."""
    from qa_service.services import teams
    from qa_service.storage.repository import Membership

    teams.put_memberships(store=repo, items=[
        Membership(agent_id="agent-a", team="alpha", vendor="one", since=date(2026, 1, 1)),
        Membership(agent_id="agent-b", team="bravo", vendor="two", since=date(2026, 1, 1))])
    found: dict[str, list[str]] = {"agent-a": [], "agent-b": []}
    plan = [("agent-a", 9, True), ("agent-b", 3, True), ("agent-a", 3, True), ("agent-b", 3, False),
            ("agent-a", 3, True), ("agent-b", 1, True), ("agent-a", 3, False), ("agent-b", 3, True),
            ("agent-a", 1, True)]
    for n, (agent, day, says) in enumerate(plan):
        call_id = add(repo, f"p-{n}", f"Call {n} about {WORD if says else 'nothing much'}.", agent=agent,
                      day=date(2026, 11, day))
        if says:
            found[agent].append(call_id)
    return found


def newest_first(repo, call_ids) -> list[str]:
    """The calls in the search's order: call date, time received, call id, newest first."""
    calls = [repo.get_call(i) for i in call_ids]
    return [c.id for c in sorted(calls, key=lambda c: (c.call_date, c.created_at, c.id), reverse=True)]


def search_walk(repo, key, query: str = WORD, page_size: int = 2) -> list[str]:
    """Every call a search finds, a page at a time; the external id is matched on the first page only."""
    from qa_service.services.search import search_calls

    seen: list[str] = []
    cursor = None
    while True:
        found = search_calls(store=repo, key=key, query=query, cursor=cursor, page_size=page_size)
        assert len(found.hits) <= page_size and found.more == (found.next_cursor is not None)
        if cursor is not None:
            assert found.by_external_id is None
        seen += [h.call_id for h in found.hits]
        cursor = found.next_cursor
        if cursor is None:
            return seen


def test_search_pages_give_every_hit_once_newest_first(repo):
    from qa_service.storage.repository import Scope

    said = seed_hits(repo)
    everyone = newest_first(repo, said["agent-a"] + said["agent-b"])
    assert search_walk(repo, staff_key()) == everyone
    assert search_walk(repo, staff_key(), page_size=4) == everyone
    assert everyone[0] == said["agent-a"][0]  # the newest call date first, though stored first
    # A scoped key's pages hold its team's calls only, and every one of them.
    assert search_walk(repo, staff_key(Scope(teams=("bravo",)))) == newest_first(repo, said["agent-b"])
    # The index read after a hit starts right after it.
    hits = repo.search.find(WORD, limit=100)
    assert [h.call_id for h in hits] == everyone
    assert [h.call_id for h in repo.search.find(WORD, after=hits[2].key)] == everyone[3:]


def test_the_external_id_is_matched_on_the_first_page_only(repo):
    from qa_service.services.search import search_calls

    named = add(repo, "p-named", "A call named p-named.", day=date(2026, 11, 1))
    other = add(repo, "p-other", "Another call, also named p-named.", day=date(2026, 11, 2))
    first = search_calls(store=repo, key=staff_key(), query="p-named", page_size=1)
    assert first.by_external_id is not None and first.by_external_id.id == named
    assert [h.call_id for h in first.hits] == [other] and first.next_cursor is not None
    second = search_calls(store=repo, key=staff_key(), query="p-named", cursor=first.next_cursor, page_size=1)
    assert second.by_external_id is None
    assert [h.call_id for h in second.hits] == [named] and second.next_cursor is None


def test_a_search_cursor_of_another_listing_is_refused(repo):
    from qa_service.errors import InputError
    from qa_service.services.search import search_calls
    from qa_service.storage.paging import encode

    other = encode("review-queue", (date(2026, 11, 3), datetime.now(UTC), str(uuid.uuid4())))
    for cursor in (other, "garbled"):
        with pytest.raises(InputError, match="not one this listing gave"):
            search_calls(store=repo, key=staff_key(), query=WORD, cursor=cursor)


@pytest.mark.parametrize("query", ['fee" OR "x', "fee*", "NEAR(fee money)", "body:fee", "fee -money", "(fee"])
def test_query_syntax_is_taken_as_words(repo, query):
    call_id = add(repo, "s-syntax", "The fee is money well spent, or so they say near the end.")
    assert [h.call_id for h in repo.search.find(query)] in ([call_id], [])


def test_only_the_latest_version_is_searched(repo):
    call_id = add(repo, "s-v", f"First time the agent said {WORD}.")
    assert [h.call_id for h in repo.search.find(WORD)] == [call_id]
    repo.add_scorecard_versions([(call_id, card("s-v", "Scored again with other words."))])
    assert repo.search.find(WORD) == []
    assert [h.call_id for h in repo.search.find("other words")] == [call_id]
    assert repo.search.indexed(call_id) == "Scored again with other words."


def test_erasure_empties_the_index_in_every_table(repo, database_url):
    call_id = add(repo, "s-erase", f"Please spell {WORD} for me.")
    kept = add(repo, "s-kept", "A call that stays.")
    assert database_hits(database_url, WORD)
    repo.erase_calls([call_id], receipt=ErasureNote(id=str(uuid.uuid4()), key_id=None, key_name="test",
                                                     role="admin"))
    assert repo.search.find(WORD) == [] and repo.search.indexed(call_id) is None
    assert database_hits(database_url, WORD) == []
    assert [h.call_id for h in repo.search.find("stays")] == [kept]


def test_erasures_merged_once_leave_no_word_either(repo, database_url):
    # A retention sweep erases calls one by one without merging the index, then merges it once.
    ids = [add(repo, f"s-sweep-{n}", f"Old call {n} about {WORD}.") for n in range(3)]
    for call_id in ids:
        note = ErasureNote(id=str(uuid.uuid4()), key_id=None, key_name="retention", role=None,
                           merge_search=False)
        repo.erase_calls([call_id], receipt=note)
    assert repo.search.find(WORD) == []
    repo.merge_search_index()
    assert database_hits(database_url, WORD) == []


def test_retention_strips_the_text_from_the_index(repo):
    call_id = add(repo, "s-old", f"An old call about {WORD}.")
    assert repo.strip_transcripts(datetime.now(UTC) + timedelta(seconds=1)) == 1
    assert repo.search.find(WORD) == [] and repo.search.indexed(call_id) is None
    # Scored again later, a card without its transcript puts nothing back.
    repo.add_scorecard_versions([(call_id, repo.get_scorecard(call_id).data)])
    assert repo.search.indexed(call_id) is None


def test_the_migration_indexes_the_calls_already_stored(database_url):
    from qa_service.storage.migrate import upgrade
    from qa_service.storage.sql import SqlRepository
    from tests.test_storage import engine_at_revision

    engine = engine_at_revision(database_url, "0016")
    old = SqlRepository(engine)
    old.put_rules("rubric", "intake", "1", sha(RUBRIC_YAML), RUBRIC_YAML)
    old.put_rules("policy_pack", "fees", "2026-10", sha(POLICY_YAML), POLICY_YAML)
    call_id = str(uuid.uuid4())
    old.add_call(NewCall(id=call_id, external_id="s-mig", agent_id="agent-a", call_date=date(2026, 11, 2),
                         rubric_id="intake", rubric_version="1", policy_pack_id="fees",
                         policy_pack_version="2026-10", input_kind="transcript"))
    # Stored with the SQL of revision 0016: no index row is written here.
    import sqlalchemy as sa

    from qa_service.storage import tables as t
    from qa_service.storage.db import writing
    with writing(engine) as conn:
        for version, words in ((1, "superseded words"), (2, f"latest words {WORD}")):
            data = card("s-mig", words)
            conn.execute(t.scorecards.insert().values(
                call_id=call_id, version=version, agent_id="agent-a", call_date=date(2026, 11, 2), score=90.0,
                passed=True, auto_fail=False, rubric_id="intake", rubric_version="1", rubric_sha256="",
                data=data, created_at=datetime.now(UTC), latest=version == 2))
        conn.execute(t.calls.update().where(t.calls.c.id == call_id).values(status="done"))
        assert sa.inspect(conn).has_table("transcript_search") is False
    upgrade(engine)
    repo = SqlRepository(engine)
    assert [h.call_id for h in repo.search.find(WORD)] == [call_id]
    assert repo.search.find("superseded") == []
    engine.dispose()


def test_external_ids_by_call_id(repo):
    a = add(repo, "s-x1", "hello")
    assert repo.search.external_ids([a, str(uuid.uuid4()), "not-a-uuid"]) == {a: "s-x1"}
