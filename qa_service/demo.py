"""`qa-service demo` (`make demo`): score the sample calls and print a table of scorecards.

When Redis answers, the calls go the production way: stored, queued, and processed by a worker
started as a separate process. Otherwise they run inline, as `qa-service process` does. The demo
keeps its own database and storage under var/demo/, made afresh on each run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import date
from pathlib import Path

from qa_service.errors import QAServiceError
from qa_service.settings import Settings

SAMPLES = Path(__file__).resolve().parents[1] / "samples"


def run_demo(base: Settings) -> int:
    """Process the samples through the queue when Redis is reachable, inline otherwise."""
    home = Path("var/demo")
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    settings = base.model_copy(update={
        "database_url": f"sqlite:///{home / 'qa.db'}", "storage_dir": home / "storage",
        "queue_name": f"demo-{uuid.uuid4().hex[:8]}",
        # The sample company and its agents' first names are not personal data to redact.
        "redact_allow_list": base.redact_allow_list or ["Harbourline", "Mira", "Tom", "Leo"],
    })
    if _redis_answers(settings.redis_url):
        print(f"Redis answers at {settings.redis_url}: the calls go through the queue to a separate worker.")
        return _through_queue(settings)
    print(f"Redis does not answer at {settings.redis_url}: processing the calls inline instead.")
    from qa_service.inline import process_jobs, read_manifest

    jobs = list(read_manifest(SAMPLES / "manifest.jsonl", rubric=SAMPLES / "rubric.yaml",
                              policies=SAMPLES / "policies.yaml", call_date=date.today(), channels="stereo"))
    try:
        return process_jobs(settings, jobs, out=home / "scorecards", quiet=True)
    except QAServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _worker_env(settings: Settings) -> dict[str, str]:
    """The worker process's environment: this one's, with the demo's own database, storage and queue."""
    return {**os.environ, "QA_DATABASE_URL": settings.database_url, "QA_REDIS_URL": settings.redis_url,
            "QA_STORAGE_DIR": str(settings.storage_dir), "QA_QUEUE_NAME": settings.queue_name,
            "QA_REDACT_ALLOW_LIST": json.dumps(settings.redact_allow_list)}


def _redis_answers(url: str) -> bool:
    from redis import Redis
    from redis.exceptions import RedisError

    try:
        return bool(Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1).ping())
    except RedisError:
        return False


def _through_queue(settings: Settings) -> int:
    from redis import Redis
    from rq import Queue
    from tqdm import tqdm

    from qa_service.report import format_table
    from qa_service.rules.load import load_policy_pack, load_rubric
    from qa_service.services.calls import CallInput, CallRequest, submit_call
    from qa_service.services.rules import keep_loaded_rules
    from qa_service.storage import open_repository
    from qa_service.storage.objects import input_store
    from qa_service.storage.repository import InputKind

    repo = open_repository(settings.database_url)
    rubric, policies = load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")
    keep_loaded_rules(store=repo, kind="rubric", rules=rubric)
    keep_loaded_rules(store=repo, kind="policy_pack", rules=policies)
    queue = Queue(settings.queue_name, connection=Redis.from_url(settings.redis_url))
    inputs = input_store(settings)
    ids = []
    for line in (SAMPLES / "manifest.jsonl").read_text().splitlines():
        row = json.loads(line)
        kind: InputKind = "audio" if "audio" in row else "transcript"
        source = SAMPLES / row[kind]
        request = CallRequest(
            external_id=row["call_id"], agent_id=row["agent_id"],
            call_date=date.fromisoformat(row["call_date"]), rubric_id=rubric.id,
            rubric_version=rubric.version, policy_pack_id=policies.id, policy_pack_version=policies.version,
            channels="stereo" if kind == "audio" else "auto", source="upload")
        with source.open("rb") as data:
            submitted = submit_call(store=repo, settings=settings, queue=queue, request=request,
                                    upload=CallInput(kind, data, source.name), inputs=inputs)
        ids.append(submitted.call.id)
    print(f"queued {len(ids)} calls on '{settings.queue_name}'; starting a worker (it loads the models once)")
    worker = subprocess.Popen([sys.executable, "-m", "qa_service", "worker", "--burst"],
                              env=_worker_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True)
    with tqdm(total=len(ids), desc="calls", unit="call") as bar:
        finished: set[str] = set()
        while len(finished) < len(ids):
            for call_id in set(ids) - finished:
                if repo.get_call(call_id).status in ("done", "failed"):
                    finished.add(call_id)
                    bar.update(1)
            if worker.poll() is not None and len(finished) < len(ids):
                print(f"the worker stopped early:\n{worker.stderr.read() if worker.stderr else ''}")
                return 1
            time.sleep(0.5)
    worker.wait(timeout=60)
    cards, failed = [], []
    for call_id in ids:
        call = repo.get_call(call_id)
        if call.status == "failed":
            failed.append(f"{call.external_id}: failed: {call.failure_reason}")
        else:
            cards.append(repo.get_scorecard(call_id).data)
    print(format_table(cards))
    for line in failed:
        print(line)
    return 1 if failed else 0
