"""RQ jobs (ids in, ids out) and the worker that runs them.

The API enqueues `process_call` by its dotted path, so importing this module must stay cheap:
the pipeline and its models are imported inside functions, in the worker only.

Why `SimpleWorker` and not RQ's forking `Worker` with models preloaded in the parent: a
CTranslate2 (faster-whisper) model built before `fork()` hangs forever in the child, because
its compute threads do not survive the fork (measured: the forked job never returned, while the
same model built inside the child transcribed in under a second). CUDA contexts have the same
problem. So jobs run in the worker process itself, which loads the engines once at start; a
job timeout still interrupts a stuck job (SIGALRM in the main thread), and a call whose worker
died mid-job is recovered by `reconcile`, which every worker runs at start and about every
30 s: a worker holds a Redis lease on the call it processes, and a call in queued/processing
with neither a lease nor a waiting job is enqueued again. Run one worker per core group.

Rescore runs (`rescore_run`) go on the same queue: the API stores the run and enqueues its id; the
worker rescores the stored transcripts with the spaCy pipeline it already holds and stores the
impact summary on the run. The worker holds a lease on the run as on a call; `reconcile_rescores`
queues runs whose job never reached Redis and fails, within about LEASE_TTL_S, running runs whose
worker is gone, so a run never stays queued or running for good.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa_service.errors import ConfigError, InputError, QAServiceError, TransientError
from qa_service.settings import Settings
from qa_service.storage.inputs import (
    is_sealed,
    make_storage_dir,
    remove_input,
    remove_run_copies,
    seal_input,
    unsealed,
    write_redacted_audio,
)

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue
    from rq.job import Job

    from qa_service.pipeline import Engines
    from qa_service.rescore import ImpactReport
    from qa_service.storage.repository import Repository, StoredCall, StoredRescoreRun

log = logging.getLogger(__name__)

JOB_PATH = "qa_service.jobs.process_call"
RESCORE_JOB_PATH = "qa_service.jobs.rescore_run"
# A call that stopped mid-processing this many times (worker killed, machine lost) is failed
# instead of being handed to the next worker again.
MAX_ATTEMPTS = 3
# A transient failure (recording download, database, storage) is tried again after a pause that
# grows fourfold each time, up to MAX_ATTEMPTS runs in all; then the call fails with the reason.
TRANSIENT_BACKOFF_S = 30.0
# A worker holds a lease on the call it processes; a dead worker's lease lapses after LEASE_TTL_S.
LEASE_TTL_S = 30
LEASE_REFRESH_S = 10
# How often a worker looks for lost calls (RQ maintenance); idle workers wake this often too.
MAINTENANCE_S = 30
# Pause before a worker whose loop died (Redis went away mid-job) starts listening again.
WORKER_RESTART_S = 2


@dataclass
class _Context:
    settings: Settings | None = None
    repo: Any = None
    engines: Any = None
    rules: dict[tuple[str, str, str, str], Any] = field(default_factory=dict)


_ctx = _Context()


def configure(settings: Settings, repo: Repository | None = None, engines: Engines | None = None) -> None:
    """Set the settings (and optionally the repository and loaded engines) that jobs in this process use."""
    _ctx.settings = settings
    _ctx.repo = repo
    _ctx.engines = engines
    _ctx.rules.clear()


def _settings() -> Settings:
    if _ctx.settings is None:
        _ctx.settings = Settings()
    return _ctx.settings


def _repo() -> Repository:
    if _ctx.repo is None:
        from qa_service.storage import open_repository

        _ctx.repo = open_repository(_settings().database_url)
    return _ctx.repo  # type: ignore[no-any-return]


def engines() -> Engines:
    """The engines of this process, loaded on first use from the settings."""
    if _ctx.engines is None:
        from qa_service.pipeline import load_engines

        started = time.monotonic()
        _ctx.engines = load_engines(_settings())
        log.info("engines loaded in %.1f s (asr model %s)", time.monotonic() - started, _settings().asr_model)
    return _ctx.engines  # type: ignore[no-any-return]


def enqueue_call(queue: Queue, call_id: str, *, timeout: int | None = None) -> Job:
    """Put a call on the queue by dotted path; the RQ job id is the call id."""
    if timeout is None:
        timeout = _settings().job_timeout_s  # RQ's own default (180 s) is too short for long calls
    return queue.enqueue(
        JOB_PATH, call_id, job_id=call_id, job_timeout=timeout, result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600, description=f"process call {call_id}",
    )


def retry_failed_call(repo: Repository, call_id: str) -> StoredCall:
    """Put a failed call back to queued (the caller enqueues it); Conflict when it cannot be retried."""
    from qa_service.errors import Conflict

    call = repo.get_call(call_id)
    if call.status != "failed":
        raise Conflict(f"only failed calls can be retried; this one is {call.status}")
    if not call.input_url and not (call.input_path and Path(call.input_path).is_file()):
        raise Conflict("the call's input is no longer stored: it is deleted when the input was unusable, "
                       "and otherwise QA_FAILED_INPUT_RETENTION_HOURS after the call failed; submit the "
                       "call again")
    return repo.requeue_call(call.id)


def process_call(call_id: str) -> str:
    """Score one stored call: mark processing, run the pipeline, store the scorecard, mark done."""
    with _leased(lease_key(call_id), touch=lambda: _repo().touch_call(call_id)) as held:
        if not held:
            # A duplicate job (resend, recovery) while a live worker holds this call: let that one finish.
            log.info("call %s is being processed by another worker; skipping", call_id)
            return call_id
        return _process(call_id)


def _process(call_id: str) -> str:
    repo = _repo()
    settings = _settings()
    call = repo.get_call(call_id)
    if call.status in ("done", "failed"):
        # A stale duplicate job: done calls are rescored on purpose, failed ones through retry
        # (which queues them again first), never by a leftover job.
        log.info("call %s is already %s; nothing to do", call_id, call.status)
        if call.status == "done":
            _discard_input(call, repo, settings)  # in case the run that finished it stopped before this
        return call_id
    call = repo.start_call(call_id)
    started = time.monotonic()
    try:
        card = _score(call, repo, settings)
    except InputError as exc:
        failed = repo.fail_call(call_id, str(exc) or type(exc).__name__)
        _discard_input(failed, repo, settings)  # nothing a retry could do with it
        log.warning("call %s failed: unusable input (%s)", call_id, type(exc).__name__)
        return call_id
    except TransientError as exc:
        if call.attempts < MAX_ATTEMPTS:
            delay = _retry_later(call_id, call.attempts)
            log.warning("call %s: transient failure (%s); trying again in %.0f s", call_id,
                        type(exc).__name__, delay)
            return call_id
        failed = repo.fail_call(call_id, f"{exc}; gave up after {call.attempts} attempts, retry when fixed")
        _keep_failed_input(failed, repo, settings)
        raise
    except Exception as exc:  # RQ's JobTimeoutException too
        failed = repo.fail_call(call_id, f"{_reason(exc, settings)}; the worker log has the details, retry "
                                         "when fixed")
        _keep_failed_input(failed, repo, settings)
        raise
    if repo.get_call(call_id).status == "done":
        # Another run finished the call meanwhile: its lease was lost (Redis restarted while this
        # worker held it) and the call was queued again. Keep that scorecard, add no second version.
        log.warning("call %s was finished by another run meanwhile; discarding this result", call_id)
        _discard_input(call, repo, settings)
        return call_id
    stored = repo.finish_call(call_id, card)
    from qa_service.notify import notify_scored

    notify_scored(settings, call, stored, card)  # enqueues the outgoing webhooks, if set; never raises
    _record_stage_seconds(card)
    _discard_input(call, repo, settings)
    log.info("call %s done in %.1f s", call_id, time.monotonic() - started)
    return call_id


def _reason(exc: Exception, settings: Settings) -> str:
    """A failure reason safe to show: our own errors carry safe messages, others only their type."""
    from rq.timeouts import JobTimeoutException

    if isinstance(exc, JobTimeoutException):
        return f"processing took longer than the job timeout of {settings.job_timeout_s} s (QA_JOB_TIMEOUT_S)"
    if isinstance(exc, QAServiceError):
        return str(exc)
    return f"internal error ({type(exc).__name__})"


# -- rescore runs --------------------------------------------------------------------------------

def rescore_job_id(run_id: str) -> str:
    """The RQ job id of a rescore run (kept apart from call ids, which are job ids too)."""
    return f"rescore-{run_id}"


def enqueue_rescore(queue: Queue, run_id: str, *, timeout: int | None = None) -> Job:
    """Put a rescore run on the queue by dotted path."""
    if timeout is None:
        timeout = _settings().job_timeout_s
    return queue.enqueue(
        RESCORE_JOB_PATH, run_id, job_id=rescore_job_id(run_id), job_timeout=timeout, result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600, description=f"rescore run {run_id}",
    )


def rescore_run(run_id: str) -> str:
    """Rescore the stored calls a run names with its stored rules; store the impact summary, mark it done.

    A failure marks the run failed with a readable reason and is raised again, so RQ keeps the
    traceback. New scorecard versions are stored in batches as the run goes: a run that fails midway
    keeps those already stored, and running it again rescores every call once more.
    """
    # Taken before the run is marked running, so a running run without a live lease is one whose
    # worker died (see reconcile_rescores).
    with _leased(rescore_lease_key(run_id)) as held:
        if not held:
            log.info("rescore run %s is being worked by another job; skipping", run_id)
            return run_id
        return _rescore(run_id)


def _rescore(run_id: str) -> str:
    from qa_service.errors import Conflict
    from qa_service.rescore import rescore_stored

    repo = _repo()
    run = repo.get_rescore_run(run_id)
    if run.status != "queued":
        log.info("rescore run %s is already %s; nothing to do", run_id, run.status)
        return run_id
    try:
        run = repo.start_rescore_run(run_id)
    except Conflict:  # a duplicate job started it first
        log.info("rescore run %s was started by another job; skipping", run_id)
        return run_id

    def work() -> ImpactReport:
        rubric = _rules(repo, "rubric", run.rubric_id, run.rubric_version)
        policies = None
        if run.policy_pack_id is not None and run.policy_pack_version is not None:
            policies = _rules(repo, "policy_pack", run.policy_pack_id, run.policy_pack_version)
        return rescore_stored(repo, rubric, policies, engines().nlp, since=run.since, until=run.until,
                              store=not run.dry_run)

    _work_rescore(repo, run, work, _settings(), "the worker log has the details")
    return run_id


def rescore_from_cli(repo: Repository, rubric: Any, policies: Any | None, nlp: Any, *, settings: Settings,
                     since: date | None, until: date | None,
                     progress: Callable[[int], Any] | None = None) -> ImpactReport:
    """Rescore and store from the command line as a recorded run, like one started from the API.

    The run is listed with the API's (requested by "cli") and keeps its impact summary; a storing
    run of the same rubric already under way refuses it (RescoreOverlap), and one started from the
    API while this runs is refused in turn. Its lease is held on the queue's Redis, so a worker's
    reconciler leaves it alone while this process lives and fails it if the process is killed.
    """
    from qa_service.rescore import rescore_stored
    from qa_service.storage.repository import NewRescoreRun

    run = repo.add_rescore_run(NewRescoreRun(
        id=str(uuid.uuid4()), rubric_id=rubric.id, rubric_version=rubric.version, requested_by_name="cli",
        policy_pack_id=policies and policies.id, policy_pack_version=policies and policies.version,
        since=since, until=until,
    ))
    with _leased(rescore_lease_key(run.id), connection=_redis_if_answering(settings.redis_url)):
        run = repo.start_rescore_run(run.id)
        return _work_rescore(repo, run, lambda: rescore_stored(repo, rubric, policies, nlp, since=since,
                                                                until=until, progress=progress),
                             settings, "the command's output has the details")


def _work_rescore(repo: Repository, run: StoredRescoreRun, work: Callable[[], ImpactReport],
                  settings: Settings, details: str) -> ImpactReport:
    """Do a started run's work; mark it done with its summary, or failed with a reason, and audit it."""
    started = time.monotonic()
    try:
        report = work()
    except BaseException as exc:
        reason = _reason(exc, settings) if isinstance(exc, Exception) else "stopped before it finished"
        if not run.dry_run:
            reason += "; scorecards rescored before the failure keep their new version"
        repo.fail_rescore_run(run.id, f"{reason}; {details}, start a new run when fixed")
        _audit_rescore(repo, run, "failed")
        raise
    summary = report.summary()
    repo.finish_rescore_run(run.id, summary)
    _audit_rescore(repo, run, f"calls={summary['calls']}")
    log.info("rescore run %s done in %.1f s: %d calls", run.id, time.monotonic() - started, summary["calls"])
    return report


def _audit_rescore(repo: Repository, run: StoredRescoreRun, outcome: str) -> None:
    """Record in the audit log that a run changed scorecards (as `qa-service rescore` does); never raises."""
    if run.dry_run:
        return  # nothing was stored
    engine = getattr(repo, "engine", None)
    if engine is None:
        return
    try:
        from qa_service.storage.review import audit

        role = next((k.role for k in repo.list_keys() if k.id == run.requested_by_key_id), None)
        audit(engine, "rescore", key_id=run.requested_by_key_id, key_name=run.requested_by_name, role=role,
              target_kind="rubric", target_id=run.rubric_id,
              details=f"version={run.rubric_version} {outcome} run={run.id}")
    except Exception:  # the run's own row holds the outcome; a lost audit row is logged
        log.exception("could not write the audit row of rescore run %s", run.id)


def reconcile_rescores(repo: Repository, queue: Queue, *, timeout: int | None = None) -> list[str]:
    """Queue again runs left queued without a job; fail running ones whose worker is gone.

    Returns the ids of the runs queued again.
    """
    from rq.job import Job, JobStatus

    requeued = []
    connection = queue.connection
    for run in repo.list_rescore_runs(statuses=["queued", "running"], limit=1000):
        if run.status == "queued":
            try:
                status = Job.fetch(rescore_job_id(run.id), connection=connection).get_status()
            except Exception:  # NoSuchJobError, or a job hash that expired or cannot be read
                status = None
            waiting = status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED, JobStatus.STARTED)
            # Just stored by the API, which enqueues it a moment later.
            if waiting or _age_s(run.created_at) < LEASE_TTL_S:
                continue
            enqueue_rescore(queue, run.id, timeout=timeout)
            requeued.append(run.id)
            continue
        holder = connection.get(rescore_lease_key(run.id))
        if holder is not None and not _holder_dead(holder):
            continue  # a live worker is on it (or one elsewhere whose lease has not lapsed yet)
        # Marked running a moment ago, while Redis restarted: the worker takes its lease again at
        # its next refresh.
        if holder is None and run.started_at is not None and _age_s(run.started_at) < LEASE_TTL_S:
            continue
        # The worker was killed (its lease lapsed, or names a process here that has exited) or its
        # job went with a Redis restart: without this the run would wait out RQ's job timeout.
        # The job itself records ordinary failures and timeouts.
        connection.delete(rescore_lease_key(run.id))
        reason = "the worker running it stopped before it finished (killed or Redis restarted)"
        if not run.dry_run:
            reason += "; scorecards rescored before it stopped keep their new version"
        repo.fail_rescore_run(run.id, f"{reason}; start a new run")
    if requeued:
        log.info("re-enqueued %d rescore run(s) whose jobs were lost", len(requeued))
    return requeued


def lease_key(call_id: str) -> str:
    """Redis key held by the worker processing a call, for as long as it is alive."""
    return f"qa:call-lease:{call_id}"


def rescore_lease_key(run_id: str) -> str:
    """Redis key held by the worker on a rescore run, for as long as it is alive."""
    return f"qa:rescore-lease:{run_id}"


@contextmanager
def _leased(key: str, touch: Callable[[], None] | None = None, *,
            connection: Redis | None = None) -> Iterator[bool]:
    """Hold the lease on `key` for the RQ job running now (or on `connection`), released on exit.

    Yields False when another worker holds it (the caller skips its work); outside a worker and
    without a connection no lease is taken and it yields True.
    """
    lease = _Lease(connection, key, touch) if connection is not None else _Lease.for_current_job(key, touch)
    if lease is not None and not lease.acquire():
        yield False
        return
    try:
        yield True
    finally:
        if lease is not None:
            lease.release()


class _Lease:
    """A Redis lock on one call (or rescore run), refreshed by a thread while the job runs.

    It stops two workers scoring the same call at once (a job enqueued twice by a resend or a
    recovery), and tells the reconciler which calls a live worker holds: a killed worker stops
    refreshing and its lease expires within LEASE_TTL_S. The lease names its host and process,
    so a reconciler on the same machine sees at once that the holder is gone.

    Redis may lose the lease (a restart without persistence), so each refresh also calls `touch`
    (a call's row heartbeat): the database, not Redis, is what the reconciler trusts last. A lease
    found missing is taken again with the same token unless another worker holds it by then.
    """

    def __init__(self, connection: Redis, key: str, touch: Callable[[], None] | None = None):
        self._lock = connection.lock(key, timeout=LEASE_TTL_S, blocking=False, thread_local=False)
        self._token = _holder_token()
        self._touch = touch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_current_job(cls, key: str, touch: Callable[[], None] | None = None) -> _Lease | None:
        """A lease on the Redis of the RQ job running now; None outside a worker."""
        from rq import get_current_job

        job = get_current_job()
        return cls(job.connection, key, touch) if job is not None else None

    def acquire(self) -> bool:
        if not self._lock.acquire(token=self._token):
            return False
        self._thread = threading.Thread(target=self._refresh, name="call-lease", daemon=True)
        self._thread.start()
        return True

    def _refresh(self) -> None:
        from redis.exceptions import LockError, LockNotOwnedError, RedisError

        while not self._stop.wait(LEASE_REFRESH_S):
            try:
                self._lock.reacquire()
            except LockNotOwnedError:
                try:
                    if self._lock.acquire(token=self._token):
                        log.warning("the lease on a call was lost (Redis restarted?); took it again")
                    else:
                        log.warning("the lease on a call is held by another worker now")
                except RedisError:
                    pass
            except (LockError, RedisError):
                log.warning("could not refresh the lease on a call (Redis unreachable)")
            if self._touch is not None:
                try:
                    self._touch()
                except Exception:  # a heartbeat that fails once is retried at the next refresh
                    log.warning("could not record the heartbeat of a call", exc_info=True)

    def release(self) -> None:
        from redis.exceptions import LockError, RedisError

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._lock.release()
        except (LockError, RedisError):
            pass  # expired or Redis restarted: nothing left to release


def _score(call: StoredCall, repo: Repository, settings: Settings) -> dict[str, Any]:
    from qa_service.pipeline import process_audio, process_transcript
    from qa_service.records import CallMeta

    rubric = _rules(repo, "rubric", call.rubric_id, call.rubric_version)
    policies = _rules(repo, "policy_pack", call.policy_pack_id, call.policy_pack_version)
    meta = CallMeta(call_id=call.external_id or call.id, agent_id=call.agent_id, call_date=call.call_date,
                    channels=call.channels)  # type: ignore[arg-type]
    with _input(call, repo, settings) as path:
        if call.input_kind == "transcript":
            from qa_service.intake import read_transcript

            transcript = read_transcript(path, max_bytes=settings.max_transcript_bytes)
            return process_transcript(transcript, meta, rubric, policies, engines()).to_dict()
        keep = None
        if settings.keep_redacted_audio:
            keep = partial(write_redacted_audio, settings.storage_dir, call.id)
        return process_audio(path, meta, rubric, policies, engines(), keep_redacted_audio=keep).to_dict()


def _rules(repo: Repository, kind: str, rules_id: str, version: str) -> Any:
    from qa_service.rules.load import load_policy_pack, load_rubric

    stored = repo.get_rules(kind, rules_id, version)  # type: ignore[arg-type]
    key = (kind, stored.id, stored.version, stored.sha256)
    if key not in _ctx.rules:
        loader = load_rubric if kind == "rubric" else load_policy_pack
        _ctx.rules[key] = loader(stored.text, name=f"{kind.replace('_', ' ')} {stored.id} {stored.version}")
    return _ctx.rules[key]


@contextmanager
def _input(call: StoredCall, repo: Repository, settings: Settings) -> Iterator[Path]:
    """The call's input as a plain file for the length of one run."""
    if call.input_path and Path(call.input_path).is_file():
        path = Path(call.input_path)
        if not is_sealed(path):
            yield path
            return
        if not settings.encryption_key:
            raise ConfigError("the call's input is sealed: set QA_ENCRYPTION_KEY to the key that sealed it "
                              "and retry")
        # A sealed input processed again (a retry): decrypted into a copy for this run only, so a run
        # that fails leaves it sealed.
        with unsealed(path, settings.encryption_key) as plain:
            yield plain
        return
    if call.input_url:
        from qa_service.storage.fetch import fetch_recording

        path = fetch_recording(call.input_url, settings.storage_dir, call.id, settings)
        repo.set_input_path(call.id, str(path))
        yield path
        return
    raise InputError("the call's input is not in QA_STORAGE_DIR (deleted after processing, or the storage "
                     "folder is not shared with this worker); submit it again")


def retry_job_id(call_id: str, attempt: int) -> str:
    """The RQ job id of the retry scheduled after a call's `attempt`-th run failed transiently."""
    return f"{call_id}-retry{attempt}"


def _retry_later(call_id: str, attempt: int) -> float:
    """Queue the call again after a backoff (RQ's scheduled registry); returns the delay in seconds."""
    from datetime import timedelta

    from rq import Queue, get_current_job

    _repo().requeue_call(call_id)
    delay = TRANSIENT_BACKOFF_S * 4 ** (attempt - 1)
    job = get_current_job()
    connection = job.connection if job is not None else _redis()
    queue = Queue(_settings().queue_name, connection=connection)
    queue.enqueue_in(timedelta(seconds=delay), JOB_PATH, call_id, job_id=retry_job_id(call_id, attempt),
                     job_timeout=_settings().job_timeout_s, description=f"process call {call_id} again")
    return delay


def _redis() -> Redis:
    from redis import Redis

    return Redis.from_url(_settings().redis_url)


def _redis_if_answering(url: str) -> Redis | None:
    """A client of the Redis at `url`, or None (logged) when it does not answer."""
    from redis import Redis
    from redis.exceptions import RedisError

    connection = Redis.from_url(url, socket_connect_timeout=2, socket_timeout=5)
    try:
        connection.ping()
    except RedisError:
        log.warning("Redis does not answer at the configured QA_REDIS_URL: the run holds no lease, so a "
                    "worker's reconciler may mark it failed while it goes on")
        return None
    return connection


def _record_stage_seconds(card: dict[str, Any]) -> None:
    """Add the call's stage times to the totals /metrics reports (only when run by an RQ worker)."""
    from rq import get_current_job

    from qa_service.observe import record_stage_seconds

    job = get_current_job()
    if job is not None:
        record_stage_seconds(job.connection, card.get("models", {}).get("stage_seconds") or {})


def _discard_input(call: StoredCall, repo: Repository, settings: Settings) -> None:
    """A done call's input (or a failed one's that no retry could use): deleted, or sealed when a
    setting keeps inputs."""
    keep = settings.keep_raw_transcript if call.input_kind == "transcript" else settings.keep_raw_audio
    if keep and settings.encryption_key:  # Settings refuses to keep inputs without a key
        _seal(call, repo, settings.encryption_key, settings)
        return
    remove_input(settings.storage_dir, call.id)
    repo.set_input_path(call.id, None)


def _keep_failed_input(call: StoredCall, repo: Repository, settings: Settings) -> None:
    """A failed call's input, kept for a retry: sealed when a key is set, plain otherwise (its file is
    private either way); deleted at once when QA_FAILED_INPUT_RETENTION_HOURS is 0. Never raises, so
    the failure it follows is what the caller sees."""
    try:
        if settings.failed_input_retention_hours == 0:
            remove_input(settings.storage_dir, call.id)
            repo.set_input_path(call.id, None)
        elif settings.encryption_key:
            _seal(call, repo, settings.encryption_key, settings)
        else:
            remove_run_copies(settings.storage_dir, call.id)
    except Exception:  # the maintenance pass seals or deletes it later (discard_leftover_inputs)
        log.exception("could not seal or delete the input of failed call %s", call.id)


def _seal(call: StoredCall, repo: Repository, key: str, settings: Settings) -> None:
    """Seal the call's input unless it is sealed already, and remove what a killed run left beside it."""
    # Read again: the row passed in may predate the run that downloaded the recording.
    path = repo.get_call(call.id).input_path
    remove_run_copies(settings.storage_dir, call.id)
    if path is not None and not is_sealed(path) and Path(path).is_file():
        repo.set_input_path(call.id, str(seal_input(Path(path), key)))


def discard_leftover_inputs(repo: Repository, settings: Settings) -> int:
    """Settle the inputs that ended calls still hold; returns how many calls it changed.

    The inputs of failed calls older than QA_FAILED_INPUT_RETENTION_HOURS are deleted, sealed or not.
    A done call's plain input (its worker was killed between storing the scorecard and deleting the
    input) is deleted or sealed as the run would have done, and with a key set a failed call's plain
    input (its worker was killed before sealing it, or it failed before a key was set) is sealed.
    """
    from datetime import timedelta

    cutoff = datetime.now(UTC) - timedelta(hours=settings.failed_input_retention_hours)
    expired = 0
    for call in repo.failed_calls_with_input(failed_before=cutoff):
        if repo.get_call(call.id).status != "failed":
            continue  # retried since the query: its run needs the input
        remove_input(settings.storage_dir, call.id)
        repo.set_input_path(call.id, None)
        expired += 1
    statuses = ["done", "failed"] if settings.encryption_key else ["done"]
    left = repo.calls_with_plain_input(statuses)
    for call in left:
        if call.status == "done":
            _discard_input(call, repo, settings)
        else:
            _keep_failed_input(call, repo, settings)
    if expired:
        log.info("deleted the inputs of %d call(s) that failed more than %g h ago", expired,
                 settings.failed_input_retention_hours)
    if left:
        log.info("deleted or sealed the plain inputs %d ended call(s) left behind", len(left))
    return expired + len(left)


def reconcile(repo: Repository, queue: Queue, *, timeout: int | None = None) -> list[str]:
    """Re-enqueue calls left queued or processing whose RQ job is gone or dead; return their ids."""
    from rq.job import Job, JobStatus

    requeued = []
    connection = queue.connection
    for call in repo.calls_with_status(["queued", "processing"]):
        holder = connection.get(lease_key(call.id))
        holder_died = holder is not None and _holder_dead(holder)
        if holder is not None and not holder_died:
            continue  # a live worker holds it (or one elsewhere whose lease has not lapsed yet)
        if holder_died:
            # The holder was a process on this machine that no longer exists: no need to wait
            # for its lease to lapse.
            connection.delete(lease_key(call.id))
        try:
            job = Job.fetch(call.id, connection=connection)
            status, started_at = job.get_status(), job.started_at
        except Exception:  # NoSuchJobError, or a job hash that expired or cannot be read
            status, started_at = None, None
        # Waiting in the queue, or started so recently that the worker may not hold the lease yet.
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            continue
        # Waiting out a backoff after a transient failure.
        retry = retry_job_id(call.id, call.attempts)
        if call.status == "queued" and Job.exists(retry, connection=connection):
            continue
        if (status == JobStatus.STARTED and not holder_died and started_at is not None
                and _age_s(started_at) < LEASE_TTL_S):
            continue
        # Processing with a recent heartbeat in the database: the worker is alive even though Redis
        # has lost its lease and its job (a Redis restart); leave the call to it.
        if call.status == "processing" and not holder_died and _age_s(call.updated_at) < LEASE_TTL_S:
            continue
        if call.attempts >= MAX_ATTEMPTS:
            failed = repo.fail_call(call.id, f"processing stopped {call.attempts} times without finishing "
                                             "(worker killed or timed out); retry when fixed")
            _keep_failed_input(failed, repo, _settings())
            continue
        repo.requeue_call(call.id)
        enqueue_call(queue, call.id, timeout=timeout)
        requeued.append(call.id)
    if requeued:
        log.info("re-enqueued %d call(s) whose jobs were lost", len(requeued))
    return requeued


def enqueue_due_retries(queue: Queue) -> int:
    """Move jobs whose scheduled time has come (webhook retries, calls after a transient failure)
    back onto their queue; return how many were due.

    Workers run RQ's scheduler here, one pass at maintenance, instead of letting RQ fork a
    scheduler process (forking after the models are loaded hangs them, see the top of this
    module); RQ's scheduler lock keeps two workers from moving the same jobs.
    """
    from rq.scheduler import RQScheduler

    due = len(queue.scheduled_job_registry.get_jobs_to_schedule())
    if not due:
        return 0
    scheduler = RQScheduler([queue], connection=queue.connection)
    scheduler.acquire_locks()
    if not scheduler.acquired_locks:
        return 0  # another worker is moving them
    try:
        scheduler.enqueue_scheduled_jobs()
    finally:
        scheduler.release_locks()
    return due


def _holder_token() -> str:
    """Lease value naming the holding process: host|pid|random (the random part keeps it unique)."""
    return f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex}"


def _holder_dead(value: bytes | str) -> bool:
    """Whether a lease's holder was a process on this machine that has exited."""
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
    host, _, rest = text.partition("|")
    pid_text = rest.partition("|")[0]
    if host != socket.gethostname() or not pid_text.isdigit() or int(pid_text) == os.getpid():
        return False  # another machine (or this very process): only the lease TTL can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # exists, owned by someone else
    return False


def _age_s(moment: datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (datetime.now(UTC) - moment).total_seconds()


def run_worker(settings: Settings, burst: bool = False) -> bool:
    """Migrate, load the engines, recover lost calls, then work the queue (burst: until it is empty)."""
    from redis import Redis
    from redis.exceptions import RedisError
    from rq import Queue, SimpleWorker

    from qa_service.storage import open_repository

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    repo = open_repository(settings.database_url)
    configure(settings, repo)
    make_storage_dir(settings.storage_dir)
    if not settings.encryption_key and settings.failed_input_retention_hours > 0:
        log.warning("QA_ENCRYPTION_KEY is not set: a failed call keeps its input unencrypted (readable by "
                    "this user only) for QA_FAILED_INPUT_RETENTION_HOURS=%g h so it can be retried; set a "
                    "key to keep it sealed, or 0 hours to delete it at once",
                    settings.failed_input_retention_hours)
    engines()
    connection: Redis = Redis.from_url(settings.redis_url)
    try:
        connection.ping()
    except RedisError as exc:
        raise ConfigError(f"cannot reach Redis at QA_REDIS_URL ({type(exc).__name__})") from None
    queue = Queue(settings.queue_name, connection=connection)
    from qa_service import notify

    notify_queue = Queue(notify.queue_name(settings), connection=connection)
    reconcile(repo, queue, timeout=settings.job_timeout_s)
    reconcile_rescores(repo, queue, timeout=settings.job_timeout_s)
    discard_leftover_inputs(repo, settings)

    class CallWorker(SimpleWorker):
        """SimpleWorker that also recovers lost calls and rescore runs whenever RQ runs its maintenance."""

        def run_maintenance_tasks(self) -> None:
            super().run_maintenance_tasks()
            try:
                reconcile(repo, queue, timeout=settings.job_timeout_s)
            except Exception:  # maintenance must never stop the worker; try again next round
                log.exception("reconciling lost calls failed")
            try:
                reconcile_rescores(repo, queue, timeout=settings.job_timeout_s)
            except Exception:
                log.exception("reconciling lost rescore runs failed")
            try:
                discard_leftover_inputs(repo, settings)
            except Exception:
                log.exception("discarding left-over inputs failed")
            try:
                enqueue_due_retries(notify_queue)
                enqueue_due_retries(queue)  # calls waiting out a transient failure
            except Exception:
                log.exception("queueing retries failed")

    worked = False
    while True:
        # A short worker TTL makes an idle worker wake (and run maintenance) every MAINTENANCE_S or so.
        # Webhook deliveries first: they take a second, a call can take many minutes.
        worker = CallWorker([notify_queue, queue], connection=connection, worker_ttl=MAINTENANCE_S + 15,
                            maintenance_interval=MAINTENANCE_S)
        try:
            worked = worker.work(burst=burst, logging_level="INFO") or worked
        except RedisError:  # its teardown after the error below fails the same way
            pass
        # Emptied the queue, or asked to stop: RQ notes the time of a SIGTERM/SIGINT whether it came
        # mid-job or while idle (only the mid-job case sets `_stop_requested`).
        if burst or worker._stop_requested or worker._shutdown_requested_date is not None:
            return worked
        # RQ's loop quits on any unexpected error, e.g. Redis going away while a job finishes (its
        # bookkeeping after the job raises ConnectionError). Exiting would leave the queue with no
        # worker until something restarts the process; the models are loaded, so carry on.
        log.error("the worker loop stopped on an unexpected error; starting it again in %d s",
                  WORKER_RESTART_S)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # idle in between: a stop request ends it at once
        while True:
            time.sleep(WORKER_RESTART_S)
            try:
                connection.ping()
                break
            except RedisError:
                continue  # Redis is still away; a new worker could not even register
