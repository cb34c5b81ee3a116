"""Call inputs at rest: however a call ends, no plain personal data stays behind, and storage is private.

Every way a call can end is driven through the real job function on a real Redis (RQ's SimpleWorker,
its job timeout, a worker process killed with SIGKILL and the reconciler), with text transcripts so
no speech model is needed. Then the storage folder, every column of every table, every Redis key and
the log are scanned for the customer's name and phone number, and the mode of every file and folder
under storage is checked, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import stat
import time
import uuid
import zlib
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from rq import Queue, SimpleWorker

from qa_service import pipeline, queueing
from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.errors import TransientError
from qa_service.storage import NewCall, open_repository, tables
from qa_service.storage.inputs import call_dir, write_bytes
from qa_service.storage.objects import input_store, make_client
from qa_service.worker import calls as worker_calls
from qa_service.worker import inputs as worker_inputs
from qa_service.worker import jobs, recovery
from qa_service.worker.context import WorkerContext, activate, current
from tests.conftest import REPO_ROOT

RUBRIC = (REPO_ROOT / "samples" / "rubric.yaml").read_text()
POLICIES = (REPO_ROOT / "samples" / "policies.yaml").read_text()
KEY = "m3LQ0lOQ4B0Yl7I1tq3yJ0o9cXb2oF8kZb8oQm3x2zU="  # Fernet keys for tests
OTHER_KEY = "Sv0b2nJcKqf8S3zGm7m1pJ6gq0wJ5nQGz1vY7qk8r2E="

CALL = b"""Agent: Thanks for calling Harbourline, my name is Mira, and this call is recorded.
Customer: Hi, this is Adaeze Okonkwo-Baptiste, my phone number is 415 555 0132.
Agent: Thank you Adaeze. Is there anything else I can help you with?
"""
# No 'Agent:' / 'Customer:' lines: the worker refuses it as bad input.
UNPARSEABLE = b"Adaeze Okonkwo-Baptiste rang from 415 555 0132 about her permit fee\n"
SECRETS = [b"Okonkwo", b"Adaeze", b"555 0132", b"5550132"]

# Calls are named by their external id (the stage sees it as the call's id); these fail for a reason
# other than bad input, so a retry may still need their input.
RETRYABLE = ("rules-missing", "rules-broken", "timeout", "transient", "killed", "rerun", "rerun-killed")
MODES = {
    "no key": {},
    "key": {"encryption_key": KEY},
    "key, raw kept": {"encryption_key": KEY, "keep_raw_transcript": True},
    "no key, 0 h": {"failed_input_retention_hours": 0},
}


@pytest.fixture(scope="module")
def text_engines() -> Any:
    """spaCy and the redactor, without the speech models (every call here is a text transcript)."""
    from qa_service.pipeline import load_engines
    from qa_service.settings import Settings

    return load_engines(Settings(), speech=False)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Files and folders get their modes from the service, not from a strict umask of the test run."""
    old = os.umask(0o000)
    yield
    os.umask(old)


class Scenario:
    """A repository, a queue, the stage stand-in and the helpers that make calls end each way."""

    def __init__(self, settings: Any, redis_conn: Any, engines: Any, monkeypatch: pytest.MonkeyPatch):
        self.settings = settings
        self.redis = redis_conn
        self.repo = open_repository(settings.database_url)
        for kind, rid, version, text in (("rubric", "harbourline-intake", "2026.10", RUBRIC),
                                         ("policy_pack", "valdoria-residence", "2026-10-01", POLICIES)):
            self.repo.put_rules(kind, rid, version, hashlib.sha256(text.encode()).hexdigest(), text)
        broken = RUBRIC.replace("pass_mark: 75", "pass_mark: lots")
        self.repo.put_rules("rubric", "harbourline-intake", "broken",
                            hashlib.sha256(broken.encode()).hexdigest(), broken)
        self.queue = Queue(settings.queue_name, connection=redis_conn)
        self.inputs = input_store(settings)
        self.engines = engines
        self.ids: dict[str, str] = {}
        # What the stage does per call, and which plain copies of the call it saw on disk while running.
        self.behaviour: dict[str, str] = {}
        self.seen: dict[str, list[list[str]]] = {}
        activate(WorkerContext(settings=settings, store=self.repo, engines_loaded=engines))
        real = pipeline.process_transcript

        def stage(transcript: Any, meta: Any, *args: Any, **kwargs: Any) -> Any:
            folder = call_dir(settings.storage_dir, self.ids[meta.call_id])
            self.seen.setdefault(meta.call_id, []).append(
                sorted(p.name for p in folder.iterdir() if has_secret(p.read_bytes())))
            what = self.behaviour.get(meta.call_id)
            if what == "hang":
                (settings.storage_dir.parent / f"started-{meta.call_id}").touch()  # outside storage
                time.sleep(30)
            if what == "transient":
                raise TransientError("the database did not answer")
            if what == "fail":
                raise RuntimeError("the stage broke")
            return real(transcript, meta, *args, **kwargs)

        monkeypatch.setattr(pipeline, "process_transcript", stage)
        monkeypatch.setattr(worker_calls, "TRANSIENT_BACKOFF_S", 0.0)

    def add(self, label: str, data: bytes = CALL, **kw: Any) -> str:
        call_id = str(uuid.uuid4())
        path = self.inputs.put_input(call_id, io.BytesIO(data), ".txt", max_bytes=len(data))
        values: dict[str, Any] = dict(
            id=call_id, external_id=label, agent_id="agent-mira", call_date=date(2026, 10, 14),
            rubric_id="harbourline-intake", rubric_version="2026.10", policy_pack_id="valdoria-residence",
            policy_pack_version="2026-10-01", input_kind="transcript", input_path=str(path))
        values.update(kw)
        self.repo.add_call(NewCall(**values))
        self.ids[label] = call_id
        return call_id

    def work(self, call_id: str, timeout: int | None = None) -> None:
        """Queue the call and let a real RQ worker run it (with the job timeout given)."""
        queueing.enqueue_call(self.queue, call_id, timeout=timeout)
        SimpleWorker([self.queue], connection=self.redis).work(burst=True)

    def kill_mid_run(self, label: str) -> None:
        """Run the call in a worker process and SIGKILL it while the run holds the call's input."""
        self.behaviour[label] = "hang"
        started = self.settings.storage_dir.parent / f"started-{label}"
        pid = os.fork()
        if pid == 0:  # the worker: its own database connections, the stage that never returns
            try:
                activate(WorkerContext(settings=self.settings, engines_loaded=self.engines,
                                       store=open_repository(self.settings.database_url)))
                jobs.process_call(self.ids[label])
            finally:
                os._exit(1)
        deadline = time.monotonic() + 60
        while not started.exists():
            assert os.waitpid(pid, os.WNOHANG) == (0, 0), "the worker process ended before its run started"
            assert time.monotonic() < deadline, "the worker process did not start the run"
            time.sleep(0.02)
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)

    def reconcile_after_kills(self, call_id: str) -> None:
        """The killed worker's call is found by the reconciler; with its attempts used up, it fails."""
        while self.repo.get_call(call_id).attempts < worker_calls.MAX_ATTEMPTS:
            self.repo.start_call(call_id)  # as many more runs, killed the same way
        with self.repo.engine.begin() as conn:  # its heartbeat stopped a while ago
            conn.execute(tables.calls.update().where(tables.calls.c.id == call_id)
                         .values(updated_at=datetime.now(UTC) - timedelta(minutes=5)))
        assert recovery.reconcile(current(), self.queue) == []
        assert self.repo.get_call(call_id).status == "failed"

    def retry(self, client: TestClient, headers: dict[str, str], call_id: str) -> Any:
        return client.post(f"/v1/calls/{call_id}/retry", headers=headers)


def has_secret(data: bytes) -> bool:
    return any(s in data for s in SECRETS)


def plain_copies(s: Scenario, log_text: str) -> set[str]:
    """Every place the customer's name or number can be read: files under storage, any column of any
    table, any Redis value (RQ compresses some), and the log."""
    found = {str(p) for p in s.settings.storage_dir.rglob("*") if p.is_file() and has_secret(p.read_bytes())}
    engine = s.repo.engine
    for table in sa.inspect(engine).get_table_names():
        with engine.connect() as conn:
            for row in conn.execute(sa.text(f'SELECT * FROM "{table}"')).mappings():
                text = json.dumps({k: v for k, v in row.items()}, default=str, ensure_ascii=False)
                if has_secret(text.encode()):
                    found.add(f"table {table}")
    for key in s.redis.scan_iter():
        kind = s.redis.type(key).decode()
        values: list[bytes] = []
        if kind == "string":
            values = [s.redis.get(key)]
        elif kind == "hash":
            values = list(s.redis.hgetall(key).values())
        elif kind == "list":
            values = s.redis.lrange(key, 0, -1)
        elif kind in ("set", "zset"):
            values = list(s.redis.smembers(key)) if kind == "set" else s.redis.zrange(key, 0, -1)
        elif kind == "stream":
            values = [v for _, fields in s.redis.xrange(key) for v in fields.values()]
        for value in values:
            try:
                value = zlib.decompress(value)
            except zlib.error:
                pass
            if has_secret(value):
                found.add(f"redis {key.decode()}")
    if has_secret(log_text.encode()):
        found.add("log")
    return found


def loose_modes(root: Path) -> list[str]:
    """Folders not 0700 and files not 0600 under (and including) the storage folder."""
    loose = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != (0o700 if path.is_dir() else 0o600):
            loose.append(f"{path.relative_to(root.parent)} {oct(mode)}")
    return loose


@pytest.mark.redis
@pytest.mark.parametrize("mode", list(MODES))
def test_every_way_a_call_ends_leaves_no_plain_input(mode, database_url, make_settings, redis_url, redis_conn,
                                                     text_engines, monkeypatch, caplog, open_umask):
    settings = make_settings(database_url=database_url, redis_url=redis_url, **MODES[mode])
    s = Scenario(settings, redis_conn, text_engines, monkeypatch)
    app = create_app(settings, repo=s.repo, queue=s.queue)
    client = TestClient(app)
    headers = {"Authorization": f"Bearer {create_key(s.repo, 'qa', 'qa staff')}"}
    caplog.set_level("DEBUG")
    try:
        s.work(s.add("done"))
        s.work(s.add("bad-input", UNPARSEABLE))
        s.work(s.add("rules-missing", policy_pack_version="2099-01-01"))
        s.work(s.add("rules-broken", rubric_version="broken"))
        s.behaviour["timeout"] = "hang"
        s.work(s.add("timeout"), timeout=1)
        s.behaviour["transient"] = "transient"
        s.add("transient")
        s.work(s.ids["transient"])
        for _ in range(worker_calls.MAX_ATTEMPTS - 1):
            assert recovery.enqueue_due_retries(s.queue) == 1
            SimpleWorker([s.queue], connection=redis_conn).work(burst=True)
        s.add("killed")
        s.kill_mid_run("killed")
        s.reconcile_after_kills(s.ids["killed"])
        # Retries that fail again: the second run of each reads its input back from where the first
        # failure left it (sealed, with a key).
        s.behaviour["rerun"] = s.behaviour["rerun-killed"] = "fail"
        for label in ("rerun", "rerun-killed"):
            s.work(s.add(label))
        if mode != "no key, 0 h":
            assert s.retry(client, headers, s.ids["rerun"]).status_code == 202
            SimpleWorker([s.queue], connection=redis_conn).work(burst=True)
            assert s.retry(client, headers, s.ids["rerun-killed"]).status_code == 202
            s.queue.empty()
            s.kill_mid_run("rerun-killed")
            s.reconcile_after_kills(s.ids["rerun-killed"])
    finally:
        activate(None)

    statuses = {label: s.repo.get_call(call_id).status for label, call_id in s.ids.items()}
    assert statuses == {label: "done" if label == "done" else "failed" for label in s.ids}

    inputs = {label: s.repo.get_call(call_id).input_path for label, call_id in s.ids.items()}
    found = plain_copies(s, caplog.text)
    if mode == "no key":
        # Kept for a retry, unencrypted but private, until the retention sweep: the inputs themselves.
        assert found == {inputs[label] for label in RETRYABLE}, found
    else:
        assert not found, found
    assert not loose_modes(settings.storage_dir), loose_modes(settings.storage_dir)
    # Each run had a plain copy of the call in storage to read: the scan above would see one left over.
    assert all(copies for runs in s.seen.values() for copies in runs), s.seen
    if mode in ("key", "key, raw kept"):
        assert s.seen["rerun"][1] == [".unsealed-input.txt"]  # the re-run read a run copy, not the input

    if mode in ("no key", "key"):
        assert inputs["done"] is None and inputs["bad-input"] is None
    if mode == "key":
        assert all(inputs[label].endswith(".sealed") for label in RETRYABLE), inputs
    if mode == "key, raw kept":
        assert all(path.endswith(".sealed") for path in inputs.values()), inputs
    if mode == "no key, 0 h":
        assert set(inputs.values()) == {None} and not any(settings.storage_dir.iterdir())
    for path in filter(None, inputs.values()):  # beside a kept input: no run copy, no partial file
        assert [p.name for p in Path(path).parent.iterdir()] == [Path(path).name], path
    s.repo.dispose()


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["no key", "key"])
def test_failed_inputs_are_deleted_after_the_retention_and_retry_then_says_so(
        mode, make_settings, redis_url, redis_conn, text_engines, monkeypatch, open_umask, capsys):
    settings = make_settings(redis_url=redis_url, failed_input_retention_hours=2, **MODES[mode])
    s = Scenario(settings, redis_conn, text_engines, monkeypatch)
    client = TestClient(create_app(settings, repo=s.repo, queue=s.queue))
    headers = {"Authorization": f"Bearer {create_key(s.repo, 'qa', 'qa staff')}"}
    try:
        for label in ("old", "recent"):
            s.behaviour[label] = "fail"
            s.work(s.add(label))
        old, recent = s.ids["old"], s.ids["recent"]
        with s.repo.engine.begin() as conn:
            conn.execute(tables.calls.update().where(tables.calls.c.id == old)
                         .values(updated_at=datetime.now(UTC) - timedelta(hours=2, minutes=1)))
        kept = Path(s.repo.get_call(old).input_path)
        assert kept.is_file() and kept.name.endswith(".sealed") == (mode == "key")

        assert worker_inputs.discard_leftover_inputs(s.repo, settings, input_store(settings)) == 1
        assert not call_dir(settings.storage_dir, old).exists() and s.repo.get_call(old).input_path is None
        assert Path(s.repo.get_call(recent).input_path).is_file(), "a recent failure stays retryable"
        assert worker_inputs.discard_leftover_inputs(s.repo, settings, input_store(settings)) == 0

        r = s.retry(client, headers, old)
        assert r.status_code == 409, r.text
        assert "no longer stored" in r.json()["detail"]
        assert "QA_FAILED_INPUT_RETENTION_HOURS" in r.json()["detail"]
        from qa_service.cli import main

        for name, value in (("QA_DATABASE_URL", settings.database_url), ("QA_REDIS_URL", redis_url),
                            ("QA_STORAGE_DIR", str(settings.storage_dir))):
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("QA_ENCRYPTION_KEY", raising=False)
        assert main(["retry", "old"]) == 1
        assert "QA_FAILED_INPUT_RETENTION_HOURS" in capsys.readouterr().err

        # Within the retention a retry scores the call, and its input goes as for any done call.
        s.behaviour.pop("recent")
        assert s.retry(client, headers, recent).status_code == 202
        SimpleWorker([s.queue], connection=redis_conn).work(burst=True)
        assert s.repo.get_call(recent).status == "done" and s.repo.get_call(recent).input_path is None
        assert not any(settings.storage_dir.iterdir())
    finally:
        activate(None)
        s.repo.dispose()


def test_inputs_are_private_whatever_the_umask(make_settings, open_umask):
    import numpy as np

    from qa_service.records import Audio
    from qa_service.storage.inputs import seal_input, unsealed, write_redacted_audio

    settings = make_settings()
    storage, call_id = settings.storage_dir, str(uuid.uuid4())
    # Folders an earlier version left open to everyone are closed again by the next write.
    call_dir(storage, call_id).mkdir(parents=True)
    os.chmod(storage, 0o755)
    os.chmod(call_dir(storage, call_id), 0o755)
    raw = write_bytes(storage, call_id, CALL, ".txt")
    audio = Audio(channels=(np.zeros(1600, dtype=np.float32),), duration_s=0.1, source_format="wav",
                  source_rate=16000, source_channels=1)
    write_redacted_audio(storage, call_id, audio)
    sealed = seal_input(raw, KEY)
    assert not loose_modes(storage), loose_modes(storage)
    names = sorted(p.name for p in call_dir(storage, call_id).iterdir())
    assert names == ["input.txt.sealed", "redacted.wav"]

    with pytest.raises(RuntimeError), unsealed(sealed, KEY) as copy:
        assert copy.read_bytes() == CALL and not loose_modes(storage)
        raise RuntimeError("the run failed")
    assert not copy.exists() and sealed.is_file()

    fresh = settings.storage_dir.parent / "fresh-storage"
    create_app(make_settings(storage_dir=fresh))
    assert oct(stat.S_IMODE(fresh.stat().st_mode)) == oct(0o700)


@pytest.mark.redis
@pytest.mark.parametrize("key", [None, OTHER_KEY])
def test_a_sealed_input_without_its_key_fails_and_stays_sealed(key, make_settings, redis_url, redis_conn,
                                                               text_engines, monkeypatch):
    sealing = make_settings(redis_url=redis_url, encryption_key=KEY)
    s = Scenario(sealing, redis_conn, text_engines, monkeypatch)
    s.behaviour["sealed"] = "fail"
    s.work(s.add("sealed"))
    sealed = s.repo.get_call(s.ids["sealed"]).input_path
    assert sealed.endswith(".sealed")
    # The worker now runs with no key, or another one; the call is retried.
    activate(WorkerContext(settings=make_settings(redis_url=redis_url, encryption_key=key), store=s.repo,
                           engines_loaded=text_engines))
    s.behaviour.pop("sealed")
    try:
        s.repo.requeue_call(s.ids["sealed"])
        s.work(s.ids["sealed"])
    finally:
        activate(None)
    failed = s.repo.get_call(s.ids["sealed"])
    assert failed.status == "failed" and "QA_ENCRYPTION_KEY" in failed.failure_reason
    assert failed.input_path == sealed and Path(sealed).is_file(), "retryable once the key is right"
    assert [p.name for p in Path(sealed).parent.iterdir()] == [Path(sealed).name]
    s.repo.dispose()


@pytest.mark.redis
@pytest.mark.parametrize("mode", ["key", "key, raw kept", "no key, 0 h"])
def test_on_the_object_store_no_plain_input_outlives_its_call(mode, make_settings, redis_url, redis_conn,
                                                               text_engines, monkeypatch, caplog, s3_env):
    bucket = f"qa-{uuid.uuid4().hex[:20]}"
    client = make_client(s3_env)
    client.create_bucket(Bucket=bucket)
    settings = make_settings(redis_url=redis_url, storage_url=f"s3://{bucket}/qa", **MODES[mode])
    s = Scenario(settings, redis_conn, text_engines, monkeypatch)
    caplog.set_level("DEBUG")
    try:
        s.work(s.add("done"))
        s.work(s.add("bad-input", UNPARSEABLE))
        s.behaviour["transient"] = "transient"
        s.work(s.add("transient"))
        for _ in range(worker_calls.MAX_ATTEMPTS - 1):
            assert recovery.enqueue_due_retries(s.queue) == 1
            SimpleWorker([s.queue], connection=redis_conn).work(burst=True)
        s.behaviour["fail"] = "fail"
        s.work(s.add("fail"))
        s.behaviour["timeout"] = "hang"
        s.work(s.add("timeout"), timeout=1)
        s.add("killed")
        s.kill_mid_run("killed")
        s.reconcile_after_kills(s.ids["killed"])
    finally:
        activate(None)

    statuses = {label: s.repo.get_call(call_id).status for label, call_id in s.ids.items()}
    assert statuses == {label: "done" if label == "done" else "failed" for label in s.ids}
    assert set(statuses) == {"done", "bad-input", "transient", "fail", "timeout", "killed"}
    # Each run read a plain copy of its input in the worker's scratch folder, gone once the run ended.
    assert all(copies == [".unsealed-input.txt"] for runs in s.seen.values() for copies in runs), s.seen
    assert not plain_copies(s, caplog.text)  # scratch folder, database, Redis and log
    objects = {o["Key"]: client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
               for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])}
    assert not [key for key, body in objects.items() if has_secret(body)], list(objects)
    assert all(key.endswith("/input.txt.sealed") for key in objects), list(objects)
    assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    refs = {label: s.repo.get_call(call_id).input_path for label, call_id in s.ids.items()}
    kept = {label for label, ref in refs.items() if ref is not None}
    expected = {"no key, 0 h": set(), "key": {"transient", "fail", "timeout", "killed"},
                "key, raw kept": set(statuses)}
    assert kept == expected[mode], refs
    assert {f"s3://{bucket}/{key}" for key in objects} == {refs[label] for label in kept}
    s.repo.dispose()


@pytest.mark.redis
@pytest.mark.parametrize("switch", ["to the object store", "to the local folder"])
def test_a_call_stored_before_a_storage_switch_fails_clearly_and_keeps_its_input(
        switch, make_settings, redis_url, redis_conn, text_engines, monkeypatch, s3_env):
    bucket = f"qa-{uuid.uuid4().hex[:20]}"
    make_client(s3_env).create_bucket(Bucket=bucket)
    local = make_settings(redis_url=redis_url)
    s3 = local.model_copy(update={"storage_url": f"s3://{bucket}/qa"})
    before, after = (local, s3) if switch == "to the object store" else (s3, local)
    s = Scenario(before, redis_conn, text_engines, monkeypatch)
    try:
        call_id = s.add("stored-before")
        activate(WorkerContext(settings=after, store=s.repo, engines_loaded=text_engines))
        s.work(call_id)
        failed = s.repo.get_call(call_id)
        assert failed.status == "failed" and "before QA_STORAGE_URL changed" in failed.failure_reason
        # Nothing lost: a worker on the old setting scores it after a retry.
        with s.inputs.open(failed.input_path) as stream:
            assert stream.read() == CALL
        activate(WorkerContext(settings=before, store=s.repo, engines_loaded=text_engines))
        s.repo.requeue_call(call_id)
        s.work(call_id)
        assert s.repo.get_call(call_id).status == "done"
    finally:
        activate(None)
        s.repo.dispose()
