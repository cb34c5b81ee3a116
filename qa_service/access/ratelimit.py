"""Request limits counted in Redis: per API key, and per client address for failures and sign-ins.

- Per key: QA_RATE_LIMIT_PER_MINUTE requests per API key per clock minute, whether the key comes as a
  bearer token or through a web session (`limit_rate`, called by the API's key dependency and by the
  pages' session lookup alike).
- Per client address, failed authentication: every answer 401 or 403 counts against the address it
  went to (`ClientLimit`). Once QA_FAILED_AUTH_PER_MINUTE have been answered in a minute, the address
  is refused with 429 for the rest of that minute before anything else happens: no key is hashed or
  looked up, no body read, no audit row written. Each process remembers the refusal itself once the
  shared count in Redis reaches the limit, so requests from a refused address cost no Redis round
  trip, and an address gets at most one more failure per other API process before it learns.
- Per client address, sign-in attempts on the web page: QA_SIGN_IN_PER_MINUTE (`limit_sign_in`),
  counted before the pasted key is checked.

The client address is the ASGI `client` of the request: the peer's address, or, behind a proxy the
server trusts (uvicorn's `--forwarded-allow-ips`), the address that proxy forwarded. X-Forwarded-For
is never read here: anyone can send it. IPv6 addresses count per /64 network, the block one
subscriber usually holds, so an attacker cannot step through addresses of their own network.

Fixed windows (`ratelimit:<name>:<minute>`, INCR then EXPIRE), so every API process shares one count;
over a limit the answer is 429 with Retry-After (seconds to the next window). A fixed window lets a
client send up to twice the limit across a window boundary; that is accepted for one round trip per
request and no script.

Redis being unreachable must not take the API down with it: requests pass uncounted (fail open),
the outage is logged once, and Redis is not asked again for OUTAGE_PAUSE_S, so requests do not
each wait on a dead connection. Failed authentication alone is then counted in each process's own
memory: refusing an address that keeps failing costs no one else anything, and it keeps the audit
log bounded through the outage.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import HTTPException, Request

from qa_service.settings import Settings
from qa_service.storage.repository import StoredKey

log = logging.getLogger(__name__)

WINDOW_S = 60
# After a Redis error, requests pass uncounted for this long before Redis is tried again.
OUTAGE_PAUSE_S = 5.0
# Short socket timeouts: a limiter waiting on a blackholed Redis would slow every request.
SOCKET_TIMEOUT_S = 0.5
# Refused addresses each process remembers; past this many, those whose minute is over are dropped.
MAX_REFUSED = 10_000
# Names counted in process memory while Redis is away; past this many, further names go uncounted.
MAX_COUNTED_HERE = 100_000
# Answers that count as failed authentication against the client address.
FAILED_AUTH = (401, 403)
# Where ClientLimit leaves, in the request's ASGI state, how an address's failures stand (FailureCount).
FAILURES_STATE = "client_failures"


def window_key(name: str, window: int) -> str:
    """The Redis key counting one name's requests (an API key id, `addr:...`, `signin:...`) in one window."""
    return f"ratelimit:{name}:{window}"


class RateLimiter:
    """Counts requests per name in fixed windows in Redis; `hit` says how long to wait when over the limit.

    It also remembers, in this process, the client addresses refused until the end of their window.
    """

    def __init__(self, connection: Any, clock: Callable[[], float] = time.time):
        self.connection = connection
        self._clock = clock
        self._paused_until = 0.0
        self._down = False
        self._refused: dict[str, float] = {}  # name -> clock time its refusal ends
        self._here: dict[str, int] = {}  # name -> count this window, while Redis is away
        self._here_window = -1
        self._here_lock = threading.Lock()

    def count(self, name: str) -> tuple[int, float] | None:
        """Count one request under this name: the window's count so far and the seconds left in the
        window; None when Redis is unreachable (the request goes uncounted)."""
        from redis.exceptions import RedisError

        if time.monotonic() < self._paused_until:
            return None
        now = self._clock()
        window = int(now // WINDOW_S)
        key = window_key(name, window)
        try:
            pipe = self.connection.pipeline(transaction=False)
            pipe.incr(key)
            # Outlives the window a little, so a clock a few seconds off between processes still counts.
            pipe.expire(key, 2 * WINDOW_S)
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
        return count, (window + 1) * WINDOW_S - now

    def count_here(self, name: str) -> tuple[int, float] | None:
        """Like `count`, in this process's memory only (for when Redis is away); None past MAX_COUNTED_HERE
        names in one window."""
        now = self._clock()
        window = int(now // WINDOW_S)
        with self._here_lock:
            if window != self._here_window:
                self._here, self._here_window = {}, window
            if name not in self._here and len(self._here) >= MAX_COUNTED_HERE:
                return None
            count = self._here[name] = self._here.get(name, 0) + 1
        return count, (window + 1) * WINDOW_S - now

    def hit(self, name: str, per_minute: int) -> float | None:
        """Count one request under this name; None when allowed, else the seconds until the next window."""
        if per_minute <= 0:
            return None
        counted = self.count(name)
        if counted is None or counted[0] <= per_minute:
            return None
        return max(1.0, counted[1])

    def refuse(self, name: str, seconds: float) -> None:
        """Remember in this process that `name` is refused for this many seconds."""
        if len(self._refused) >= MAX_REFUSED:
            now = self._clock()
            self._refused = {k: until for k, until in self._refused.items() if until > now}
            if len(self._refused) >= MAX_REFUSED:
                self._refused = {}  # a refusal forgotten is learnt again from Redis at the next failure
        self._refused[name] = self._clock() + seconds

    def refused(self, name: str) -> float | None:
        """Seconds `name` is still refused for, from this process's memory (no Redis); None when it is not."""
        until = self._refused.get(name)
        if until is None:
            return None
        left = until - self._clock()
        if left <= 0:
            self._refused.pop(name, None)
            return None
        return left


_lock = threading.Lock()


def limiter_for(state: Any) -> RateLimiter:
    """The app's limiter (from `app.state`), made on first use from its settings (the Redis URL may be
    set after start)."""
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


def _too_many(wait: float, detail: str) -> HTTPException:
    return HTTPException(status_code=429, headers={"Retry-After": str(math.ceil(wait))},
                         detail=f"{detail}; retry in {math.ceil(wait)} s")


def limit_rate(request: Request, key: StoredKey) -> StoredKey:
    """Count a request for an authenticated key (bearer token or web session); 429 with Retry-After when
    its minute's quota is spent."""
    settings: Settings = request.app.state.settings
    if settings.rate_limit_per_minute <= 0:
        return key
    wait = limiter_for(request.app.state).hit(key.id, settings.rate_limit_per_minute)
    if wait is not None:
        raise _too_many(wait, f"rate limit of {settings.rate_limit_per_minute} requests per minute for "
                              "this key reached")
    return key


def client_address(scope: Mapping[str, Any]) -> str:
    """The address a request came from (the ASGI client), or "unknown"."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def client_bucket(address: str) -> str:
    """What an address's requests are counted under: the address itself, or its /64 network for IPv6."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def limit_sign_in(request: Request) -> None:
    """Count a sign-in attempt from the request's address; 429 with Retry-After beyond
    QA_SIGN_IN_PER_MINUTE. Call it before the pasted key is checked."""
    settings: Settings = request.app.state.settings
    if settings.sign_in_per_minute <= 0:
        return
    name = "signin:" + client_bucket(client_address(request.scope))
    wait = limiter_for(request.app.state).hit(name, settings.sign_in_per_minute)
    if wait is not None:
        raise _too_many(wait, f"too many sign-in attempts from this address (limit "
                              f"{settings.sign_in_per_minute} per minute)")


@dataclass(frozen=True)
class FailureCount:
    """How an address's failed authentication stands after one more: its count this minute, the limit,
    and how long the address is now refused (0 while under the limit)."""

    count: int
    limit: int
    refused_for_s: float

    @property
    def first_refused(self) -> bool:
        """This failure is the one that used up the address's limit: from now on it is refused."""
        return self.count == self.limit

    @property
    def past_limit(self) -> bool:
        """A failure after the limit was used up (let through by a process that had not learnt it yet)."""
        return self.count > self.limit


class ClientLimit:
    """ASGI middleware: refuses an address over its failed-authentication limit with 429 before any work,
    and counts every 401 and 403 answer against the address it went to (after the answer is sent)."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope["app"].state
        per_minute: int = state.settings.failed_auth_per_minute
        if per_minute <= 0:
            await self.app(scope, receive, send)
            return
        limiter = limiter_for(state)
        name = "addr:" + client_bucket(client_address(scope))
        wait = limiter.refused(name)
        if wait is not None:
            await _refuse(send, wait, per_minute)
            return
        seen = {"status": 0}

        async def watching_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            await send(message)

        await self.app(scope, receive, watching_send)
        if seen["status"] in FAILED_AUTH:
            counted = await anyio.to_thread.run_sync(limiter.count, name) or limiter.count_here(name)
            if counted is None:
                return
            count, left = counted
            refused_for = 0.0
            if count >= per_minute:
                refused_for = max(1.0, left)
                limiter.refuse(name, refused_for)
            scope.setdefault("state", {})[FAILURES_STATE] = FailureCount(count, per_minute, refused_for)


async def _refuse(send: Any, wait: float, per_minute: int) -> None:
    detail = (f"too many failed authentications from this address (limit {per_minute} per minute); "
              f"retry in {math.ceil(wait)} s")
    body = json.dumps({"detail": detail}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
               (b"retry-after", str(math.ceil(wait)).encode())]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
