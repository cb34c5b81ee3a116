"""Outgoing webhooks against a real HTTP receiver on 127.0.0.1, a private Redis and an RQ SimpleWorker."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from pydantic import ValidationError
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from qa_service import notify
from qa_service.storage import NewCall, open_repository
from qa_service.storage.inputs import write_bytes
from qa_service.worker import jobs, recovery
from qa_service.worker.context import WorkerContext, activate, current
from qa_service.worker.run import run_worker
from tests.chaos_support import seed_rules, wait_until
from tests.conftest import REPO_ROOT

SECRET = "outgoing-test-secret-of-32-bytes-or-more"
# Words that appear only in the transcript and evidence text of the card below.
SPOKEN = ("Marguerite", "guaranteed approval", "blue passport")


@dataclass
class Receiver:
    """An HTTP server that records each POST and answers with the next scripted status (then 200)."""

    server: ThreadingHTTPServer
    statuses: list[int] = field(default_factory=list)
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/qa"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: dict[str, Receiver] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's name)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec = box["r"]
            rec.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            status = rec.statuses.pop(0) if rec.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box["r"] = Receiver(server)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield box["r"]
    server.shutdown()
    server.server_close()


@pytest.fixture
def env(make_settings, redis_url, redis_conn, receiver, monkeypatch):
    """Settings pointing at the receiver (private addresses allowed), a repository and the notify queue."""
    # Retries seconds apart, so a test can wait for them. RQ keeps retry times in whole seconds, so
    # the first is 2 s: still not due right after the attempt whatever the fraction of the clock.
    monkeypatch.setattr(notify, "RETRY_INTERVALS_S", [2, 1, 1, 1, 1])
    settings = make_settings(redis_url=redis_url, outgoing_webhook_url=receiver.url,
                             outgoing_webhook_secret=SECRET, allow_private_urls=True)
    repo = open_repository(settings.database_url)
    seed_rules(repo)
    activate(WorkerContext(settings=settings, store=repo))
    yield settings, repo, Queue(notify.queue_name(settings), connection=redis_conn)
    activate(None)
    repo.dispose()


def card_with_violations() -> dict[str, Any]:
    said = "Marguerite, I can promise guaranteed approval for the blue passport"
    violation = {"start": 12.5, "end": 16.0, "speaker": "agent", "text": said, "segments": [3]}
    return {
        "format": "scorecard/v1", "call_id": "ext-1", "agent_id": "agent-mira", "call_date": "2026-10-14",
        "rubric": {"id": "harbourline-intake", "version": "2026.10", "sha256": "ab" * 32},
        "policies": {"id": "valdoria-residence", "version": "2026-10-01", "sha256": "cd" * 32},
        "transcript": [{"speaker": "agent", "start": 12.5, "end": 16.0, "text": said}],
        "criteria": [{"id": "greeting", "passed": True, "evidence": [dict(violation)]}],
        "violations": [
            {"id": "promise-outcome", "kind": "prohibited", "policy_id": None, "title": "Promised an outcome",
             "auto_fail": True, "detail": "said: promised an outcome", **violation},
            {"id": "fee-amount", "kind": "outdated_policy", "policy_id": "fee", "title": "Application fee",
             "auto_fail": False, "detail": "stated 65 EUR for application fee; that value applied until "
                                           "2026-09-30", **violation},
        ],
        "score": 40.0, "auto_fail": True, "passed": False,
    }


def stored_call(repo):
    call, _ = repo.add_call(NewCall(
        id=str(uuid.uuid4()), external_id="ext-1", agent_id="agent-mira", call_date=date(2026, 10, 14),
        rubric_id="harbourline-intake", rubric_version="2026.10", policy_pack_id="valdoria-residence",
        policy_pack_version="2026-10-01", input_kind="transcript"))
    return call, repo.finish_call(call.id, card_with_violations())


def work(queue: Queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


def valid_signature(headers: dict[str, str], body: bytes) -> bool:
    expected = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(headers.get("x-signature", ""), expected)


def test_scored_call_and_each_violation_arrive_signed(env, receiver):
    settings, repo, queue = env
    call, stored = stored_call(repo)
    ids = notify.notify_scored(settings, call, stored, card_with_violations(), connection=queue.connection)
    assert len(ids) == 3
    work(queue)

    assert len(receiver.received) == 3
    events = []
    for headers, body in receiver.received:
        assert valid_signature(headers, body)
        assert headers["content-type"] == "application/json"
        payload = json.loads(body)
        assert headers["x-event"] == payload["event"]
        events.append((headers["x-delivery-id"], payload))
    assert [d for d, _ in events] == ids
    scored = events[0][1]
    assert scored == {**scored, "event": "call.scored", "call_id": call.id, "external_id": "ext-1",
                      "agent_id": "agent-mira", "call_date": "2026-10-14", "score": 40.0, "passed": False,
                      "auto_fail": True, "violation_count": 2, "scorecard_version": stored.version,
                      "rubric": {"id": "harbourline-intake", "version": "2026.10"},
                      "scorecard_url": f"/v1/calls/{call.id}/scorecard?version={stored.version}"}
    kinds = [(p["event"], p["violation"]["id"], p["violation"]["kind"], p["violation"]["policy_id"])
             for _, p in events[1:]]
    assert kinds == [("violation.detected", "promise-outcome", "prohibited", None),
                     ("violation.detected", "fee-amount", "outdated_policy", "fee")]
    assert events[2][1]["violation"]["start"] == 12.5 and events[2][1]["violation"]["end"] == 16.0
    assert events[2][1]["violation"]["detail"].startswith("stated 65 EUR")


def test_payloads_carry_no_transcript_or_evidence_text(env, receiver):
    settings, repo, queue = env
    call, stored = stored_call(repo)
    notify.notify_scored(settings, call, stored, card_with_violations(), connection=queue.connection)
    work(queue)
    assert len(receiver.received) == 3
    for _, body in receiver.received:
        for words in SPOKEN:
            assert words.encode() not in body
        assert b'"text"' not in body and b'"speaker"' not in body and b'"transcript"' not in body


def test_delivery_ids_are_stable_for_the_same_event(env):
    _, repo, _ = env
    call, stored = stored_call(repo)
    first = [d for _, d, _ in notify.events_for(call, stored, card_with_violations())]
    again = [d for _, d, _ in notify.events_for(call, stored, card_with_violations())]
    assert first == again and len(set(first)) == 3


def test_a_receiver_failing_twice_gets_the_event_on_retry(env, receiver):
    settings, repo, queue = env
    receiver.statuses[:] = [500, 503]
    call, stored = stored_call(repo)
    events = notify.events_for(call, stored, card_with_violations())[:1]
    (job_id,) = notify.enqueue_events(queue, events)

    work(queue)  # first attempt: 500, retry scheduled a second later
    assert len(receiver.received) == 1
    assert Job.fetch(job_id, connection=queue.connection).get_status() == JobStatus.SCHEDULED
    assert recovery.enqueue_due_retries(queue) == 0  # not due yet
    for attempts in (2, 3):
        wait_until(lambda: recovery.enqueue_due_retries(queue) == 1, timeout=5, interval=0.1, what="retry")
        work(queue)
        assert len(receiver.received) == attempts
    job = Job.fetch(job_id, connection=queue.connection)
    assert job.get_status() == JobStatus.FINISHED and job.return_value() == 200
    # Every attempt is the same signed body under the same delivery id.
    assert len({(h["x-delivery-id"], h["x-signature"], b) for h, b in receiver.received}) == 1
    assert valid_signature(*receiver.received[-1])


@pytest.mark.parametrize("status", [400, 404, 410, 301])
def test_a_refusing_receiver_is_not_retried(env, receiver, status):
    settings, repo, queue = env
    receiver.statuses[:] = [status]
    call, stored = stored_call(repo)
    (job_id,) = notify.enqueue_events(queue, notify.events_for(call, stored, card_with_violations())[:1])
    work(queue)
    assert queue.scheduled_job_registry.count == 0 and queue.count == 0  # no retry waiting anywhere
    assert len(receiver.received) == 1
    job = Job.fetch(job_id, connection=queue.connection)
    assert job.get_status() == JobStatus.FAILED
    assert job_id in queue.failed_job_registry.get_job_ids()


@pytest.mark.parametrize("status", [408, 429, 502])
def test_busy_or_broken_receivers_are_retried(env, receiver, status):
    _, repo, queue = env
    receiver.statuses[:] = [status]
    call, stored = stored_call(repo)
    (job_id,) = notify.enqueue_events(queue, notify.events_for(call, stored, card_with_violations())[:1])
    work(queue)
    assert Job.fetch(job_id, connection=queue.connection).get_status() == JobStatus.SCHEDULED


def test_an_unreachable_receiver_is_retried(env, make_settings, redis_url):
    settings, repo, queue = env
    from tests.conftest import free_port

    activate(WorkerContext(store=repo, settings=make_settings(
        redis_url=redis_url, outgoing_webhook_secret=SECRET, allow_private_urls=True,
        outgoing_webhook_url=f"http://127.0.0.1:{free_port()}/x")))
    call, stored = stored_call(repo)
    (job_id,) = notify.enqueue_events(queue, notify.events_for(call, stored, card_with_violations())[:1])
    work(queue)
    assert Job.fetch(job_id, connection=queue.connection).get_status() == JobStatus.SCHEDULED


def test_nothing_is_sent_when_no_url_is_set(env, make_settings, redis_url, receiver):
    _, repo, queue = env
    settings = make_settings(redis_url=redis_url, outgoing_webhook_secret=SECRET)
    call, stored = stored_call(repo)
    assert notify.notify_scored(settings, call, stored, card_with_violations(),
                                connection=queue.connection) == []
    assert queue.count == 0
    work(queue)
    assert receiver.received == []


def test_a_url_without_a_secret_or_with_a_short_one_is_refused_at_start(make_settings, receiver):
    for secret in (None, "", "short-secret"):
        with pytest.raises(ValidationError, match="QA_OUTGOING_WEBHOOK_SECRET") as caught:
            make_settings(outgoing_webhook_url=receiver.url, outgoing_webhook_secret=secret)
        assert secret is None or not secret or secret not in str(caught.value)  # never echoed


def test_a_loopback_receiver_is_refused_without_the_setting(env, make_settings, redis_url, receiver):
    _, repo, queue = env
    activate(WorkerContext(store=repo, settings=make_settings(  # allow_private_urls off
        redis_url=redis_url, outgoing_webhook_url=receiver.url, outgoing_webhook_secret=SECRET)))
    call, stored = stored_call(repo)
    (job_id,) = notify.enqueue_events(queue, notify.events_for(call, stored, card_with_violations())[:1])
    work(queue)
    assert receiver.received == []
    job = Job.fetch(job_id, connection=queue.connection)
    assert job.get_status() == JobStatus.FAILED  # refused for good, not retried
    assert "QA_ALLOW_PRIVATE_URLS" in (job.latest_result().exc_string or "")


def test_a_processed_call_sends_its_webhooks(env, receiver):
    """The worker's job stores the scorecard, then queues the webhooks on the notify queue."""
    from qa_service.pipeline import load_engines

    settings, repo, queue = env
    current().engines_loaded = load_engines(settings, speech=False)  # a transcript call needs no speech model
    chat = (REPO_ROOT / "samples" / "transcript-chat.json").read_bytes()
    call_id = str(uuid.uuid4())
    path = write_bytes(settings.storage_dir, call_id, chat, ".json")
    repo.add_call(NewCall(
        id=call_id, external_id="ext-chat", agent_id="agent-mira", call_date=date(2026, 10, 14),
        rubric_id="harbourline-intake", rubric_version="2026.10", policy_pack_id="valdoria-residence",
        policy_pack_version="2026-10-01", input_kind="transcript", input_path=str(path)))
    jobs.process_call(call_id)
    card = repo.get_scorecard(call_id).data
    assert queue.count == 1 + len(card["violations"])
    work(queue)

    assert len(receiver.received) == 1 + len(card["violations"])
    assert all(valid_signature(h, b) for h, b in receiver.received)
    scored = json.loads(receiver.received[0][1])
    assert (scored["event"], scored["call_id"], scored["external_id"], scored["score"]) == \
           ("call.scored", call_id, "ext-chat", card["score"])
    spoken = [s["text"] for s in card["transcript"] if len(s["text"]) > 20]
    assert spoken
    for _, body in receiver.received:
        assert not any(text.encode() in body for text in spoken)


def test_the_worker_works_the_notify_queue_and_brings_back_due_retries(env, receiver, monkeypatch):
    settings, repo, queue = env
    # No calls to score here: a context whose engines count as loaded skips loading the models.
    context = WorkerContext(settings=settings, store=repo, engines_loaded=object())
    receiver.statuses[:] = [500]
    call, stored = stored_call(repo)
    (job_id,) = notify.enqueue_events(queue, notify.events_for(call, stored, card_with_violations())[:1])

    assert run_worker(settings, burst=True, context=context)  # attempt 1: HTTP 500, a retry is scheduled
    assert len(receiver.received) == 1
    wait_until(lambda: Job.fetch(job_id, connection=queue.connection).get_status() == JobStatus.SCHEDULED
               and queue.scheduled_job_registry.get_jobs_to_schedule(), timeout=5, interval=0.1, what="due")
    # Its maintenance puts the due retry back, then runs it.
    assert run_worker(settings, burst=True, context=context)
    assert len(receiver.received) == 2
    assert Job.fetch(job_id, connection=queue.connection).get_status() == JobStatus.FINISHED
