"""Real processes for failure tests: a redis-server that can be killed and restarted, queue workers
started as `python -m qa_service worker`, and waiting with a deadline."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
RUBRIC = (REPO_ROOT / "samples" / "rubric.yaml").read_text()
POLICIES = (REPO_ROOT / "samples" / "policies.yaml").read_text()
CHAT = (REPO_ROOT / "samples" / "transcript-chat.json").read_bytes()
SAMPLE_AUDIO = REPO_ROOT / "samples" / "audio"
FORM = {"agent_id": "agent-mira", "call_date": "2026-10-14", "rubric_id": "harbourline-intake",
        "policy_pack_id": "valdoria-residence"}


def seed_rules(repo: Any) -> None:
    """Store the sample rubric and policy pack the test calls name."""
    for kind, rid, version, text in (("rubric", "harbourline-intake", "2026.10", RUBRIC),
                                     ("policy_pack", "valdoria-residence", "2026-10-01", POLICIES)):
        repo.put_rules(kind, rid, version, hashlib.sha256(text.encode()).hexdigest(), text)


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2,
               what: str = "condition") -> float:
    """Poll until predicate() is truthy; return the seconds it took, or fail at the deadline."""
    started = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - started
        except Exception:  # a backing service that is restarting answers with errors for a moment
            pass
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """A private redis-server on a fixed port that a test may kill -9 and start again (nothing persisted)."""

    def __init__(self, workdir: Path, port: int | None = None):
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> None:
        """Start the server and wait until it answers PING."""
        import redis

        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(host="127.0.0.1", port=self.port)
        try:
            wait_until(client.ping, timeout, 0.05, "redis-server to answer")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server: every queued job and registry entry is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        """Kill the server and start an empty one on the same port."""
        self.kill()
        self.start()

    def stop(self) -> None:
        """Terminate the server politely (end of test)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.proc = None


class WorkerProcess:
    """One `python -m qa_service worker` process with QA_* settings in its environment."""

    def __init__(self, name: str, env: dict[str, str], log_dir: Path):
        self.name = name
        self.env = env
        self.log_path = log_dir / f"worker-{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> WorkerProcess:
        """Start the worker (it loads its models, reconciles lost calls, then takes jobs)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child owns the handle
        self.proc = subprocess.Popen([sys.executable, "-m", "qa_service", "worker"], cwd=REPO_ROOT,
                                     env=self.env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no goodbye to Redis, whatever job it had is left mid-way."""
        if self.alive():
            assert self.proc is not None
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        """End the worker at the end of a test (SIGTERM, then SIGKILL)."""
        if self.alive():
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def log_text(self) -> str:
        """What the worker wrote so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def worker_env(*, database_url: str, redis_url: str, storage_dir: Path, model_cache_dir: Path,
               job_timeout_s: int = 120, **extra: str) -> dict[str, str]:
    """The environment of a worker process: this interpreter's, with QA_* settings for the test."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
    env.update({
        "QA_DATABASE_URL": database_url, "QA_REDIS_URL": redis_url, "QA_STORAGE_DIR": str(storage_dir),
        "QA_MODEL_CACHE_DIR": str(model_cache_dir), "QA_JOB_TIMEOUT_S": str(job_timeout_s),
        "PYTHONUNBUFFERED": "1",
    })
    env.update({k: str(v) for k, v in extra.items()})
    return env


def scorecard_versions(repo: Any) -> dict[str, int]:
    """Number of stored scorecard versions per call id (duplicates show up as counts above one)."""
    import sqlalchemy as sa

    from qa_service.storage import tables as t

    query = sa.select(t.scorecards.c.call_id, sa.func.count()).group_by(t.scorecards.c.call_id)
    with repo.engine.connect() as conn:
        return {str(call_id): int(n) for call_id, n in conn.execute(query)}


def status_counts(repo: Any) -> dict[str, int]:
    """Number of calls per status."""
    import sqlalchemy as sa

    from qa_service.storage import tables as t

    query = sa.select(t.calls.c.status, sa.func.count()).group_by(t.calls.c.status)
    with repo.engine.connect() as conn:
        return {str(status): int(n) for status, n in conn.execute(query)}
