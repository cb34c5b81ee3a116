"""A per-key request limit: QA_RATE_LIMIT_PER_MINUTE requests per API key per clock minute (0 = no limit).

Fixed windows counted in Redis (`ratelimit:<key id>:<minute>`, INCR then EXPIRE), so every API process
shares one count per key. Over the limit the API answers 429 with Retry-After (seconds to the next
window). A fixed window lets a client send up to twice the limit across a window boundary; that is
accepted for one round trip per request and no script.

Redis being unreachable must not take the API down with it: requests pass uncounted (fail open),
the outage is logged once, and Redis is not asked again for OUTAGE_PAUSE_S, so requests do not
each wait on a dead connection.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from fastapi import HTTPException, Request

from qa_service.settings import Settings
from qa_service.storage.repository import StoredKey

log = logging.getLogger(__name__)

WINDOW_S = 60
# After a Redis error, requests pass uncounted for this long before Redis is tried again.
OUTAGE_PAUSE_S = 5.0
# Short socket timeouts: a limiter waiting on a blackholed Redis would slow every request.
SOCKET_TIMEOUT_S = 0.5


def window_key(key_id: str, window: int) -> str:
    """The Redis key counting one API key's requests in one window."""
    return f"ratelimit:{key_id}:{window}"


class RateLimiter:
    """Counts requests per key in fixed windows in Redis; `hit` says how long to wait when over the limit."""

    def __init__(self, connection: Any, clock: Callable[[], float] = time.time):
        self.connection = connection
        self._clock = clock
        self._paused_until = 0.0
        self._down = False

    def hit(self, key_id: str, per_minute: int) -> float | None:
        """Count one request for this key; None when allowed, else the seconds until the next window."""
        if per_minute <= 0:
            return None
        from redis.exceptions import RedisError

        if time.monotonic() < self._paused_until:
            return None
        now = self._clock()
        window = int(now // WINDOW_S)
        name = window_key(key_id, window)
        try:
            pipe = self.connection.pipeline(transaction=False)
            pipe.incr(name)
            # Outlives the window a little, so a clock a few seconds off between processes still counts.
            pipe.expire(name, 2 * WINDOW_S)
            count = int(pipe.execute()[0])
        except RedisError as exc:
            self._paused_until = time.monotonic() + OUTAGE_PAUSE_S
            if not self._down:
                self._down = True
                log.warning("rate limit not enforced: Redis unreachable (%s); letting requests through",
                            type(exc).__name__)
            return None
        if self._down:
            self._down = False
            log.info("rate limit enforced again: Redis is back")
        if count <= per_minute:
            return None
        return max(1.0, (window + 1) * WINDOW_S - now)


_lock = threading.Lock()


def limiter_for(request: Request) -> RateLimiter:
    """The app's limiter, made on first use from its settings (the Redis URL may be set after start)."""
    state = request.app.state
    limiter: RateLimiter | None = getattr(state, "rate_limiter", None)
    if limiter is None:
        with _lock:
            limiter = getattr(state, "rate_limiter", None)
            if limiter is None:
                from redis import Redis

                settings: Settings = state.settings
                connection = Redis.from_url(settings.redis_url, socket_timeout=SOCKET_TIMEOUT_S,
                                            socket_connect_timeout=SOCKET_TIMEOUT_S)
                limiter = RateLimiter(connection)
                state.rate_limiter = limiter
    return limiter


def limit_rate(request: Request, key: StoredKey) -> StoredKey:
    """Count a request for an authenticated key; 429 with Retry-After when its minute's quota is spent."""
    settings: Settings = request.app.state.settings
    if settings.rate_limit_per_minute <= 0:
        return key
    wait = limiter_for(request).hit(key.id, settings.rate_limit_per_minute)
    if wait is not None:
        raise HTTPException(
            status_code=429, headers={"Retry-After": str(math.ceil(wait))},
            detail=f"rate limit of {settings.rate_limit_per_minute} requests per minute for this key "
                   f"reached; retry in {math.ceil(wait)} s",
        )
    return key
