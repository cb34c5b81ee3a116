"""API load benchmark and agent aggregate timing, on SQLite and on PostgreSQL.

1. Starts the API with uvicorn (2 workers) on a free localhost port over a fresh database seeded
   with scorecards, and drives GET /v1/calls/{id}/scorecard open-loop at a fixed rate (requests
   are sent on a fixed schedule whether or not earlier ones have answered, so a slow server shows
   up as latency instead of as a lower request rate). Latency is measured from the scheduled send
   time, so queueing inside the client counts too.
2. Bulk-inserts 100,000 scorecards for one agent and times the agent aggregate, both through the
   repository (`agent_scorecards`) and through GET /v1/agents/{id}/scorecards.

    python bench/load.py                 # 200 req/s for 60 s on SQLite and PostgreSQL
    python bench/load.py --quick         # 10 s of load, 20,000 scorecards for the aggregate
    python bench/load.py --backend sqlite --rate 400 --duration 30

`run(args) -> dict` is what bench/run.py calls; the numbers are also printed as JSON.
PostgreSQL: --pg-url (default postgresql+psycopg://postgres@127.0.0.1:5432/test); a database of the
benchmark's own is created there and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TARGET_P99_MS = 25.0
TARGET_AGGREGATE_MS = 150.0
AGENT = "agent-bench"


# -- data ----------------------------------------------------------------------------------------

def scorecard(call_id: str, agent_id: str, day: date, rng: random.Random,
              segments: int = 60) -> dict[str, Any]:
    """A scorecard in format v1 the size of a five-minute call (about 60 transcript segments)."""
    words = ("thank you for calling this call is recorded your permit fee application reference "
             "processing time appointment document passport address <PERSON> <PHONE_NUMBER>").split()
    transcript, t = [], 0.0
    for i in range(segments):
        length = rng.uniform(1.5, 8.0)
        text = " ".join(rng.choice(words) for _ in range(int(length * 2.5)))
        transcript.append({"speaker": "agent" if i % 2 == 0 else "customer", "start": round(t, 2),
                           "end": round(t + length, 2), "text": text})
        t += length + rng.uniform(0.1, 1.0)
    criteria = [{"id": f"criterion-{k}", "passed": rng.random() < 0.8, "points": 10, "max_points": 10,
                 "evidence": [{"start": 1.0, "end": 3.0, "speaker": "agent",
                               "text": transcript[k % segments]["text"]}]}
                for k in range(10)]
    score = round(100 * sum(c["passed"] for c in criteria) / len(criteria), 1)
    return {
        "call_id": call_id, "agent_id": agent_id, "call_date": day.isoformat(), "duration_s": round(t, 2),
        "language": "en", "rubric": {"id": "bench-rubric", "version": "1", "sha256": "0" * 64},
        "policies": {"id": "bench-policies", "version": "1", "sha256": "0" * 64},
        "transcript": transcript, "redactions": [{"entity_type": "PERSON", "start": 2.0, "end": 2.5,
                                                   "speaker": "customer"}] * 5,
        "criteria": criteria, "violations": [], "score": score, "auto_fail": False, "passed": score >= 70,
    }


def seed(repo: Any, n_calls: int, agent: str, *, segments: int, rescored: float = 0.05,
         batch: int = 2000, seed_value: int = 1) -> list[str]:
    """Insert n_calls done calls with their scorecards (some rescored twice) in bulk; return call ids."""
    from qa_service.storage import rollups
    from qa_service.storage import tables as t

    rng = random.Random(seed_value)
    start = date(2026, 1, 1)
    now = datetime.now(UTC)
    # One scorecard body reused with its ids changed: building 100,000 distinct ones costs more
    # than inserting them and says nothing more about the queries.
    template = scorecard("x", agent, start, rng, segments)
    ids: list[str] = []
    with repo.engine.begin() as conn:
        for offset in range(0, n_calls, batch):
            calls, cards = [], []
            for i in range(offset, min(offset + batch, n_calls)):
                cid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
                day = start + timedelta(days=i % 365)
                ids.append(cid)
                calls.append({
                    "id": cid, "external_id": f"{agent}-{i}", "agent_id": agent, "call_date": day,
                    "status": "done", "failure_reason": None, "rubric_id": "bench-rubric",
                    "rubric_version": "1",
                    "policy_pack_id": "bench-policies", "policy_pack_version": "1", "channels": "stereo",
                    "source": "upload", "input_kind": "audio", "input_path": None, "input_url": None,
                    "attempts": 1, "created_at": now, "updated_at": now,
                })
                versions = 2 if rng.random() < rescored else 1
                for v in range(1, versions + 1):
                    score = round(rng.uniform(20, 100), 1)
                    cards.append({
                        "call_id": cid, "version": v, "agent_id": agent, "call_date": day, "score": score,
                        "passed": score >= 70, "auto_fail": rng.random() < 0.03, "rubric_id": "bench-rubric",
                        "rubric_version": "1", "rubric_sha256": "0" * 64,
                        "data": {**template, "call_id": cid, "call_date": day.isoformat(), "score": score},
                        "created_at": now + timedelta(microseconds=i), "latest": v == versions,
                    })
            conn.execute(t.calls.insert(), calls)
            conn.execute(t.scorecards.insert(), cards)
        # Rows inserted around the storage layer: sum the aggregates' rollup for them as a write would.
        days = {start + timedelta(days=i % 365) for i in range(min(n_calls, 365))}
        rollups.refresh(conn, [(agent, day, "bench-rubric") for day in days])
    return ids


# -- databases -----------------------------------------------------------------------------------

class Database:
    """A fresh database for one benchmark run: a SQLite file, or a PostgreSQL database made and dropped."""

    def __init__(self, backend: str, workdir: Path, pg_url: str):
        self.backend = backend
        self.workdir = workdir
        self.pg_url = pg_url
        self.url = ""
        self._name = ""

    def __enter__(self) -> Database:
        if self.backend == "sqlite":
            self.url = f"sqlite:///{self.workdir / 'bench.db'}"
            return self
        import sqlalchemy as sa

        base = sa.engine.make_url(self.pg_url).set(drivername="postgresql+psycopg")
        self._name = f"qa_bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{self._name}"'))
        admin.dispose()
        self.url = base.set(database=self._name).render_as_string(hide_password=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.backend != "postgresql":
            return
        import sqlalchemy as sa

        base = sa.engine.make_url(self.pg_url).set(drivername="postgresql+psycopg")
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{self._name}" WITH (FORCE)'))
        admin.dispose()

    def analyze(self, repo: Any) -> None:
        """Refresh planner statistics after a bulk load, as autovacuum / a DBA would."""
        import sqlalchemy as sa

        with repo.engine.begin() as conn:
            conn.execute(sa.text("ANALYZE"))


# -- the API server ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`uvicorn qa_service.app:app_from_env --factory --workers N` on a free localhost port."""

    def __init__(self, database_url: str, workdir: Path, workers: int, redis_url: str,
                 app: str = "qa_service.app:app_from_env", nice: int = 0):
        self.port = free_port()
        self.log = workdir / f"uvicorn-{self.port}.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("QA_")}
        env.update({"QA_DATABASE_URL": database_url, "QA_STORAGE_DIR": str(workdir / "storage"),
                    "QA_REDIS_URL": redis_url})
        self.cmd = [sys.executable, "-m", "uvicorn", app, "--factory",
                    "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(workers),
                    "--no-access-log", "--log-level", "warning"]
        extra = os.environ.get("PYTHONPATH", "")
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + extra if extra else "")
        self.env = env
        self.nice = nice
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Server:
        import httpx

        with open(self.log, "wb") as log:
            nice = self.nice
            self.proc = subprocess.Popen(self.cmd, cwd=REPO_ROOT, env=self.env, stdout=log,
                                         stderr=subprocess.STDOUT,
                                         preexec_fn=(lambda: os.setpriority(os.PRIO_PROCESS, 0, nice))
                                         if nice else None)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"uvicorn exited: {self.log.read_text()[-2000:]}")
            try:
                if httpx.get(f"{self.base}/healthz", timeout=1).status_code in (200, 503):
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("uvicorn did not answer within 60 s")

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server and its worker processes."""
        assert self.proc is not None
        tick = os.sysconf("SC_CLK_TCK")
        pids, total = [self.proc.pid], 0.0
        while pids:
            pid = pids.pop()
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                total += (int(fields[11]) + int(fields[12])) / tick
                children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            except (OSError, IndexError, ValueError):
                continue
            pids.extend(int(c) for c in children)
        return total

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


# -- load ----------------------------------------------------------------------------------------

class _Connection:
    """One keep-alive HTTP/1.1 connection speaking just enough of the protocol for GETs.

    httpx costs about 7 ms of client CPU per request, which on two cores would measure the client
    rather than the server; raw asyncio streams cost a tenth of that.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> _Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def get(self, request: bytes) -> int:
        """Send one prepared request and read the whole response; return its status code."""
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line[:15].lower() == b"content-length:":
                length = int(line[15:])
        await self.reader.readexactly(length)
        return status

    def close(self) -> None:
        self.writer.close()


async def open_loop(base: str, paths: list[str], headers: dict[str, str], rate: float,
                    duration: float, connections: int = 64) -> dict[str, Any]:
    """Send GETs on a fixed schedule (rate per second) for `duration` seconds; latency percentiles."""
    from urllib.parse import urlsplit

    parts = urlsplit(base)
    host, port = parts.hostname or "127.0.0.1", int(parts.port or 80)
    extra = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    requests = [f"GET {p} HTTP/1.1\r\nHost: {host}:{port}\r\n{extra}\r\n".encode() for p in paths]
    total = int(rate * duration)
    latencies: list[float] = []
    service: list[float] = []
    errors: dict[str, int] = {}
    idle: asyncio.Queue[_Connection] = asyncio.Queue()
    for _ in range(connections):
        idle.put_nowait(await _Connection.open(host, port))
    # Warm every connection and each worker's caches before measuring.
    for _ in range(connections):
        conn = idle.get_nowait()
        await conn.get(requests[0])
        idle.put_nowait(conn)
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    async def one(i: int) -> None:
        scheduled = start + i / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        conn = await idle.get()  # waiting for a free connection counts as latency
        sent = loop.time()
        try:
            status = await conn.get(requests[i % len(requests)])
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
            idle.put_nowait(conn)
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
            conn.close()
            idle.put_nowait(await _Connection.open(host, port))
        done = loop.time()
        latencies.append((done - scheduled) * 1000)
        service.append((done - sent) * 1000)

    await asyncio.gather(*(one(i) for i in range(total)))
    elapsed = loop.time() - start
    while not idle.empty():
        idle.get_nowait().close()
    return {"requests": total, "achieved_rps": round(total / elapsed, 1), "errors": errors,
            "connections": connections,
            **percentiles("latency_ms", latencies), **percentiles("service_ms", service)}


def percentiles(name: str, values: list[float]) -> dict[str, float]:
    """p50, p90, p99 and max of a list of milliseconds."""
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2)

    return {f"{name}_p50": pick(0.50), f"{name}_p90": pick(0.90), f"{name}_p99": pick(0.99),
            f"{name}_max": round(ordered[-1], 2)}


def postgres_cpu_seconds() -> float:
    """CPU time of every local `postgres` process (the server's share of the work; 0 without one)."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "postgres":
                continue
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            continue
    return total


def time_it(fn: Any, repeat: int) -> dict[str, float]:
    """Median and best of `repeat` timed calls, in milliseconds (one untimed call first)."""
    fn()
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        runs.append((time.perf_counter() - t0) * 1000)
    return {"median_ms": round(statistics.median(runs), 1), "best_ms": round(min(runs), 1),
            "worst_ms": round(max(runs), 1)}


# -- the benchmark -------------------------------------------------------------------------------

def run_backend(backend: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """Load and aggregate figures for one database backend."""
    import httpx

    from qa_service.auth import create_key
    from qa_service.storage import open_repository

    result: dict[str, Any] = {"backend": backend}
    with Database(backend, workdir, args.pg_url) as db:
        repo = open_repository(db.url)
        t0 = time.perf_counter()
        card_ids = seed(repo, args.scorecards, "agent-load", segments=60, seed_value=2)
        result["seed_load_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        seed(repo, args.aggregate_rows, AGENT, segments=4, seed_value=3)
        result["seed_aggregate_s"] = round(time.perf_counter() - t0, 1)
        db.analyze(repo)
        key = create_key(repo, "supervisor", "load benchmark")
        headers = {"Authorization": f"Bearer {key}"}

        # The aggregate, straight through the repository.
        result["aggregate_rows"] = args.aggregate_rows
        result["aggregate_repo_all"] = time_it(lambda: repo.agent_scorecards(AGENT), args.repeat)
        result["aggregate_repo_30d"] = time_it(
            lambda: repo.agent_scorecards(AGENT, date(2026, 6, 1), date(2026, 6, 30)), args.repeat)
        _, summary = repo.agent_scorecards(AGENT)
        result["aggregate_count"] = summary.count
        assert summary.count == args.aggregate_rows, "the aggregate must count every seeded call"
        repo.dispose()

        with Server(db.url, workdir, args.workers, args.redis_url, args.app, args.nice) as server:
            with httpx.Client(base_url=server.base, headers=headers, timeout=30) as client:
                r = client.get(f"/v1/agents/{AGENT}/scorecards")
                r.raise_for_status()
                assert r.json()["aggregate"]["count"] == summary.count
                result["aggregate_http_all"] = time_it(
                    lambda: client.get(f"/v1/agents/{AGENT}/scorecards").raise_for_status(), args.repeat)
                one = client.get(f"/v1/calls/{card_ids[0]}/scorecard")
                one.raise_for_status()
                result["scorecard_bytes"] = len(one.content)
            paths = [f"/v1/calls/{cid}/scorecard" for cid in card_ids]
            random.Random(4).shuffle(paths)
            cpu0, client0, pg0 = server.cpu_seconds(), time.process_time(), postgres_cpu_seconds()
            result["load"] = asyncio.run(open_loop(server.base, paths, headers, args.rate, args.duration))
            requests = result["load"]["requests"] + result["load"]["connections"]
            # CPU per request does not depend on what else the machine runs, unlike latency: the
            # capacity of N cores is about N * 1000 / server_cpu_ms_per_request requests per second.
            load = result["load"]
            load["server_cpu_ms_per_request"] = round((server.cpu_seconds() - cpu0) * 1000 / requests, 2)
            load["client_cpu_ms_per_request"] = round((time.process_time() - client0) * 1000 / requests, 2)
            if backend == "postgresql":  # includes whatever else this PostgreSQL server did meanwhile
                pg_ms = (postgres_cpu_seconds() - pg0) * 1000
                load["postgres_cpu_ms_per_request"] = round(pg_ms / requests, 2)
            load["machine_load_avg_1m"] = round(os.getloadavg()[0], 2)
    result["load"]["rate"] = args.rate
    result["load"]["duration_s"] = args.duration
    result["meets_p99_target"] = result["load"].get("latency_ms_p99", 1e9) < TARGET_P99_MS \
        and not result["load"]["errors"]
    result["meets_aggregate_target"] = max(result["aggregate_repo_all"]["median_ms"],
                                           result["aggregate_http_all"]["median_ms"]) < TARGET_AGGREGATE_MS
    return result


def run(args: argparse.Namespace | None = None) -> dict[str, Any]:
    """Run the benchmark for the chosen backends; returns every figure as a dict."""
    # A caller's namespace (bench/run.py) may carry only some of these options; the rest default.
    merged = parse_args([])
    for name, value in (vars(args) if args is not None else {}).items():
        setattr(merged, name, value)
    args = merged
    _apply_quick(args)
    if args.nice:
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    out: dict[str, Any] = {"targets": {"p99_ms": TARGET_P99_MS, "aggregate_ms": TARGET_AGGREGATE_MS},
                           "rate": args.rate, "duration_s": args.duration, "workers": args.workers,
                           "cpus": os.cpu_count(), "results": []}
    for backend in backends:
        workdir = Path(tempfile.mkdtemp(prefix=f"qa-load-{backend}-"))
        try:
            out["results"].append(run_backend(backend, args, workdir))
        except Exception as exc:  # one backend missing (no PostgreSQL here) must not hide the other
            out["results"].append({"backend": backend, "error": f"{type(exc).__name__}: {exc}"[:500]})
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    return out


def _apply_quick(args: argparse.Namespace) -> None:
    if getattr(args, "quick", False):
        args.duration = min(args.duration, 10.0)
        args.aggregate_rows = min(args.aggregate_rows, 20_000)
        args.repeat = min(args.repeat, 3)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    p.add_argument("--pg-url", default=os.environ.get("QA_TEST_POSTGRES_URL", DEFAULT_PG_URL))
    p.add_argument("--redis-url", default="redis://127.0.0.1:1/0",
                   help="the API connects lazily; reading scorecards never touches Redis")
    p.add_argument("--rate", type=float, default=200.0, help="requests per second")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    p.add_argument("--scorecards", type=int, default=2000, help="scorecards the load reads (random order)")
    p.add_argument("--aggregate-rows", type=int, default=100_000, help="scorecards of the aggregated agent")
    p.add_argument("--repeat", type=int, default=7, help="timed runs of each aggregate")
    p.add_argument("--quick", action="store_true", help="10 s of load and 20,000 aggregate rows")
    p.add_argument("--nice", type=int, default=0,
                   help="scheduling priority of the server and this client (negative needs root): on a "
                        "shared machine, measures the service rather than its neighbours")
    p.add_argument("--app", default="qa_service.app:app_from_env",
                   help="uvicorn app factory to serve (to compare variants)")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    result = run(parse_args(argv))
    print(json.dumps(result, indent=2))  # noqa: T201
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
