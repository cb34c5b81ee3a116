"""The use cases in `services/`, over the in-memory storage and a queue that only records: no database,
no Redis. The doors (API, pages, command line, worker) are tested end to end elsewhere."""

from __future__ import annotations

import hashlib
import io
import logging
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from qa_service.errors import Conflict, InputError, NotFound
from qa_service.queueing import CALL_JOB, RESCORE_JOB, rescore_job_id
from qa_service.records import CallMeta
from qa_service.services import calls, rescores, reviews
from qa_service.services.rules import UnknownRules, keep_loaded_rules
from qa_service.settings import Settings
from qa_service.storage.memory import MemoryRepository
from qa_service.storage.objects import input_store
from qa_service.storage.repository import StoredCall, StoredKey
from tests.test_review import card

RUBRIC = "id: r1\nversion: '1'\npass_mark: 80\ncriteria: []\n"
TRANSCRIPT = b"Agent: Thanks for calling, this is Mira.\nCustomer: Hi, I have a question about my loan.\n"


class Connection:
    """What RQ asks of Redis to tell whether a job exists."""

    def __init__(self, queue: Queue):
        self.queue = queue

    def exists(self, key: str) -> int:
        return int(any(key == f"rq:job:{job_id}" for _, job_id in self.queue.jobs))


class Queue:
    """Records what is enqueued; `down` makes it refuse like a Redis that is away."""

    def __init__(self, down: bool = False):
        self.jobs: list[tuple[str, str]] = []
        self.down = down
        self.connection = Connection(self)

    def enqueue(self, path: str, *args: Any, job_id: str, **_: Any) -> None:
        if self.down:
            raise ConnectionError("Redis is away")
        self.jobs.append((path, job_id))


def key(role: str = "qa", key_id: str = "k-qa") -> StoredKey:
    return StoredKey(id=key_id, name=f"{role} key", role=role, key_hash="h", created_at=datetime.now(UTC),
                     revoked=False)


class Rules:
    """Rules as the loader gives them: id, version, text and its sha256."""

    def __init__(self, rules_id: str, version: str, text: str):
        self.id, self.version, self.text = rules_id, version, text
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def store() -> MemoryRepository:
    repo = MemoryRepository()
    repo.put_rules("rubric", "r1", "1", "sha-r", RUBRIC)
    repo.put_rules("policy_pack", "p1", "1", "sha-p", "id: p1\n")
    return repo


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(database_url="sqlite://", storage_dir=tmp_path / "storage")


def request(**over: Any) -> calls.CallRequest:
    fields: dict[str, Any] = {"agent_id": "agent-1", "call_date": date(2026, 10, 14), "rubric_id": "r1",
                              "policy_pack_id": "p1", "external_id": "ext-1"}
    return calls.CallRequest(**{**fields, **over})


def submit(store: MemoryRepository, settings: Settings, **kwargs: Any) -> calls.Submitted:
    """submit_call with the input store the settings name."""
    return calls.submit_call(store=store, settings=settings, inputs=input_store(settings), **kwargs)


def retry(store: MemoryRepository, settings: Settings, **kwargs: Any) -> StoredCall:
    """retry_call with the input store the settings name."""
    return calls.retry_call(store=store, settings=settings, inputs=input_store(settings), **kwargs)


def transcript(text: bytes = TRANSCRIPT) -> calls.CallInput:
    return calls.CallInput("transcript", io.BytesIO(text), "call.txt", len(text))


# -- submit_call ---------------------------------------------------------------------------------

def test_a_call_is_stored_with_its_input_and_queued(store, settings):
    queue = Queue()
    submitted = submit(store, settings, queue=queue, request=request(),
                                  upload=transcript())
    call = submitted.call
    assert submitted.created and call.status == "queued" and call.input_kind == "transcript"
    assert (call.rubric_id, call.rubric_version, call.policy_pack_version) == ("r1", "1", "1")
    assert Path(call.input_path).read_bytes() == TRANSCRIPT
    assert queue.jobs == [(CALL_JOB, call.id)]


def test_the_same_call_id_again_gets_the_stored_call_and_requeues_a_stranded_one(store, settings):
    first = submit(store, settings, queue=None,
                              request=request(), upload=transcript())
    queue = Queue()  # the job never reached this queue: the call would be stranded
    again = submit(store, settings, queue=queue, request=request(),
                              upload=transcript())
    assert not again.created and again.call.id == first.call.id and len(store.calls) == 1
    assert queue.jobs == [(CALL_JOB, first.call.id)]
    third = submit(store, settings, queue=queue, request=request(),
                              upload=transcript())
    assert queue.jobs == [(CALL_JOB, first.call.id)], "a call already on the queue is not queued twice"
    assert third.call.id == first.call.id


def test_a_call_id_another_sender_used_first_is_refused_without_its_call(store, settings):
    submit(store, settings, queue=Queue(), request=request(submitted_by_key_id="a"))
    other = key("telephony", "b")
    with pytest.raises(calls.CallIdTaken) as refused:
        submit(store, settings, queue=Queue(), request=request(),
                          visible=lambda call: calls.may_read(other, call, store=store))
    assert next(iter(store.calls)) not in str(refused.value)


def test_unknown_rules_and_junk_transcripts_leave_nothing_behind(store, settings):
    with pytest.raises(UnknownRules, match="upload it first"):
        submit(store, settings, queue=Queue(), request=request(rubric_id="nope"),
                          upload=transcript())
    with pytest.raises(InputError):
        submit(store, settings, queue=Queue(), request=request(),
                          upload=transcript(b"\x00\x01 not a conversation"))
    assert not store.calls
    assert not any((settings.storage_dir).rglob("*.*")), "the inputs written were removed"


def test_a_queue_that_refuses_leaves_the_call_stored(store, settings):
    with pytest.raises(calls.QueueUnavailable, match="resend the request with the same call_id"):
        submit(store, settings, queue=Queue(down=True), request=request())
    assert [c.status for c in store.calls.values()] == ["queued"]


def test_a_recording_url_is_kept_for_the_worker(store, settings):
    submitted = submit(store, settings, queue=Queue(), request=request(
        source="webhook", input_url="https://recordings.example.com/1.wav"))
    assert (submitted.call.source, submitted.call.input_url, submitted.call.input_path) == (
        "webhook", "https://recordings.example.com/1.wav", None)


def test_calls_scored_inline_add_versions_and_keep_their_rules(store, settings, caplog):
    rubric, pack = Rules("r2", "1", "id: r2\n"), Rules("p2", "1", "id: p2\n")
    meta = CallMeta("cli-1", "agent-9", date(2026, 10, 14), "auto")
    scored = {**card(), "rubric": {"id": "r2", "version": "1", "sha256": rubric.sha256}}
    first = calls.store_scored_call(store=store, settings=settings, meta=meta, card=scored, rubric=rubric,
                                    policies=pack, input_kind="transcript")
    with caplog.at_level(logging.WARNING):
        second = calls.store_scored_call(store=store, settings=settings, meta=meta, card=scored,
                                         rubric=Rules("r2", "1", "id: r2\nedited: true\n"), policies=pack,
                                         input_kind="transcript")
    assert (first.call_id, first.version, second.version) == (second.call_id, 1, 2)
    assert "differs from the stored one" in caplog.text
    call = store.get_call(first.call_id)
    assert (call.source, call.status, call.external_id) == ("cli", "done", "cli-1")


def test_keeping_loaded_rules_twice_is_no_change(store):
    rules = Rules("r3", "2", "id: r3\n")
    keep_loaded_rules(store=store, kind="rubric", rules=rules)
    keep_loaded_rules(store=store, kind="rubric", rules=rules)
    assert [r.version for r in store.list_rules("rubric") if r.id == "r3"] == ["2"]


def test_only_a_failed_call_with_its_input_is_retried(store, settings):
    call = submit(store, settings, queue=Queue(), request=request(),
                             upload=transcript()).call
    with pytest.raises(Conflict, match="only failed calls"):
        retry(store, settings, queue=Queue(), call_id=call.id)
    store.fail_call(call.id, "the recording server answered HTTP 503")
    queue = Queue()
    assert retry(store, settings, queue=queue, call_id=call.id).status == "queued"
    assert queue.jobs == [(CALL_JOB, call.id)]
    store.fail_call(call.id, "again")
    store.set_input_path(call.id, None)
    with pytest.raises(Conflict, match="no longer stored"):
        retry(store, settings, queue=queue, call_id=call.id)


# -- reviews -------------------------------------------------------------------------------------

def scored_call(store: MemoryRepository, settings: Settings, **over: Any) -> str:
    call = submit(store, settings, queue=None, request=request(**over)).call
    store.finish_call(call.id, card())
    return call.id


def test_a_review_changes_the_reviewed_verdict_and_is_kept(store, settings):
    call_id = scored_call(store, settings)
    review, reviewed = reviews.add_review(store=store, key=key(), call_id=call_id, target="violation",
                                          target_id="guarantee", action="dismiss", reason="said as a quote")
    assert review.id == 1 and review.reviewer_name == "qa key"
    # No auto-fail any more; 50 points still miss the rubric's pass mark of 80.
    assert (reviewed["review"]["reviewed_auto_fail"], reviewed["review"]["reviewed_passed"]) == (False, False)
    assert [r.action for r in reviews.call_reviews(store=store, key=key(), call_id=call_id)] == ["dismiss"]


@pytest.mark.parametrize(("target", "target_id", "action", "error"), [
    ("violation", "guarantee", "override_pass", reviews.BadReview),
    ("criterion", "nope", "override_pass", NotFound),
])
def test_a_review_that_does_not_fit_is_refused(store, settings, target, target_id, action, error):
    call_id = scored_call(store, settings)
    with pytest.raises(error):
        reviews.add_review(store=store, key=key(), call_id=call_id, target=target, target_id=target_id,
                           action=action, reason="because")
    assert not store.reviews.rows


def test_the_review_queue_holds_auto_fails_until_reviewed(store, settings):
    call_id = scored_call(store, settings)
    assert [c["why"] for c in reviews.review_queue(store=store, key=key(), share=0.0).items] == ["auto_fail"]
    reviews.add_review(store=store, key=key(), call_id=call_id, target="violation", target_id="guarantee",
                       action="dismiss", reason="checked")
    assert reviews.review_queue(store=store, key=key(), share=0.0).items == []
    with pytest.raises(InputError, match="'from' is after 'to'"):
        reviews.review_queue(store=store, key=key(), share=0.1, date_from=date(2026, 2, 1),
                             date_to=date(2026, 1, 1))


def test_only_qa_and_admin_review():
    assert [reviews.may_review(r) for r in ("admin", "qa", "supervisor", "telephony")] == [
        True, True, False, False]


# -- rescores ------------------------------------------------------------------------------------

def start(store: MemoryRepository, settings: Settings, queue: Queue, **over: Any) -> Any:
    fields: dict[str, Any] = {"rubric_id": "r1", "rubric_version": "1", "policy_pack_id": None,
                              "policy_pack_version": None, "since": None, "until": None, "dry_run": False}
    return rescores.start_rescore(store=store, settings=settings, queue=queue, key=key(),
                                  **{**fields, **over})


def test_a_rescore_run_is_stored_and_queued_and_one_storing_run_at_a_time(store, settings):
    queue = Queue()
    run = start(store, settings, queue)
    assert run.status == "queued" and queue.jobs == [(RESCORE_JOB, rescore_job_id(run.id))]
    with pytest.raises(Conflict, match="dry runs may run beside it"):
        start(store, settings, queue)
    assert start(store, settings, queue, dry_run=True).dry_run
    with pytest.raises(UnknownRules):
        start(store, settings, queue, rubric_version="9")


def test_a_rescore_run_the_queue_refuses_stays_stored(store, settings):
    with pytest.raises(calls.QueueUnavailable, match="a worker queues it"):
        start(store, settings, Queue(down=True))
    assert [r.status for r in store.list_rescore_runs()] == ["queued"]


def test_a_failed_rescore_is_recorded_and_audited(store, settings):
    run = store.start_rescore_run(start(store, settings, Queue()).id)

    def work() -> Any:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        rescores.work_rescore(store=store, run=run, work=work, settings=settings, details="see the log")
    failed = store.get_rescore_run(run.id)
    assert failed.status == "failed" and failed.failure_reason.startswith("internal error (RuntimeError)")
    assert [(e.action, e.target_id) for e in store.audit.entries()] == [("rescore", "r1")]
