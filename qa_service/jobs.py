"""RQ jobs (ids in, ids out) and the worker that runs them.

The API enqueues `process_call` by its dotted path, so importing this module must stay cheap:
the pipeline and its models are imported inside functions, in the worker only.

Why `SimpleWorker` and not RQ's forking `Worker` with models preloaded in the parent: a
CTranslate2 (faster-whisper) model built before `fork()` hangs forever in the child, because
its compute threads do not survive the fork (measured: the forked job never returned, while the
same model built inside the child transcribed in under a second). CUDA contexts have the same
problem. So jobs run in the worker process itself, which loads the engines once at start; a
job timeout still interrupts a stuck job (SIGALRM in the main thread), and a worker that dies
mid-job is recovered by `reconcile` when a worker starts again. Run one worker per core group.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa_service.errors import ConfigError, InputError, QAServiceError
from qa_service.settings import Settings
from qa_service.storage.inputs import remove_input

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue
    from rq.job import Job

    from qa_service.pipeline import Engines
    from qa_service.storage.repository import Repository, StoredCall

log = logging.getLogger(__name__)

JOB_PATH = "qa_service.jobs.process_call"
# A call that stopped mid-processing this many times (worker killed, machine lost) is failed
# instead of being handed to the next worker again.
MAX_ATTEMPTS = 3


@dataclass
class _Context:
    settings: Settings | None = None
    repo: Any = None
    engines: Any = None
    rules: dict[tuple[str, str, str, str], Any] = field(default_factory=dict)


_ctx = _Context()


def configure(settings: Settings, repo: Repository | None = None) -> None:
    """Set the settings (and optionally the repository) that jobs in this process use."""
    _ctx.settings = settings
    _ctx.repo = repo
    _ctx.engines = None
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
    return queue.enqueue(
        JOB_PATH, call_id, job_id=call_id, job_timeout=timeout, result_ttl=24 * 3600,
        failure_ttl=7 * 24 * 3600, description=f"process call {call_id}",
    )


def process_call(call_id: str) -> str:
    """Score one stored call: mark processing, run the pipeline, store the scorecard, mark done."""
    repo = _repo()
    settings = _settings()
    call = repo.get_call(call_id)
    if call.status == "done":
        log.info("call %s is already done; nothing to do", call_id)
        return call_id
    call = repo.start_call(call_id)
    started = time.monotonic()
    try:
        card = _score(call, repo, settings)
    except InputError as exc:
        repo.fail_call(call_id, str(exc) or type(exc).__name__)
        _discard_input(call, repo, settings)
        log.warning("call %s failed: unusable input (%s)", call_id, type(exc).__name__)
        return call_id
    except Exception as exc:
        # Our own errors carry safe messages; anything else may quote data, so only its type is kept.
        reason = str(exc) if isinstance(exc, QAServiceError) else f"internal error ({type(exc).__name__})"
        repo.fail_call(call_id, f"{reason}; the worker log has the details, retry when fixed")
        raise
    repo.finish_call(call_id, card)
    _discard_input(call, repo, settings)
    log.info("call %s done in %.1f s", call_id, time.monotonic() - started)
    return call_id


def _score(call: StoredCall, repo: Repository, settings: Settings) -> dict[str, Any]:
    from qa_service.pipeline import process_audio, process_transcript
    from qa_service.records import CallMeta

    path = _input(call, repo, settings)
    rubric = _rules(repo, "rubric", call.rubric_id, call.rubric_version)
    policies = _rules(repo, "policy_pack", call.policy_pack_id, call.policy_pack_version)
    meta = CallMeta(call_id=call.external_id or call.id, agent_id=call.agent_id, call_date=call.call_date,
                    channels=call.channels)  # type: ignore[arg-type]
    if call.input_kind == "transcript":
        from qa_service.intake import parse_transcript

        transcript = parse_transcript(path.read_bytes(), filename=path.name)
        return process_transcript(transcript, meta, rubric, policies, engines()).to_dict()
    return process_audio(path, meta, rubric, policies, engines()).to_dict()


def _rules(repo: Repository, kind: str, rules_id: str, version: str) -> Any:
    from qa_service.rules.load import load_policy_pack, load_rubric

    stored = repo.get_rules(kind, rules_id, version)  # type: ignore[arg-type]
    key = (kind, stored.id, stored.version, stored.sha256)
    if key not in _ctx.rules:
        loader = load_rubric if kind == "rubric" else load_policy_pack
        _ctx.rules[key] = loader(stored.text, name=f"{kind.replace('_', ' ')} {stored.id} {stored.version}")
    return _ctx.rules[key]


def _input(call: StoredCall, repo: Repository, settings: Settings) -> Path:
    if call.input_path and Path(call.input_path).is_file():
        return Path(call.input_path)
    if call.input_url:
        from qa_service.storage.fetch import fetch_recording

        path = fetch_recording(call.input_url, settings.storage_dir, call.id, settings)
        repo.set_input_path(call.id, str(path))
        return path
    raise InputError("the call's input is no longer stored (it is deleted after processing); submit it again")


def _discard_input(call: StoredCall, repo: Repository, settings: Settings) -> None:
    keep = settings.keep_raw_transcript if call.input_kind == "transcript" else settings.keep_raw_audio
    if keep:
        return
    remove_input(settings.storage_dir, call.id)
    repo.set_input_path(call.id, None)


def reconcile(repo: Repository, queue: Queue, *, timeout: int | None = None) -> list[str]:
    """Re-enqueue calls left queued or processing whose RQ job is gone or dead; return their ids."""
    from rq.job import Job, JobStatus

    requeued = []
    for call in repo.calls_with_status(["queued", "processing"]):
        try:
            status = Job.fetch(call.id, connection=queue.connection).get_status()
        except Exception:  # NoSuchJobError, or a job hash that expired or cannot be read
            status = None
        # A job still waiting or running belongs to a live worker (or will be picked up).
        if status in (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED):
            continue
        if status == JobStatus.STARTED and call.status == "processing" and _job_alive(queue, call.id):
            continue
        if call.attempts >= MAX_ATTEMPTS:
            repo.fail_call(call.id, f"processing stopped {call.attempts} times without finishing "
                                    "(worker killed or timed out); retry when fixed")
            continue
        repo.requeue_call(call.id)
        enqueue_call(queue, call.id, timeout=timeout)
        requeued.append(call.id)
    if requeued:
        log.info("re-enqueued %d call(s) whose jobs were lost", len(requeued))
    return requeued


def _job_alive(queue: Queue, job_id: str) -> bool:
    """Whether a started job is in the started registry of a worker that still sends heartbeats."""
    from rq.registry import StartedJobRegistry

    registry = StartedJobRegistry(queue=queue)
    # Entries whose heartbeat expired are dropped by cleanup; what remains is alive.
    registry.cleanup()
    return job_id in registry.get_job_ids()


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
    engines()
    connection: Redis = Redis.from_url(settings.redis_url)
    try:
        connection.ping()
    except RedisError as exc:
        raise ConfigError(f"cannot reach Redis at QA_REDIS_URL ({type(exc).__name__})") from None
    queue = Queue(settings.queue_name, connection=connection)
    reconcile(repo, queue, timeout=settings.job_timeout_s)

    class CallWorker(SimpleWorker):
        """SimpleWorker that also recovers lost calls whenever RQ runs its periodic maintenance."""

        def run_maintenance_tasks(self) -> None:
            super().run_maintenance_tasks()
            try:
                reconcile(repo, queue, timeout=settings.job_timeout_s)
            except Exception:  # maintenance must never stop the worker; try again next round
                log.exception("reconciling lost calls failed")

    worker = CallWorker([queue], connection=connection)
    return bool(worker.work(burst=burst, logging_level="INFO"))
