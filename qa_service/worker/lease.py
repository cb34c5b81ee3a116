"""The Redis lease a worker holds on the call (or rescore run) it works on.

It stops two workers scoring the same call at once (a job enqueued twice by a resend or a
recovery), and tells the reconcilers which calls a live worker holds: a killed worker stops
refreshing and its lease expires within LEASE_TTL_S. The lease names its host and process, so a
reconciler on the same machine sees at once that the holder is gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from qa_service.queueing import call_lease_key

if TYPE_CHECKING:
    from redis import Redis

log = logging.getLogger(__name__)

# A worker holds a lease on the call it processes; a dead worker's lease lapses after LEASE_TTL_S.
LEASE_TTL_S = 30
LEASE_REFRESH_S = 10


def lease_key(call_id: str) -> str:
    """Redis key held by the worker processing a call, for as long as it is alive."""
    return call_lease_key(call_id)


def rescore_lease_key(run_id: str) -> str:
    """Redis key held by the worker on a rescore run, for as long as it is alive."""
    return f"qa:rescore-lease:{run_id}"


@contextmanager
def leased(key: str, touch: Callable[[], None] | None = None, *,
            connection: Redis | None = None) -> Iterator[bool]:
    """Hold the lease on `key` for the RQ job running now (or on `connection`), released on exit.

    Yields False when another worker holds it (the caller skips its work); outside a worker and
    without a connection no lease is taken and it yields True.
    """
    lease = Lease(connection, key, touch) if connection is not None else Lease.for_current_job(key, touch)
    if lease is not None and not lease.acquire():
        yield False
        return
    try:
        yield True
    finally:
        if lease is not None:
            lease.release()


class Lease:
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
        self._token = holder_token()
        self._touch = touch
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def for_current_job(cls, key: str, touch: Callable[[], None] | None = None) -> Lease | None:
        """A lease on the Redis of the RQ job running now; None outside a worker."""
        from rq import get_current_job

        job = get_current_job()
        return cls(job.connection, key, touch) if job is not None else None

    def acquire(self) -> bool:
        """Take the lease and start refreshing it; False when another worker holds it."""
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
        """Stop refreshing and let the lease go."""
        from redis.exceptions import LockError, RedisError

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._lock.release()
        except (LockError, RedisError):
            pass  # expired or Redis restarted: nothing left to release


def holder_token() -> str:
    """Lease value naming the holding process: host|pid|random (the random part keeps it unique)."""
    return f"{socket.gethostname()}|{os.getpid()}|{uuid.uuid4().hex}"


def holder_dead(value: bytes | str) -> bool:
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


def age_s(moment: datetime) -> float:
    """Seconds since `moment` (a naive time counts as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (datetime.now(UTC) - moment).total_seconds()


def redis_if_answering(url: str) -> Redis | None:
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
