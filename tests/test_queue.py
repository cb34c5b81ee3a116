"""Jobs, the reconciler and a real worker process against a private Redis.

The fast tests cover paths that never reach the models (lost jobs, missing input, bad rules);
the slow end-to-end test runs `python worker.py` with the real pipeline.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import date
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus

from qa_service import queueing
from qa_service.api.webhooks import sign
from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.errors import InputError, TransientError
from qa_service.storage import NewCall, open_repository
from qa_service.storage.fetch import UrlRefused, fetch_recording
from qa_service.storage.inputs import write_bytes
from qa_service.storage.objects import input_store
from qa_service.worker import calls as worker_calls
from qa_service.worker import inputs as worker_inputs
from qa_service.worker import jobs, lease, recovery
from qa_service.worker.context import WorkerContext, activate, current
from tests.conftest import REPO_ROOT

RUBRIC = (REPO_ROOT / "samples" / "rubric.yaml").read_text()
POLICIES = (REPO_ROOT / "samples" / "policies.yaml").read_text()
CHAT = (REPO_ROOT / "samples" / "transcript-chat.json").read_bytes()


def seed_rules(repo) -> None:
    for kind, rid, version, text in (("rubric", "harbourline-intake", "2026.10", RUBRIC),
                                     ("policy_pack", "valdoria-residence", "2026-10-01", POLICIES)):
        repo.put_rules(kind, rid, version, hashlib.sha256(text.encode()).hexdigest(), text)


def add_call(repo, settings, data: bytes | None = CHAT, kind: str = "transcript", **kw):
    call_id = str(uuid.uuid4())
    path = write_bytes(settings.storage_dir, call_id, data, ".json") if data is not None else None
    values = dict(id=call_id, agent_id="agent-mira", call_date=date(2026, 10, 14),
                  rubric_id="harbourline-intake", rubric_version="2026.10",
                  policy_pack_id="valdoria-residence", policy_pack_version="2026-10-01", input_kind=kind,
                  input_path=str(path) if path else None)
    values.update(kw)
    call, _ = repo.add_call(NewCall(**values))
    return call


def age(repo, call_id: str, seconds: float = 3600) -> None:
    """Move a call's last heartbeat into the past."""
    from datetime import UTC, datetime, timedelta

    from qa_service.storage import tables

    with repo.engine.begin() as conn:
        conn.execute(tables.calls.update().where(tables.calls.c.id == call_id)
                     .values(updated_at=datetime.now(UTC) - timedelta(seconds=seconds)))


@pytest.fixture
def env(make_settings, redis_url, redis_conn):
    settings = make_settings(redis_url=redis_url)
    repo = open_repository(settings.database_url)
    seed_rules(repo)
    activate(WorkerContext(settings=settings, store=repo))
    queue = Queue(settings.queue_name, connection=redis_conn)
    yield settings, repo, queue
    activate(None)
    repo.dispose()


def test_enqueue_uses_the_call_id_and_the_dotted_path(env):
    settings, repo, queue = env
    call = add_call(repo, settings)
    job = queueing.enqueue_call(queue, call.id, timeout=123)
    assert (job.id, job.args, job.timeout) == (call.id, (call.id,), 123)
    assert job.func_name == "qa_service.worker.jobs.process_call"
    assert queue.job_ids == [call.id]


def test_missing_input_fails_the_call_with_a_reason(env):
    settings, repo, queue = env
    call = add_call(repo, settings, data=None)
    assert jobs.process_call(call.id) == call.id
    failed = repo.get_call(call.id)
    assert failed.status == "failed" and "not in QA_STORAGE_DIR" in failed.failure_reason
    assert failed.attempts == 1


def test_other_errors_are_recorded_and_reraised(env):
    settings, repo, queue = env
    bad = RUBRIC.replace("pass_mark: 75", "pass_mark: lots").replace('"2026.10"', '"broken"')
    repo.put_rules("rubric", "harbourline-intake", "broken", hashlib.sha256(bad.encode()).hexdigest(), bad)
    call = add_call(repo, settings, rubric_version="broken")
    with pytest.raises(Exception, match="pass_mark"):
        jobs.process_call(call.id)
    failed = repo.get_call(call.id)
    assert failed.status == "failed" and "pass_mark" in failed.failure_reason
    assert "retry" in failed.failure_reason
    assert Path(failed.input_path).is_file(), "input is kept after an internal failure, so a retry can work"


def test_failed_job_keeps_its_traceback_in_rq(env, redis_conn):
    settings, repo, queue = env
    call = add_call(repo, settings, policy_pack_version="9999")  # not stored: NotFound inside the job
    queueing.enqueue_call(queue, call.id, timeout=3600)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    job = Job.fetch(call.id, connection=redis_conn)
    assert job.get_status() == JobStatus.FAILED
    assert "NotFound" in job.latest_result().exc_string
    assert repo.get_call(call.id).status == "failed"


def test_done_or_failed_calls_are_not_processed_by_a_leftover_job(env):
    settings, repo, queue = env
    done = add_call(repo, settings)
    # The run that finished it was stopped before it deleted the input.
    repo.finish_call(done.id, {"score": 1.0, "passed": False, "rubric": {}})
    assert jobs.process_call(done.id) == done.id
    assert repo.get_scorecard(done.id).version == 1 and repo.get_call(done.id).attempts == 0
    assert not Path(done.input_path).exists() and repo.get_call(done.id).input_path is None
    failed = add_call(repo, settings)
    repo.fail_call(failed.id, "the audio could not be decoded")
    jobs.process_call(failed.id)
    assert repo.get_call(failed.id).failure_reason == "the audio could not be decoded"
    assert repo.get_call(failed.id).attempts == 0
    assert Path(failed.input_path).is_file(), "a failed call keeps its input for a retry"


def test_inputs_left_by_a_stopped_worker_are_discarded(env):
    settings, repo, queue = env
    left = add_call(repo, settings)
    repo.finish_call(left.id, {"score": 1.0, "passed": True, "rubric": {}})
    waiting = add_call(repo, settings)
    assert worker_inputs.discard_leftover_inputs(repo, settings, input_store(settings)) == 1
    assert not Path(left.input_path).exists() and repo.get_call(left.id).input_path is None
    assert Path(waiting.input_path).is_file(), "a call not yet processed keeps its input"
    assert worker_inputs.discard_leftover_inputs(repo, settings, input_store(settings)) == 0


def test_reconcile_requeues_lost_calls_only(env, redis_conn):
    settings, repo, queue = env
    lost_queued = add_call(repo, settings)                       # row queued, job never reached Redis
    lost_processing = add_call(repo, settings)                   # worker died mid-job, job hash gone
    repo.start_call(lost_processing.id)
    age(repo, lost_processing.id)                                # ... and its heartbeat stopped
    waiting = add_call(repo, settings)                           # properly queued: leave alone
    queueing.enqueue_call(queue, waiting.id, timeout=3600)
    gave_up = add_call(repo, settings)                           # died too often: fail it
    for _ in range(worker_calls.MAX_ATTEMPTS):
        repo.start_call(gave_up.id)
    age(repo, gave_up.id)
    done = add_call(repo, settings)
    repo.finish_call(done.id, {"score": 1.0, "passed": False, "rubric": {}})

    requeued = recovery.reconcile(current(), queue)
    assert sorted(requeued) == sorted([lost_queued.id, lost_processing.id])
    assert sorted(queue.job_ids) == sorted([waiting.id, lost_queued.id, lost_processing.id])
    assert repo.get_call(lost_processing.id).status == "queued"
    assert repo.get_call(gave_up.id).status == "failed"
    assert "stopped 3 times" in repo.get_call(gave_up.id).failure_reason
    assert repo.get_call(done.id).status == "done"
    assert recovery.reconcile(current(), queue) == [], "a second pass finds nothing more to do"


# -- a real worker process -----------------------------------------------------------------------

class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def speech_wav(path: Path) -> Path:
    """About three seconds of synthetic speech from espeak-ng."""
    subprocess.run(["espeak-ng", "-s", "190", "-w", str(path),
                    "Thank you for calling Harbourline. This call is recorded."], check=True)
    return path


def wait_for(client: TestClient, headers: dict, call_id: str, timeout: float, seen: set[str]) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        body = client.get(f"/v1/calls/{call_id}", headers=headers).json()
        seen.add(body["status"])
        if body["status"] in ("done", "failed"):
            return body
        time.sleep(0.2)
    raise AssertionError(f"call {call_id} did not finish within {timeout} s")


@pytest.mark.slow
def test_worker_process_end_to_end(make_settings, redis_url, redis_conn, tmp_path):
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed (needed to make test speech)")
    settings = make_settings(redis_url=redis_url, asr_beam_size=1, allow_private_urls=True)
    app = create_app(settings)
    seed_rules(app.state.repo)
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {create_key(app.state.repo, 'qa', 'e2e')}"}
    form = {"agent_id": "agent-mira", "call_date": "2026-10-14", "rubric_id": "harbourline-intake",
            "policy_pack_id": "valdoria-residence"}

    def submit(field: str, name: str, data: bytes, **extra) -> str:
        r = client.post("/v1/calls", data={**form, **extra}, files={field: (name, data)}, headers=headers)
        assert r.status_code == 202, r.text
        return r.json()["id"]

    good_audio = speech_wav(tmp_path / "speech.wav").read_bytes()
    empty = client.post("/v1/calls", data=form, files={"audio": ("e.wav", b"")}, headers=headers)
    assert empty.status_code == 400
    # Bad calls go first: the worker must survive them and still score what follows.
    noise_id = submit("audio", "noise.wav", os.urandom(20_000))
    truncated_id = submit("audio", "cut.wav", good_audio[:40])
    chat_id = submit("transcript", "chat.json", CHAT, call_id="chat-1")
    audio_id = submit("audio", "speech.wav", good_audio, channels="mono", call_id="audio-1")
    assert client.get(f"/v1/calls/{chat_id}", headers=headers).json()["status"] == "queued"
    # A telephony system posts a finished call; the worker downloads the recording over HTTP.
    served = tmp_path / "served"
    served.mkdir()
    (served / "pbx-77.wav").write_bytes(good_audio)
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_Quiet, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    event = json.dumps({"external_call_id": "pbx-77", "agent_id": "agent-mira",
                        "start_time": "2026-10-14T10:00:00Z", "channels": "mono",
                        "recording_url": f"http://127.0.0.1:{server.server_address[1]}/pbx-77.wav",
                        "rubric_id": "harbourline-intake", "policy_pack_id": "valdoria-residence"}).encode()
    hook = client.post("/v1/webhooks/telephony", content=event,
                       headers={"X-Signature": sign(settings.webhook_secret, event)})
    assert hook.status_code == 202, hook.text
    hook_id = hook.json()["id"]

    env = {**os.environ, "QA_DATABASE_URL": settings.database_url, "QA_REDIS_URL": redis_url,
           "QA_STORAGE_DIR": str(settings.storage_dir), "QA_MODEL_CACHE_DIR": str(settings.model_cache_dir),
           "QA_ASR_BEAM_SIZE": "1", "QA_ALLOW_PRIVATE_URLS": "true", "PYTHONPATH": str(REPO_ROOT)}
    log_path = tmp_path / "worker.log"
    with open(log_path, "wb") as log:
        worker = subprocess.Popen([sys.executable, "worker.py"], cwd=REPO_ROOT, env=env, stdout=log,
                                  stderr=subprocess.STDOUT)
    try:
        seen: set[str] = set()
        results = {cid: wait_for(client, headers, cid, 300, seen)
                   for cid in (noise_id, truncated_id, chat_id, audio_id, hook_id)}
        assert worker.poll() is None, "the worker must keep running after bad input"
    finally:
        server.shutdown()
        server.server_close()
        worker.send_signal(signal.SIGTERM)
        try:
            stopped = worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            stopped = None
    log_text = log_path.read_text(errors="replace")
    assert stopped == 0, f"an idle worker must stop on SIGTERM: {log_text[-2000:]}"

    for bad in (noise_id, truncated_id):
        assert results[bad]["status"] == "failed", log_text[-3000:]
        reason = results[bad]["failure_reason"]
        assert "audio" in reason and "internal error" not in reason
        r = client.get(f"/v1/calls/{bad}/scorecard", headers=headers)
        assert r.status_code == 409

    for good in (chat_id, audio_id, hook_id):
        assert results[good]["status"] == "done", (results[good], log_text[-3000:])
        card = client.get(f"/v1/calls/{good}/scorecard", headers=headers)
        assert card.status_code == 200
        data = card.json()
        assert data["format"] == "scorecard/v1" and data["agent_id"] == "agent-mira"
        assert data["rubric"]["id"] == "harbourline-intake" and 0 <= data["score"] <= 100
        assert data["transcript"], "the scorecard carries the (redacted) transcript"

    chat = client.get(f"/v1/calls/{chat_id}/scorecard", headers=headers).json()
    assert chat["call_id"] == "chat-1" and chat["models"]["source"] == "text"
    audio = client.get(f"/v1/calls/{audio_id}/scorecard", headers=headers).json()
    assert 2.0 < audio["duration_s"] < 8.0 and audio["models"]["source"] == "audio"
    spoken = " ".join(s["text"] for s in audio["transcript"]).lower()
    assert "recorded" in spoken, spoken
    greeting = next(c for c in audio["criteria"] if c["id"] == "recording_notice")
    assert greeting["passed"]

    # Raw inputs are deleted after processing (keep_raw_audio is off); a recording leaves only its
    # redacted copy, a transcript leaves nothing.
    left = sorted(p.relative_to(settings.storage_dir).as_posix() for p in settings.storage_dir.rglob("*")
                  if p.is_file())
    assert left == sorted(f"{cid}/redacted.wav" for cid in (audio_id, hook_id)), left
    # The worker's log names calls by id and never quotes what was said.
    assert chat_id in log_text and "fax the form" not in log_text.lower()
    assert "harbourline" not in log_text.lower()
    agent = client.get("/v1/agents/agent-mira/scorecards", headers=headers).json()
    assert agent["aggregate"]["count"] == 3
    hooked = client.get(f"/v1/calls/{hook_id}/scorecard", headers=headers).json()
    assert hooked["call_id"] == "pbx-77" and "recorded" in " ".join(t["text"] for t in hooked["transcript"])


# -- recordings fetched for webhook calls ----------------------------------------------------------

class _Recordings(BaseHTTPRequestHandler):
    wav = b"RIFF" + b"\x00" * 2000

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        routes = {
            "/ok.wav": (200, "audio/wav", self.wav, {}),
            "/page": (200, "text/html; charset=utf-8", b"<html>login</html>", {}),
            "/missing.wav": (404, "text/plain", b"gone", {}),
            "/broken.wav": (503, "text/plain", b"busy", {}),
            "/big.wav": (200, "audio/wav", b"\x00" * 5000, {}),
            "/hop": (302, "text/plain", b"", {"Location": "/ok.wav"}),
            "/loop": (302, "text/plain", b"", {"Location": "/loop"}),
        }
        status, ctype, body, extra = routes.get(self.path, (404, "text/plain", b"", {}))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in extra.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def recordings():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recordings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.mark.parametrize(("path", "error", "message"), [
    ("/page", InputError, "text/html"),
    ("/missing.wav", InputError, "HTTP 404"),
    ("/broken.wav", TransientError, "HTTP 503"),
    ("/big.wav", InputError, "larger than the limit of 4000 bytes"),
    ("/loop", InputError, "redirects more than"),
])
def test_fetch_refuses_what_is_not_a_recording(make_settings, recordings, path, error, message):
    settings = make_settings(allow_private_urls=True, max_upload_bytes=4000)
    call_id = str(uuid.uuid4())
    with pytest.raises(error, match=message):
        fetch_recording(recordings + path, input_store(settings), call_id, settings)
    assert not (settings.storage_dir / call_id).exists()


@pytest.mark.parametrize("path", ["/ok.wav", "/hop"])
def test_fetch_saves_the_recording(make_settings, recordings, path):
    settings = make_settings(allow_private_urls=True)
    call_id = str(uuid.uuid4())
    saved = Path(fetch_recording(recordings + path, input_store(settings), call_id, settings))
    assert saved.read_bytes() == _Recordings.wav and saved.parent.name == call_id and saved.suffix == ".wav"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_fetch_refuses_loopback_without_the_setting(make_settings, recordings, host):
    settings = make_settings()
    url = recordings.replace("127.0.0.1", host) + "/ok.wav"
    with pytest.raises(UrlRefused, match="QA_ALLOW_PRIVATE_URLS"):
        fetch_recording(url, input_store(settings), str(uuid.uuid4()), settings)


def test_webhook_call_with_a_private_url_fails_readably(env, recordings):
    settings, repo, queue = env
    # "localhost" passes the webhook's literal-address check; the worker resolves it and refuses.
    call = add_call(repo, settings, data=None, kind="audio", source="webhook",
                    input_url=recordings.replace("127.0.0.1", "localhost") + "/ok.wav")
    jobs.process_call(call.id)
    failed = repo.get_call(call.id)
    assert failed.status == "failed" and "QA_ALLOW_PRIVATE_URLS" in failed.failure_reason
    assert "localhost" not in failed.failure_reason


def test_a_held_lease_stops_a_second_worker(env, redis_conn):
    settings, repo, queue = env
    call = add_call(repo, settings)
    held = redis_conn.lock(lease.lease_key(call.id), timeout=60)
    assert held.acquire(blocking=False)
    queueing.enqueue_call(queue, call.id, timeout=3600)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    untouched = repo.get_call(call.id)
    assert (untouched.status, untouched.attempts) == ("queued", 0)
    assert recovery.reconcile(current(), queue) == [], "a call under a live lease is not recovered"
    held.release()


def test_lease_is_taken_and_released_by_a_job(env, redis_conn):
    settings, repo, queue = env
    call = add_call(repo, settings, data=None)  # fails fast: no input
    queueing.enqueue_call(queue, call.id, timeout=3600)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert repo.get_call(call.id).status == "failed"
    assert not redis_conn.exists(lease.lease_key(call.id))


def test_reconcile_gives_a_just_started_job_time_to_take_its_lease(env, redis_conn):
    from datetime import UTC, datetime, timedelta

    settings, repo, queue = env
    call = add_call(repo, settings)
    job = queueing.enqueue_call(queue, call.id, timeout=3600)
    queue.remove(job.id)
    job.set_status(JobStatus.STARTED)
    job.started_at = datetime.now(UTC)
    job.save()
    assert recovery.reconcile(current(), queue) == []
    job.started_at = datetime.now(UTC) - timedelta(seconds=lease.LEASE_TTL_S + 5)
    job.save()
    assert recovery.reconcile(current(), queue) == [call.id]


KEY = "m3LQ0lOQ4B0Yl7I1tq3yJ0o9cXb2oF8kZb8oQm3x2zU="  # a Fernet key for tests


@pytest.mark.parametrize(("kind", "keep", "kept"), [
    ("audio", {}, False),
    ("audio", {"keep_raw_audio": True}, True),
    ("transcript", {"keep_raw_audio": True}, False),
    ("transcript", {"keep_raw_transcript": True}, True),
])
def test_raw_input_is_deleted_unless_a_setting_keeps_it_encrypted(make_settings, kind, keep, kept):
    settings = make_settings(**keep, encryption_key=KEY)
    repo = open_repository(settings.database_url)
    seed_rules(repo)
    call = add_call(repo, settings, kind=kind)
    original = Path(call.input_path).read_bytes()
    worker_inputs.discard_input(call, repo, settings, input_store(settings))
    assert not Path(call.input_path).exists()  # never left in plain form
    stored = repo.get_call(call.id).input_path
    assert (stored is not None) == kept
    if kept:
        sealed = Path(stored)
        assert sealed.name.endswith(".sealed") and original not in sealed.read_bytes()
        # Processing the call again (a retry) decrypts it into a private copy for the run only.
        with worker_inputs.call_input(repo.get_call(call.id), repo, settings, input_store(settings)) as again:
            assert again.read_bytes() == original and again != sealed
            assert oct(again.stat().st_mode & 0o777) == oct(0o600)
        assert not again.exists() and sealed.is_file()
    repo.dispose()


def test_keeping_raw_input_needs_an_encryption_key(make_settings):
    with pytest.raises(ValueError, match="QA_ENCRYPTION_KEY"):
        make_settings(keep_raw_audio=True)
    with pytest.raises(ValueError, match="Fernet key"):
        make_settings(keep_raw_audio=True, encryption_key="not-a-key")


def test_a_job_over_its_timeout_fails_the_call_readably(env, redis_conn, monkeypatch):
    settings, repo, queue = env
    call = add_call(repo, settings)
    # Stand-in for a pipeline that hangs; the timeout machinery around it is RQ's real one.
    monkeypatch.setattr(worker_calls, "_score", lambda *a: time.sleep(10))
    queueing.enqueue_call(queue, call.id, timeout=1)
    started = time.monotonic()
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert time.monotonic() - started < 8
    failed = repo.get_call(call.id)
    assert failed.status == "failed" and "longer than the job timeout" in failed.failure_reason
    assert Job.fetch(call.id, connection=redis_conn).get_status() == JobStatus.FAILED


def test_a_dripping_download_hits_the_total_deadline():
    from qa_service.storage.fetch import _Reader

    def drip():
        while True:
            time.sleep(0.05)
            yield b"x"

    with pytest.raises(TransientError, match="took longer"):
        _Reader(drip(), deadline_s=0.3).read(1024)


def test_reconcile_does_not_wait_for_the_lease_of_a_process_that_exited(env, redis_conn):
    import socket
    from datetime import UTC, datetime

    settings, repo, queue = env
    call = add_call(repo, settings)
    repo.start_call(call.id)
    job = queueing.enqueue_call(queue, call.id, timeout=3600)
    queue.remove(job.id)
    job.set_status(JobStatus.STARTED)
    job.started_at = datetime.now(UTC)  # just started: without the lease check it would be left alone
    job.save()
    gone = subprocess.Popen(["true"])
    gone.wait()
    redis_conn.set(lease.lease_key(call.id), f"{socket.gethostname()}|{gone.pid}|x", ex=60)
    assert recovery.reconcile(current(), queue) == [call.id]
    assert repo.get_call(call.id).status == "queued"
    # A holder on another machine, or a live process here, is trusted until its lease lapses.
    for holder in (f"elsewhere|{gone.pid}|x", f"{socket.gethostname()}|{os.getppid()}|x"):
        other = add_call(repo, settings)
        redis_conn.set(lease.lease_key(other.id), holder, ex=60)
        assert recovery.reconcile(current(), queue) == []


def test_a_processing_call_with_a_recent_heartbeat_is_left_alone(env):
    # Redis restarted: the lease and the job are gone, but the worker is alive and touching the row.
    settings, repo, queue = env
    call = add_call(repo, settings)
    repo.start_call(call.id)
    repo.touch_call(call.id)
    assert recovery.reconcile(current(), queue) == []
    age(repo, call.id, lease.LEASE_TTL_S + 5)
    assert recovery.reconcile(current(), queue) == [call.id]


def test_a_lease_lost_in_redis_is_taken_again_and_the_row_touched(redis_conn, monkeypatch):
    monkeypatch.setattr(lease, "LEASE_REFRESH_S", 0.1)
    touched = []
    key = lease.lease_key(str(uuid.uuid4()))
    held = lease.Lease(redis_conn, key, touch=lambda: touched.append(1))
    assert held.acquire()
    redis_conn.delete(key)  # what a Redis restart without persistence does
    time.sleep(0.5)
    assert redis_conn.get(key).decode() == held._token
    assert len(touched) >= 2
    held.release()
    assert not redis_conn.exists(key)


def _flaky_score(failures: int):
    """A stand-in for the pipeline that fails transiently `failures` times, then scores for real."""
    real = worker_calls._score
    calls = {"n": 0}

    def score(context, call):
        calls["n"] += 1
        if calls["n"] <= failures:
            raise TransientError("the recording server answered HTTP 503")
        return real(context, call)

    return score


def test_transient_failure_is_tried_again_after_a_backoff(env, redis_conn, monkeypatch):
    settings, repo, queue = env
    monkeypatch.setattr(worker_calls, "_score", _flaky_score(failures=1))
    monkeypatch.setattr(worker_calls, "TRANSIENT_BACKOFF_S", 0.0)
    call = add_call(repo, settings)
    queueing.enqueue_call(queue, call.id, timeout=3600)
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    waiting = repo.get_call(call.id)
    assert (waiting.status, waiting.attempts) == ("queued", 1)  # waiting out its backoff, not failed
    assert recovery.reconcile(current(), queue) == []  # the scheduled retry is not mistaken for a lost job
    assert recovery.enqueue_due_retries(queue) == 1  # the worker's maintenance brings it back when due
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    done = repo.get_call(call.id)
    assert (done.status, done.attempts) == ("done", 2)
    assert repo.get_scorecard(call.id).version == 1


def test_transient_failures_give_up_after_the_last_attempt(env, redis_conn, monkeypatch):
    settings, repo, queue = env
    monkeypatch.setattr(worker_calls, "_score", _flaky_score(failures=99))
    monkeypatch.setattr(worker_calls, "TRANSIENT_BACKOFF_S", 0.0)
    call = add_call(repo, settings)
    queueing.enqueue_call(queue, call.id, timeout=3600)
    for _ in range(worker_calls.MAX_ATTEMPTS):
        SimpleWorker([queue], connection=redis_conn).work(burst=True)
        recovery.enqueue_due_retries(queue)
    failed = repo.get_call(call.id)
    assert (failed.status, failed.attempts) == ("failed", worker_calls.MAX_ATTEMPTS)
    assert "HTTP 503" in failed.failure_reason
    assert f"after {worker_calls.MAX_ATTEMPTS} attempts" in failed.failure_reason


def test_backoff_grows_fourfold(env, monkeypatch):
    settings, repo, queue = env
    call = add_call(repo, settings)
    backoff = worker_calls.TRANSIENT_BACKOFF_S
    assert [worker_calls.retry_later(current(), call.id, n) for n in (1, 2)] == [backoff, 4 * backoff]
    scheduled = queue.scheduled_job_registry.get_job_ids()
    assert sorted(scheduled) == [queueing.retry_job_id(call.id, 1), queueing.retry_job_id(call.id, 2)]
