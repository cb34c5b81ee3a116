"""Workers anywhere: an API and two workers as separate hosts that share nothing but PostgreSQL, Redis and
the input store, each a process of its own with its own working and temporary folders.

With the object store (moto's S3 server) the API's storage folder is not the workers'; with the local
folder backend they have to share one, so there the test proves the same flow on one disk.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest

from qa_service.auth import create_key
from qa_service.storage import open_repository
from qa_service.storage.objects import make_client
from tests.chaos_support import scorecard_versions
from tests.conftest import REPO_ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.postgres]

CALLS = 50
RUBRIC = (REPO_ROOT / "samples" / "rubric.yaml").read_text()
POLICIES = (REPO_ROOT / "samples" / "policies.yaml").read_text()
CHAT = (REPO_ROOT / "samples" / "transcript-chat.json").read_bytes()


def host(tmp_path: Path, name: str, env: dict[str, str], storage: Path) -> dict[str, str]:
    """A host's environment: its own working, temporary and storage folders."""
    home = tmp_path / name
    (home / "tmp").mkdir(parents=True)
    return {**env, "TMPDIR": str(home / "tmp"), "QA_STORAGE_DIR": str(storage), "HOME": str(home)}


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "qa_service", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, cwd=Path(env["HOME"]))


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("backend", ["s3", "local"])
def test_an_api_and_two_workers_on_separate_hosts_score_each_call_once(
        backend: str, pg_url: str, redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QA_", "AWS_"))}
    env.update({"QA_DATABASE_URL": pg_url, "QA_REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1",
                "QA_QUEUE_NAME": f"calls-{uuid.uuid4().hex[:8]}", "PYTHONPATH": str(REPO_ROOT),
                "QA_MODEL_CACHE_DIR": str(tmp_path.parent / "model-cache"), "QA_ASR_BEAM_SIZE": "1"})
    shared = tmp_path / "shared-storage"
    client = None
    bucket = f"qa-{uuid.uuid4().hex[:20]}"
    if backend == "s3":
        endpoint = request.getfixturevalue("s3_env")
        client = make_client(endpoint)
        client.create_bucket(Bucket=bucket)
        env.update({"QA_STORAGE_URL": f"s3://{bucket}/tenant", "AWS_ENDPOINT_URL": endpoint,
                    "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test",
                    "AWS_DEFAULT_REGION": "us-east-1"})
    hosts = {name: host(tmp_path, name, env, shared if backend == "local" else tmp_path / name / "storage")
             for name in ("api", "worker-1", "worker-2")}

    repo = open_repository(pg_url)
    for kind, rid, version, text in (("rubric", "harbourline-intake", "2026.10", RUBRIC),
                                     ("policy_pack", "valdoria-residence", "2026-10-01", POLICIES)):
        repo.put_rules(kind, rid, version, hashlib.sha256(text.encode()).hexdigest(), text)
    headers = {"Authorization": f"Bearer {create_key(repo, 'qa', 'uploader')}"}

    port = free_port()
    procs = {"api": start(["serve", "--port", str(port)], hosts["api"], tmp_path / "api.log")}
    procs.update({name: start(["worker"], hosts[name], tmp_path / f"{name}.log")
                  for name in ("worker-1", "worker-2")})
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code < 500:
                    break
            except httpx.HTTPError:
                pass
            assert procs["api"].poll() is None, (tmp_path / "api.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.2)
        ids = []
        with httpx.Client(base_url=base, headers=headers, timeout=30) as api:
            for n in range(CALLS):
                r = api.post("/v1/calls", data={
                    "call_id": f"multi-{n}", "agent_id": "agent-mira", "call_date": "2026-10-14",
                    "rubric_id": "harbourline-intake", "policy_pack_id": "valdoria-residence"},
                    files={"transcript": ("call.json", CHAT, "application/json")})
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            deadline = time.monotonic() + 600
            while True:
                statuses = [repo.get_call(i).status for i in ids]
                if all(s in ("done", "failed") for s in statuses):
                    break
                for name, proc in procs.items():
                    log = tmp_path / f"{name}.log"
                    assert proc.poll() is None, f"{name} stopped: {log.read_text()[-3000:]}"
                assert time.monotonic() < deadline, f"calls still open: {statuses}"
                time.sleep(0.5)
    finally:
        for proc in procs.values():
            stop(proc)
    logs = {name: (tmp_path / f"{name}.log").read_text(errors="replace") for name in procs}

    assert statuses == ["done"] * CALLS, logs["worker-1"][-3000:]
    versions = scorecard_versions(repo)
    assert {i: versions.get(i) for i in ids} == {i: 1 for i in ids}, "each call scored exactly once"
    # One run per call (RQ logs each job it completes), however the two workers shared them.
    runs = {i: sum(logs[name].count(f"Successfully completed process call {i} ")
                   for name in ("worker-1", "worker-2")) for i in ids}
    assert runs == {i: 1 for i in ids}, runs
    assert all(repo.get_call(i).input_path is None for i in ids)
    # No input left in the store afterwards, and none on any host's disk.
    if client is not None:
        left = client.list_objects_v2(Bucket=bucket).get("Contents", [])
        assert left == [], [o["Key"] for o in left]
        assert client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
        assert not any((tmp_path / "api" / "storage").rglob("*.json")), "the API kept no copy of an upload"
    on_disk = [str(p) for p in tmp_path.rglob("*") if p.is_file() and CHAT[:40] in p.read_bytes()]
    assert on_disk == [], on_disk
    repo.dispose()
