"""The per-key rate limit, through the API with a real SQLite database and the private Redis."""

from __future__ import annotations

import logging
import time

import pytest
from fastapi.testclient import TestClient

from qa_service.access.ratelimit import WINDOW_S, RateLimiter, client_bucket, window_key
from qa_service.app import create_app
from qa_service.auth import create_key
from tests.conftest import free_port
from tests.test_web import sign_in

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


def test_unknown_keys_count_against_the_client_address_not_a_key(make_settings, redis_url, redis_conn):
    client, (first, _) = client_with(make_settings(redis_url=redis_url, rate_limit_per_minute=LIMIT,
                                                   failed_auth_per_minute=LIMIT + 2))
    fresh_window()
    for _ in range(LIMIT + 2):
        assert client.get("/v1/rubrics", headers={"Authorization": "Bearer qak_nope"}).status_code == 401
    counted = {k.decode().rsplit(":", 1)[0] for k in redis_conn.keys("ratelimit:*")}
    assert counted == {"ratelimit:addr:testclient"}
    over = client.get("/v1/rubrics", headers={"Authorization": "Bearer qak_nope"})
    assert over.status_code == 429 and 1 <= int(over.headers["Retry-After"]) <= WINDOW_S
    assert "failed authentications from this address" in over.json()["detail"]


def test_an_address_over_its_limit_is_refused_before_any_key_is_looked_up(make_settings, redis_url,
                                                                          redis_conn):
    client, (good, _) = client_with(make_settings(redis_url=redis_url, failed_auth_per_minute=LIMIT))
    app = client.app
    repo = app.state.repo
    lookups = []
    real = repo.key_by_hash
    repo.key_by_hash = lambda *a, **k: lookups.append(a) or real(*a, **k)
    fresh_window()
    for n in range(LIMIT):
        assert client.get("/v1/agents", headers={"Authorization": f"Bearer qak_guess{n}"}).status_code == 401
    lookups.clear()
    # Even a good key: the address is refused for the rest of the minute, before anything is done.
    refused = client.get("/v1/agents", headers=good)
    assert refused.status_code == 429 and "Retry-After" in refused.headers
    assert client.post("/sign-in", data={"api_key": "qak_more"}).status_code == 429
    assert lookups == []
    # Another address goes on as before, and the refused one is not counted further in Redis.
    other = TestClient(app, client=("192.0.2.44", 1))
    assert other.get("/v1/agents", headers=good).status_code == 200
    assert int(redis_conn.get(window_key("addr:testclient", int(time.time() // WINDOW_S)))) == LIMIT


def test_the_failure_count_is_shared_between_api_processes(make_settings, redis_url, redis_conn):
    settings = make_settings(redis_url=redis_url, failed_auth_per_minute=LIMIT)
    one, (good, _) = client_with(settings)
    two = TestClient(create_app(settings))
    fresh_window()
    bad = {"Authorization": "Bearer qak_wrong"}
    assert [c.get("/v1/agents", headers=bad).status_code for c in (one, two, one)] == [401] * LIMIT
    # Both processes refuse the address: one learnt it from its own failure, the other from the count.
    assert one.get("/v1/agents", headers=good).status_code == 429
    assert two.get("/v1/agents", headers=bad).status_code == 401  # the one failure it let through
    assert two.get("/v1/agents", headers=good).status_code == 429


def test_sign_in_attempts_are_limited_per_address(make_settings, redis_url, redis_conn):
    client, _ = client_with(make_settings(redis_url=redis_url, sign_in_per_minute=LIMIT))
    app = client.app
    key = create_key(app.state.repo, "supervisor", "reader")
    fresh_window()
    # Each attempt from a browser of its own, all at one address (opening the form is no attempt).
    attempts = [sign_in(TestClient(app), pasted) for pasted in ("qak_wrong", key, "qak_wrong")]
    assert [r.status_code for r in attempts] == [401, 303, 401]
    # Every attempt counts, right or wrong, and the next is refused before the key is checked.
    over = sign_in(TestClient(app), key)
    assert over.status_code == 429 and 1 <= int(over.headers["Retry-After"]) <= WINDOW_S
    assert "sign-in attempts" in over.json()["detail"]
    elsewhere = TestClient(app, client=("192.0.2.45", 1))
    assert sign_in(elsewhere, key).status_code == 303


def test_web_sessions_count_against_their_keys_limit(make_settings, redis_url, redis_conn):
    client, _ = client_with(make_settings(redis_url=redis_url, rate_limit_per_minute=LIMIT))
    app = client.app
    key = create_key(app.state.repo, "supervisor", "reader")
    fresh_window()
    browser = TestClient(app)
    assert sign_in(browser, key).status_code == 303
    # The session and the bearer key are one key, with one count.
    assert browser.get("/agents").status_code == 200
    assert client.get("/v1/agents", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert browser.get("/calls").status_code == 200
    over = browser.get("/agents")
    assert over.status_code == 429 and "for this key" in over.json()["detail"]
    assert client.get("/v1/agents", headers={"Authorization": f"Bearer {key}"}).status_code == 429


def test_redis_unreachable_lets_requests_through_and_logs_once(make_settings, caplog):
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client, (first, _) = client_with(make_settings(redis_url=dead, rate_limit_per_minute=1,
                                                   sign_in_per_minute=1))
    key = create_key(client.app.state.repo, "supervisor", "reader")
    with caplog.at_level(logging.WARNING, logger="qa_service.access.ratelimit"):
        for _ in range(4):
            assert client.get("/v1/rubrics", headers=first).status_code == 200
        for _ in range(3):
            assert sign_in(TestClient(client.app), key).status_code == 303
    warnings = [r for r in caplog.records if r.name == "qa_service.access.ratelimit"]
    assert len(warnings) == 1 and "Redis unreachable" in warnings[0].getMessage()


def test_redis_unreachable_still_stops_failures_in_each_process(make_settings):
    # Refusing an address that keeps failing costs nobody else anything, and keeps the audit log bounded.
    dead = f"redis://127.0.0.1:{free_port()}/0"
    client, (first, _) = client_with(make_settings(redis_url=dead, failed_auth_per_minute=LIMIT))
    fresh_window()
    bad = {"Authorization": "Bearer qak_wrong"}
    statuses = [client.get("/v1/agents", headers=bad).status_code for _ in range(LIMIT + 2)]
    assert statuses == [401] * LIMIT + [429] * 2

    assert len(client.app.state.repo.audit.entries(action="auth_failed")) == LIMIT
    elsewhere = TestClient(client.app, client=("192.0.2.46", 1))
    assert elsewhere.get("/v1/agents", headers=first).status_code == 200


@pytest.mark.parametrize(("address", "bucket"), [
    ("203.0.113.9", "203.0.113.9"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),  # one subscriber's network, one count
    ("2001:db8:1:3::1", "2001:db8:1:3::/64"),
    ("::ffff:203.0.113.9", "203.0.113.9"),
    ("testclient", "testclient"),
])
def test_addresses_are_counted_per_host_or_ipv6_network(address, bucket):
    assert client_bucket(address) == bucket


def test_a_refusal_is_remembered_until_its_window_ends(redis_conn):
    now = [10 * WINDOW_S + 50.0]
    limiter = RateLimiter(redis_conn, clock=lambda: now[0])
    limiter.refuse("addr:a", 10.0)
    assert limiter.refused("addr:a") == pytest.approx(10.0) and limiter.refused("addr:b") is None
    now[0] += 10.0
    assert limiter.refused("addr:a") is None


def test_windows_roll_over_and_counts_expire(redis_conn):
    now = [10 * WINDOW_S + 50.0]
    limiter = RateLimiter(redis_conn, clock=lambda: now[0])
    assert [limiter.hit("k1", 2) for _ in range(2)] == [None, None]
    assert limiter.hit("k1", 2) == pytest.approx(10.0)  # 10 s left in this window
    now[0] += 10.0  # the next window starts
    assert limiter.hit("k1", 2) is None
    ttl = redis_conn.ttl(window_key("k1", 11))
    assert 0 < ttl <= 2 * WINDOW_S
