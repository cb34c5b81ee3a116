"""`run_worker`: build the worker context, recover what was lost, then work the queues for good.

Its maintenance also runs the retention sweep and the certification expiry check about hourly."""

from __future__ import annotations

import logging
import signal
import time
from typing import TYPE_CHECKING

from qa_service import notify
from qa_service.errors import ConfigError
from qa_service.services.certification import send_expiry_notices
from qa_service.services.retention import SWEEP_S, sweep
from qa_service.settings import Settings
from qa_service.storage.objects import S3Store
from qa_service.worker.context import WorkerContext, activate
from qa_service.worker.inputs import discard_leftover_inputs
from qa_service.worker.recovery import enqueue_due_retries, reconcile, reconcile_rescores

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

# How often a worker looks for lost calls (RQ maintenance); idle workers wake this often too.
MAINTENANCE_S = 30
# How often a worker looks for certifications that entered the expiry notice window (each is sent once).
NOTICE_S = 3600
# Pause before a worker whose loop died (Redis went away mid-job) starts listening again.
WORKER_RESTART_S = 2


def run_worker(settings: Settings, burst: bool = False, *, context: WorkerContext | None = None) -> bool:
    """Migrate, load the engines, recover lost calls, then work the queue (burst: until it is empty).

    `context`: one built already (its store and engines are used as they are), else one is built.
    """
    from redis import Redis
    from redis.exceptions import RedisError
    from rq import Queue, SimpleWorker

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    worker_context = context if context is not None else WorkerContext.build(settings)
    activate(worker_context)
    repo = worker_context.store
    inputs = worker_context.inputs
    if isinstance(inputs, S3Store):
        inputs.check()  # a missing bucket or refused credentials stop the worker now, not each call
    if not settings.encryption_key and settings.failed_input_retention_hours > 0:
        log.warning("QA_ENCRYPTION_KEY is not set: a failed call keeps its input unencrypted (readable by "
                    "this user only) for QA_FAILED_INPUT_RETENTION_HOURS=%g h so it can be retried; set a "
                    "key to keep it sealed, or 0 hours to delete it at once",
                    settings.failed_input_retention_hours)
    worker_context.engines()
    connection: Redis = Redis.from_url(settings.redis_url)
    try:
        connection.ping()
    except RedisError as exc:
        raise ConfigError(f"cannot reach Redis at QA_REDIS_URL ({type(exc).__name__})") from None
    queue = Queue(settings.queue_name, connection=connection)
    notify_queue = Queue(notify.queue_name(settings), connection=connection)
    reconcile(worker_context, queue)
    reconcile_rescores(worker_context, queue)
    discard_leftover_inputs(repo, settings, inputs)
    swept = [float("-inf")]  # when this worker last ran the retention sweep (monotonic seconds)
    noticed = [float("-inf")]  # when it last looked for certifications entering the notice window

    class CallWorker(SimpleWorker):
        """SimpleWorker that also recovers lost calls and rescore runs whenever RQ runs its maintenance."""

        def run_maintenance_tasks(self) -> None:
            super().run_maintenance_tasks()
            try:
                reconcile(worker_context, queue)
            except Exception:  # maintenance must never stop the worker; try again next round
                log.exception("reconciling lost calls failed")
            try:
                reconcile_rescores(worker_context, queue)
            except Exception:
                log.exception("reconciling lost rescore runs failed")
            try:
                discard_leftover_inputs(repo, settings, inputs)
            except Exception:
                log.exception("discarding left-over inputs failed")
            try:
                enqueue_due_retries(notify_queue)
                enqueue_due_retries(queue)  # calls waiting out a transient failure
            except Exception:
                log.exception("queueing retries failed")
            if time.monotonic() - swept[0] >= SWEEP_S:
                swept[0] = time.monotonic()
                try:
                    sweep(store=repo, objects=inputs, redis=connection, settings=settings)
                except Exception:
                    log.exception("the retention sweep failed")
            if time.monotonic() - noticed[0] >= NOTICE_S:
                noticed[0] = time.monotonic()
                try:
                    send_expiry_notices(store=repo, settings=settings, queue=notify_queue)
                except Exception:
                    log.exception("checking certifications for expiry notices failed")

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
