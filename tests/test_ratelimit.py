"""The per-key rate limit, through the API with a real SQLite database and the private Redis."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient

from qa_service.api import create_app
from qa_service.api.ratelimit import WINDOW_S, RateLimiter, window_key
from qa_service.auth import create_key
from tests.conftest import free_port

LIMIT = 3


def fresh_window(margin_s: float = 3.0) -> None:
    """Wait for the next window when this one is about to end, so a test's requests share one window."""
    left = WINDOW_S - time.time() % WINDOW_S
    if left < margin_s:
        time.sleep(left + 0.05)


def client_with(settings):
    app = create_app(settings)
    repo = app.state.repo
    keys = [create_key(repo, "qa", f"client {n}") for n in range(2)]
    return TestClient(app), [{"Authorization": f"Bearer {k}"} for k in keys]


def test_the_request_over_the_limit_gets_429_with_retry_after(make_settings, redis_url, redis_conn):
    client, (first, other) = client_with(make_settings(redis_url=redis_url, rate_limit_per_minute=LIMIT))
    fresh_window()
    for _ in range(LIMIT):
        assert client.get("/v1/rubrics", headers=first).status_code == 200
    over = client.get("/v1/rubrics", headers=first)
    assert over.status_code == 429
    retry_after = int(over.headers["Retry-After"])
    assert 1 <= retry_after <= WINDOW_S
    assert "rate limit" in over.json()["detail"]
    # Another key has its own count; routes without a key are not limited.
    assert client.get("/v1/rubrics", headers=other).status_code == 200
    assert client.get("/healthz").status_code != 429
    # The count lives in Redis under the key's id, shared by every API process.
    assert any(k.startswith(b"ratelimit:") for k in redis_conn.keys())


def test_a_limit_of_zero_turns_it_off(make_settings, redis_url, redis_conn):
    client, (first, _) = client_with(make_settings(redis_url=redis_url, rate_limit_per_minute=0))
    for _ in range(LIMIT * 3):
        assert client.get("/v1/rubrics", headers=first).status_code == 200
    assert not redis_conn.keys("ratelimit:*")


def test_the_count_is_shared_between_api_processes(make_settings, redis_url, redis_conn):
    settings = make_settings(redis_url=redis_url, rate_limit_per_minute=LIMIT)
    one, (headers, _) = client_with(settings)
    two = TestClient(create_app(settings))  # a second app over the same database and Redis
    fresh_window()
    for client in (one, two, one):
        assert client.get("/v1/rubrics", headers=headers).status_code == 200
    assert two.get("/v1/rubrics", headers=headers).status_code == 429


def test_unknown_keys_are_refused_before_they_are_counted(make_settings, redis_url, redis_conn):
    client, _ = client_with(make_settings(redis_url=redis_url, rate_limit_per_minute=LIMIT))
    for _ in range(LIMIT + 2):
        assert client.get("/v1/rubrics", headers={"Authorization": "Bearer qak_nope"}).status_code == 401
    assert not redis_conn.keys("ratelimit:*")


def test_redis_unreachable_lets_requests_through_and_logs_once(make_settings, caplog):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client, (first, _) = client_with(make_settings(redis_url=dead, rate_limit_per_minute=1))
    with caplog.at_level(logging.WARNING, logger="qa_service.api.ratelimit"):
        for _ in range(4):
            assert client.get("/v1/rubrics", headers=first).status_code == 200
    warnings = [r for r in caplog.records if r.name == "qa_service.api.ratelimit"]
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()


def test_windows_roll_over_and_counts_expire(redis_conn):
    now = [10 * WINDOW_S + 50.0]
    limiter = RateLimiter(redis_conn, clock=lambda: now[0])
    assert [limiter.hit("k1", 2) for _ in range(2)] == [None, None]
    assert limiter.hit("k1", 2) == pytest.approx(10.0)  # 10 s left in this window
    now[0] += 10.0  # the next window starts
    assert limiter.hit("k1", 2) is None
    ttl = redis_conn.ttl(window_key("k1", 11))
    assert 0 < ttl <= 2 * WINDOW_S
