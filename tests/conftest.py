"""Shared fixtures: a private redis-server, S3 server (moto), PostgreSQL and SQLite database URLs, and a
settings factory.

PostgreSQL: QA_TEST_POSTGRES_URL, else postgresql+psycopg://postgres@127.0.0.1:5432/test (trust auth).
Each run makes its own database there and each test its own schema, so runs never see each other's rows.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from qa_service.settings import Settings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Signing secrets are 32 bytes or more.
WEBHOOK_SECRET = "test-webhook-secret-0123456789abcdef"
# Every app a test builds answers to the host name TestClient sends ("testserver") besides the
# loopback names of the default; a test of the default itself removes this.
os.environ["QA_TRUSTED_HOSTS"] = json.dumps(["testserver", "localhost", "127.0.0.1", "[::1]"])

_skip_notes: dict[str, str] = {}


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def _serving(proc: subprocess.Popen[bytes], answers: Callable[[], Any], down: type[Exception], what: str,
             timeout_s: float, poll_s: float) -> Iterator[None]:
    """A server process the session started: wait until `answers()` stops raising `down` (fail the
    test when the process dies or the time runs out), then stop it when the block ends."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            answers()
            break
        except down:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{what} did not start")
            time.sleep(poll_s)
    try:
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()


# -- Redis ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a private redis-server started for this test session on a free port."""
    binary = shutil.which("redis-server")
    if binary is None:
        reason = "redis-server is not installed (Debian: apt-get install redis-server)"
        _skip_notes["redis"] = reason
        pytest.skip(reason)
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--protected-mode", "yes"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    try:
        with _serving(proc, client.ping, redis.ConnectionError, f"redis-server on port {port}", 10, 0.05):
            yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()


@pytest.fixture
def redis_conn(redis_url: str) -> Iterator[Any]:
    """A client of the private Redis, emptied before each test."""
    import redis

    conn = redis.Redis.from_url(redis_url)
    conn.flushall()
    yield conn
    conn.close()


# -- S3-compatible object store ---------------------------------------------------------------------

@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """URL of a private moto S3 server (`moto[server]`, a dev dependency) started on a free port."""
    import importlib.util
    import sys
    import urllib.request

    if importlib.util.find_spec("moto") is None or importlib.util.find_spec("flask") is None:
        reason = "moto's S3 server is not installed (pip install 'moto[server]', in the dev extras)"
        _skip_notes["s3"] = reason
        pytest.skip(reason)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> None:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()

    with _serving(proc, answers, OSError, f"moto's S3 server on port {port}", 30, 0.1):
        yield endpoint


@pytest.fixture
def s3_env(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    """The standard AWS variables pointed at the private S3 server; returns its endpoint."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_ENDPOINT_URL_S3", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return s3_endpoint


# -- PostgreSQL ----------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """URL of a fresh PostgreSQL database made for this test run (skips when no server answers)."""
    import sqlalchemy as sa

    base = os.environ.get("QA_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    url = sa.engine.make_url(base)
    if url.get_driver_name() != "psycopg":
        url = url.set(drivername="postgresql+psycopg")
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"qa_test_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:  # any failure to reach or use the server means "no PostgreSQL here"
        admin.dispose()
        reason = (f"PostgreSQL not usable at {url.render_as_string(hide_password=True)} "
                  f"({type(exc).__name__}: {str(exc).splitlines()[0][:160]}); "
                  "set QA_TEST_POSTGRES_URL to run the PostgreSQL tests")
        _skip_notes["postgres"] = reason
        pytest.skip(reason)
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def pg_url(pg_database: str) -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema made for this test alone."""
    import sqlalchemy as sa

    schema = f"t_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(pg_database, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = sa.engine.make_url(pg_database).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with engine.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A SQLite database file of this test's own."""
    return f"sqlite:///{tmp_path / 'db' / 'qa.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each contract test runs once on SQLite and once on PostgreSQL."""
    if request.param == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("pg_url"))


# -- Settings ------------------------------------------------------------------------------------

@pytest.fixture
def make_settings(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Settings]:
    """Build Settings for a test: database and storage under tmp_path; keyword arguments override."""
    model_cache = tmp_path_factory.getbasetemp() / "model-cache"

    def build(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": f"sqlite:///{tmp_path / 'db' / 'qa.db'}",
            "storage_dir": tmp_path / "storage",
            "model_cache_dir": model_cache,
            "webhook_secret": WEBHOOK_SECRET,
        }
        values.update(overrides)
        return Settings(**values)

    return build


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """Say plainly which backing services were missing, so skipped tests are not mistaken for passes."""
    for service, reason in _skip_notes.items():
        terminalreporter.write_line(f"SKIPPED {service} tests: {reason}", yellow=True)
