"""Property-based fuzzing of every route in the OpenAPI schema (schemathesis): no request gets a 5xx.

The app runs in-process over a real SQLite database and the private Redis, with an admin key, a
stored rubric and policy pack, and one scored call, so generated requests reach past the 404s.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error

from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.settings import Settings
from qa_service.storage.repository import NewCall
from tests.chaos_support import seed_rules

# Per operation; about 25 operations x this many examples stays well under a minute on two cores.
MAX_EXAMPLES = 15


# The schema is read at collection time, so the app is built then, over a throwaway SQLite file;
# its queue is pointed at the private Redis once that fixture exists. (schemathesis's lazy
# `from_fixture` loader does not work with pytest 9.)
_TMP = Path(tempfile.mkdtemp(prefix="qa-fuzz-"))
_APP = create_app(Settings(database_url=f"sqlite:///{_TMP / 'qa.db'}", redis_url="redis://127.0.0.1:1/0",
                           storage_dir=_TMP / "storage", webhook_secret="fuzz-" + "s" * 32,
                           max_upload_bytes=1024 * 1024,
                           # Every request should reach its route: the rate limits have their own tests.
                           rate_limit_per_minute=0, failed_auth_per_minute=0, sign_in_per_minute=0))
schema = schemathesis.openapi.from_asgi("/openapi.json", _APP)


@pytest.fixture(scope="module")
def admin_key(redis_url: str) -> Iterator[str]:
    """An admin key, the private Redis as the app's queue, and stored data for requests to find."""
    from datetime import date

    from redis import Redis
    from rq import Queue

    settings = _APP.state.settings
    settings.redis_url = redis_url
    _APP.state.queue = Queue(settings.queue_name, connection=Redis.from_url(redis_url))
    repo = _APP.state.repo
    seed_rules(repo)
    call, _ = repo.add_call(NewCall(
        id="00000000-0000-4000-8000-000000000001", external_id="fuzz-1", agent_id="agent-mira",
        call_date=date(2026, 10, 14), rubric_id="harbourline-intake", rubric_version="2026.10",
        policy_pack_id="valdoria-residence", policy_pack_version="2026-10-01", input_kind="transcript"))
    repo.finish_call(call.id, {"score": 50.0, "passed": False, "auto_fail": False, "rubric": {}})
    yield create_key(repo, "admin", "fuzz")
    repo.dispose()
    shutil.rmtree(_TMP, ignore_errors=True)


@pytest.fixture
def admin_headers(admin_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {admin_key}"}


@schema.parametrize()
@settings(max_examples=MAX_EXAMPLES, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx(case: Any, admin_headers: dict[str, str]) -> None:
    response = case.call(headers=admin_headers)
    case.validate_response(response, checks=[not_a_server_error])
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"


@schema.parametrize()
@settings(max_examples=5, deadline=None, database=None, suppress_health_check=list(HealthCheck))
def test_no_route_answers_5xx_without_a_key(case: Any, admin_key: str) -> None:
    response = case.call(headers={"Authorization": "Bearer qak_not-a-key"})
    assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.status_code}"
