"""Nothing is lost and nothing is scored twice when workers are killed, Redis restarts or clients resend.

Real processes throughout: a private redis-server this module may kill and start again, workers run
as `python -m qa_service worker` against a SQLite database (WAL) and a storage folder under tmp_path,
and the API in-process. Recovery latencies are printed (run with -s to see them).
"""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa_service.api.webhooks import sign
from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.settings import Settings
from qa_service.worker.run import MAINTENANCE_S
from tests.chaos_support import (
    CHAT,
    FORM,
    SAMPLE_AUDIO,
    RedisServer,
    WorkerProcess,
    scorecard_versions,
    seed_rules,
    status_counts,
    wait_until,
    worker_env,
)

pytestmark = [pytest.mark.chaos, pytest.mark.slow, pytest.mark.redis]

# Bounded waits: generous, because two cores are shared by the workers' models and the test itself.
WORKER_READY_S = 120
RECOVERY_S = 200


def report(line: str) -> None:
    """Print a measured figure on its own line (pytest -s shows it)."""
    print(f"[chaos] {line}")  # noqa: T201


@dataclass
class Cluster:
    """One API (in-process), a killable Redis, and worker processes sharing a database and storage."""

    tmp: Path
    redis: RedisServer
    settings: Settings
    client: TestClient
    repo: Any
    key: str
    workers: list[WorkerProcess] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        s = self.settings
        return worker_env(database_url=s.database_url, redis_url=self.redis.url, storage_dir=s.storage_dir,
                          model_cache_dir=s.model_cache_dir, job_timeout_s=s.job_timeout_s,
                          QA_ALLOW_PRIVATE_URLS="true", QA_WEBHOOK_SECRET=str(s.webhook_secret))

    def start_worker(self, name: str) -> WorkerProcess:
        worker = WorkerProcess(name, self.env(), self.tmp / "logs").start()
        self.workers.append(worker)
        return worker

    def wait_ready(self, *workers: WorkerProcess) -> float:
        """Wait until each worker process has loaded its models and is listening on the queue."""
        def ready() -> bool:
            for w in workers:
                assert w.alive(), f"worker {w.name} exited:\n{w.log_text()[-3000:]}"
            return all("Listening on" in w.log_text() or "listening on" in w.log_text().lower()
                       for w in workers)
        return wait_until(ready, WORKER_READY_S, 0.25, "workers to start")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}

    def submit_transcript(self, call_id: str, text: bytes = CHAT) -> Any:
        return self.client.post("/v1/calls", data={**FORM, "call_id": call_id}, headers=self.headers,
                                files={"transcript": ("chat.json", text, "application/json")})

    def submit_audio(self, call_id: str, path: Path, channels: str = "stereo") -> Any:
        return self.client.post("/v1/calls", data={**FORM, "call_id": call_id, "channels": channels},
                                headers=self.headers,
                                files={"audio": (path.name, path.read_bytes(), "audio/flac")})

    def status(self, call_id: str) -> str:
        return str(self.repo.get_call(call_id).status)

    def all_done(self, ids: list[str]) -> bool:
        failed = [(c.id, c.failure_reason) for c in self.repo.calls_with_status(["failed"]) if c.id in ids]
        if failed:
            raise Failed(f"{len(failed)} call(s) failed, e.g. {failed[0]}")
        return {c.id for c in self.repo.calls_with_status(["done"])} >= set(ids)


class Failed(BaseException):
    """A call failed: stop waiting at once (wait_until retries ordinary exceptions)."""


@pytest.fixture
def cluster(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'db' / 'qa.db'}", redis_url=redis.url,
        storage_dir=tmp_path / "storage", model_cache_dir=tmp_path_factory.getbasetemp() / "model-cache",
        webhook_secret="chaos-webhook-secret-0123456789abcdef", allow_private_urls=True, job_timeout_s=300,
    )
    app = create_app(settings)
    repo = app.state.repo
    seed_rules(repo)
    c = Cluster(tmp=tmp_path, redis=redis, settings=settings, client=TestClient(app), repo=repo,
                key=create_key(repo, "admin", "chaos"))
    try:
        yield c
    finally:
        for w in c.workers:
            w.stop()
        redis.stop()
        repo.dispose()


def assert_exactly_once(cluster: Cluster, ids: list[str]) -> None:
    """Every call is done with exactly one scorecard version, and no input is left on disk."""
    versions = scorecard_versions(cluster.repo)
    missing = [i for i in ids if i not in versions]
    duplicated = {i: n for i, n in versions.items() if n != 1}
    assert not missing, f"{len(missing)} call(s) have no scorecard; statuses: {status_counts(cluster.repo)}"
    assert not duplicated, f"calls scored more than once: {duplicated}"
    assert status_counts(cluster.repo) == {"done": len(ids)}
    # A worker killed between storing a scorecard and deleting the input leaves that input to the next
    # maintenance pass of a live worker (jobs.discard_leftover_inputs), every MAINTENANCE_S or so.
    storage = cluster.settings.storage_dir
    wait_until(lambda: not list(storage.glob("*/input*")), 3 * MAINTENANCE_S, 0.5,
               "every input to be deleted after processing")


def test_worker_killed_mid_transcription_is_recovered_once(cluster: Cluster) -> None:
    first = cluster.start_worker("a")
    second = cluster.start_worker("b")
    cluster.wait_ready(first, second)
    r = cluster.submit_audio("kill-mid-asr", SAMPLE_AUDIO / "sample-001.flac")
    assert r.status_code == 202, r.text
    call_id = r.json()["id"]
    wait_until(lambda: cluster.status(call_id) == "processing", 60, 0.05, "the call to start processing")
    # Which worker took it: the one whose log names the job.
    owner = wait_until_owner(cluster, call_id, (first, second))
    time.sleep(1.0)  # into transcription: decoding a 50 s file takes a fraction of that
    assert cluster.status(call_id) == "processing"
    killed_at = time.monotonic()
    owner.kill()
    survivor = second if owner is first else first

    recovered = wait_until(lambda: cluster.status(call_id) == "done", RECOVERY_S, 0.25,
                           "the killed worker's call to be finished by the other worker")
    report(f"kill -9 mid-transcription: call done {recovered:.1f} s after the kill "
           f"(time since kill {time.monotonic() - killed_at:.1f} s)")
    call = cluster.repo.get_call(call_id)
    assert call.attempts == 2
    assert scorecard_versions(cluster.repo) == {call_id: 1}
    assert call_id in survivor.log_text()
    card = cluster.client.get(f"/v1/calls/{call_id}/scorecard", headers=cluster.headers)
    assert card.status_code == 200 and card.headers["x-scorecard-version"] == "1"
    assert card.json()["transcript"], "the recovered call should have been transcribed"
    assert_exactly_once(cluster, [call_id])


def wait_until_owner(cluster: Cluster, call_id: str, workers: tuple[WorkerProcess, ...]) -> WorkerProcess:
    """The worker process whose log shows it took this call's job."""
    found: list[WorkerProcess] = []

    def look() -> bool:
        found[:] = [w for w in workers if call_id in w.log_text()]
        return len(found) == 1
    wait_until(look, 30, 0.05, "a worker to log the job")
    return found[0]


def test_redis_restart_mid_batch_loses_nothing(cluster: Cluster) -> None:
    worker = cluster.start_worker("a")
    cluster.wait_ready(worker)
    ids = []
    for i in range(30):
        r = cluster.submit_transcript(f"redis-batch-{i:03d}")
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    r = cluster.submit_audio("redis-batch-audio", SAMPLE_AUDIO / "sample-002.flac")
    ids.append(r.json()["id"])
    wait_until(lambda: len(cluster.repo.calls_with_status(["done"])) >= 3, 60, 0.05, "a few calls to finish")
    restarted_at = time.monotonic()
    cluster.redis.restart()
    left = len(ids) - len(cluster.repo.calls_with_status(["done"]))
    report(f"redis restarted with {left} of {len(ids)} calls not done")
    assert left > 0, "the batch finished before Redis restarted; the test proved nothing"

    # Calls submitted while Redis is empty again go straight onto the new queue.
    r = cluster.submit_transcript("redis-batch-after")
    assert r.status_code == 202, r.text
    ids.append(r.json()["id"])
    wait_until(lambda: cluster.all_done(ids), RECOVERY_S, 0.25, "every call to finish after the restart")
    report(f"redis restart: all {len(ids)} calls done {time.monotonic() - restarted_at:.1f} s after it")
    assert worker.alive(), f"the worker died when Redis restarted:\n{worker.log_text()[-3000:]}"
    assert_exactly_once(cluster, ids)


class _Recordings(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:  # keep the test output clean
        pass


@pytest.fixture
def recording_server(tmp_path: Path) -> Iterator[str]:
    """An HTTP server on localhost serving the sample recordings, as a telephony system's store would."""
    def handler(*a: Any, **kw: Any) -> _Recordings:
        return _Recordings(*a, directory=str(SAMPLE_AUDIO), **kw)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_same_upload_and_same_webhook_twice_give_one_call(cluster: Cluster, recording_server: str) -> None:
    worker = cluster.start_worker("a")
    # Resent uploads: one after the other, then eight at once.
    first = cluster.submit_transcript("dup-upload")
    again = cluster.submit_transcript("dup-upload")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: cluster.submit_transcript("dup-concurrent"), range(8)))
    assert all(a.status_code in (200, 202) for a in answers), [a.text for a in answers]
    assert len({a.json()["id"] for a in answers}) == 1
    assert sum(a.status_code == 202 for a in answers) == 1

    # A telephony system delivering the same event twice (and once more, concurrently).
    event = json.dumps({
        "external_call_id": "dup-webhook", "agent_id": "agent-tom", "start_time": "2026-10-20T09:30:00Z",
        "recording_url": f"{recording_server}/sample-002.flac", "channels": "stereo",
        "rubric_id": FORM["rubric_id"], "policy_pack_id": FORM["policy_pack_id"],
    }).encode()
    headers = {"X-Signature": sign(str(cluster.settings.webhook_secret), event),
               "Content-Type": "application/json"}

    def deliver(_: int) -> Any:
        return cluster.client.post("/v1/webhooks/telephony", content=event, headers=headers)
    w1 = deliver(0)
    assert w1.status_code == 202, w1.text
    with ThreadPoolExecutor(4) as pool:
        repeats = list(pool.map(deliver, range(4)))
    assert all(r.status_code == 200 for r in repeats), [r.text for r in repeats]
    assert {r.json()["id"] for r in repeats} == {w1.json()["id"]}

    ids = [first.json()["id"], answers[0].json()["id"], w1.json()["id"]]
    cluster.wait_ready(worker)
    wait_until(lambda: cluster.all_done(ids), RECOVERY_S, 0.25, "the three calls to finish")
    # Resending after the call is done still answers with the same call and queues nothing new.
    late = cluster.submit_transcript("dup-upload")
    assert late.status_code == 200 and late.json()["status"] == "done"
    assert deliver(0).json()["id"] == w1.json()["id"]
    time.sleep(1.0)
    assert_exactly_once(cluster, ids)
    assert cluster.repo.get_call(w1.json()["id"]).source == "webhook"


def test_two_hundred_calls_survive_a_killed_worker_and_a_redis_restart(cluster: Cluster) -> None:
    workers = [cluster.start_worker("a"), cluster.start_worker("b")]
    cluster.wait_ready(*workers)
    started = time.monotonic()
    ids: list[str] = []

    def submit(i: int) -> str:
        for _ in range(50):  # while Redis restarts the API answers 503 for a moment: resend, as clients do
            r = cluster.submit_transcript(f"bulk-{i:03d}")
            if r.status_code in (200, 202):
                return str(r.json()["id"])
            assert r.status_code == 503, r.text
            time.sleep(0.2)
        raise AssertionError(f"call bulk-{i:03d} was never accepted")

    audio = [SAMPLE_AUDIO / "sample-002.flac"]
    for i in range(100):
        ids.append(submit(i))
    for n, path in enumerate(audio):
        r = cluster.submit_audio(f"bulk-audio-{n}", path)
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    wait_until(lambda: len(cluster.repo.calls_with_status(["done"])) >= 20, 120, 0.05, "20 calls done")
    busy = next((w for w in workers if "process call" in w.log_text()), workers[0])
    busy.kill()
    killed_at = time.monotonic()
    for i in range(100, 150):
        ids.append(submit(i))
    cluster.redis.restart()
    restarted_at = time.monotonic()
    for i in range(150, 200):
        ids.append(submit(i))
    done_at_restart = len(cluster.repo.calls_with_status(["done"]))
    report(f"bulk: worker killed after {killed_at - started:.1f} s, redis restarted "
           f"{restarted_at - killed_at:.1f} s later with {done_at_restart}/{len(ids)} done")

    wait_until(lambda: cluster.all_done(ids), 200, 0.5, "all 200+ calls to finish")
    finished = time.monotonic()
    report(f"bulk: {len(ids)} calls done in {finished - started:.1f} s; "
           f"{finished - restarted_at:.1f} s after the Redis restart")
    assert len(set(ids)) == len(ids) == 201
    assert_exactly_once(cluster, ids)


def test_redis_restart_while_a_long_call_runs_scores_it_once(cluster: Cluster) -> None:
    # A Redis restart wipes the lease of a call that a live worker is still processing; a worker
    # that starts (and reconciles) meanwhile must not score the same call a second time.
    import shutil
    import subprocess

    sox = shutil.which("sox")  # installed by `make test` (scripts/system-deps.sh)
    assert sox is not None, "sox is needed to make a long recording: run scripts/system-deps.sh"
    long_call = cluster.tmp / "long.flac"
    subprocess.run([sox, *[str(SAMPLE_AUDIO / "sample-001.flac")] * 6, str(long_call)], check=True)
    first = cluster.start_worker("a")
    cluster.wait_ready(first)
    r = cluster.submit_audio("long-during-restart", long_call)
    assert r.status_code == 202, r.text
    call_id = r.json()["id"]
    wait_until(lambda: cluster.status(call_id) == "processing", 60, 0.05, "the long call to start")
    cluster.redis.restart()
    second = cluster.start_worker("b")
    cluster.wait_ready(second)
    assert cluster.status(call_id) == "processing", "the long call finished too soon to test anything"
    wait_until(lambda: cluster.status(call_id) == "done", RECOVERY_S, 0.25, "the long call to finish")
    time.sleep(5)  # a second run, if one started, would finish after the first
    assert_exactly_once(cluster, [call_id])


def test_worker_killed_mid_rescore_fails_the_run_and_a_new_run_completes(cluster: Cluster) -> None:
    from bench.rescore import generate
    from qa_service.rules.load import load_policy_pack, load_rubric
    from tests.chaos_support import POLICIES, RUBRIC

    n = 3000  # a few seconds of rescoring: long enough to kill the worker in the middle
    generate(cluster.repo, n, load_rubric(RUBRIC), load_policy_pack(POLICIES))
    first = cluster.start_worker("a")
    second = cluster.start_worker("b")
    cluster.wait_ready(first, second)
    body = {"rubric_id": "harbourline-intake", "rubric_version": "2026.10"}

    def run_status(run_id: str) -> str:
        return str(cluster.repo.get_rescore_run(run_id).status)

    run_id = cluster.client.post("/v1/rescores", json=body, headers=cluster.headers).json()["id"]
    wait_until(lambda: run_status(run_id) == "running", 60, 0.05, "the rescore run to start")
    owner = wait_until_owner(cluster, run_id, (first, second))
    time.sleep(1.0)
    assert run_status(run_id) == "running", "the run finished too soon to test anything"
    owner.kill()
    failed = wait_until(lambda: run_status(run_id) == "failed", RECOVERY_S, 0.25,
                        "the killed worker's run to be marked failed")
    report(f"kill -9 mid-rescore: run marked failed {failed:.1f} s after the kill")
    reason = cluster.repo.get_rescore_run(run_id).failure_reason
    assert "stopped before it finished" in reason and "start a new run" in reason

    again = cluster.client.post("/v1/rescores", json=body, headers=cluster.headers)
    assert again.status_code == 202, again.text
    again_id = again.json()["id"]
    wait_until(lambda: run_status(again_id) == "done", RECOVERY_S, 0.25, "the new run to finish")
    assert cluster.repo.get_rescore_run(again_id).summary["calls"] == n
