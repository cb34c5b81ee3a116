"""Cost of refusing unknown query parameters (api/queryparams.py): the app-wide dependency on a request
for GET /v1/calls with three query parameters, against a request through the whole app.

Run: PYTHONPATH=. .venv/bin/python bench/query_check.py
"""

from __future__ import annotations

import asyncio
import pathlib
import statistics
import tempfile
import time

from fastapi import Request
from fastapi.testclient import TestClient

from qa_service.api import agents
from qa_service.api.queryparams import refuse_unknown_query
from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.settings import Settings

QUERY = "page_size=5&agent_id=agent-a&from=2026-01-01"


def check_alone(n: int = 20000) -> float:
    """Microseconds the check takes per request, beyond running an empty coroutine."""
    route = next(r for r in agents.router.routes if getattr(r, "path", "") == "/v1/calls"
                 and "GET" in getattr(r, "methods", ()))
    scope = {"type": "http", "query_string": QUERY.encode(), "path": "/v1/calls", "route": route,
             "headers": [], "method": "GET"}
    loop = asyncio.new_event_loop()

    async def nothing(_: Request) -> None:
        return None

    def per_call(fn) -> float:  # type: ignore[no-untyped-def]
        start = time.perf_counter()
        for _ in range(n):
            loop.run_until_complete(fn(Request(scope)))
        return (time.perf_counter() - start) / n * 1e6

    return statistics.median(per_call(refuse_unknown_query) - per_call(nothing) for _ in range(3))


def whole_request(n: int = 1000) -> float:
    """Microseconds per GET /v1/calls through the app (SQLite, empty database, TestClient)."""
    folder = pathlib.Path(tempfile.mkdtemp())
    app = create_app(Settings(database_url=f"sqlite:///{folder / 'qa.db'}", storage_dir=folder / "s",
                              model_cache_dir=folder / "m", rate_limit_per_minute=0))
    client = TestClient(app, headers={"Authorization": f"Bearer {create_key(app.state.repo, 'admin', 'b')}"})
    for _ in range(50):
        client.get(f"/v1/calls?{QUERY}")
    start = time.perf_counter()
    for _ in range(n):
        client.get(f"/v1/calls?{QUERY}")
    return (time.perf_counter() - start) / n * 1e6


if __name__ == "__main__":
    alone, whole = check_alone(), whole_request()
    print(f"unknown-query check: {alone:.1f} us per request; GET /v1/calls?{QUERY}: {whole:.0f} us "
          f"({alone / whole:.1%})")
