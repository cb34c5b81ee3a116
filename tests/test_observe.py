"""Stage durations: workers add them up in Redis and /metrics reports them as a summary."""

from __future__ import annotations

import pytest
import redis
from fastapi.testclient import TestClient

from qa_service.app import create_app
from qa_service.observe import record_stage_seconds, stage_totals


def test_stage_seconds_add_up_and_reach_metrics(make_settings, redis_url, redis_conn) -> None:
    record_stage_seconds(redis_conn, {"decode": 0.5, "transcribe": 4.0, "redact": 0.25, "score": 0.01})
    record_stage_seconds(redis_conn, {"redact": 0.75, "score": 0.03})
    record_stage_seconds(redis_conn, {})  # a call with no timings adds nothing
    totals = stage_totals(redis_conn)
    assert totals["transcribe"] == (4.0, 1)
    assert totals["redact"] == (pytest.approx(1.0), 2)
    assert totals["score"][1] == 2

    app = create_app(make_settings(redis_url=redis_url))
    text = TestClient(app).get("/metrics").text
    assert "# TYPE qa_stage_duration_seconds summary" in text
    assert 'qa_stage_duration_seconds_sum{stage="transcribe"} 4' in text
    assert 'qa_stage_duration_seconds_count{stage="redact"} 2' in text


def test_an_unreachable_redis_loses_the_sample_not_the_call(caplog) -> None:
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    record_stage_seconds(dead, {"decode": 1.0})  # must not raise
    assert "stage durations not recorded" in caplog.text
