"""Erasure: after a call is erased (API or command line), a scan of every database table, the input
store and every Redis key and job finds nothing of it but the receipt in the audit log."""

from __future__ import annotations

import io
import json
import uuid
import zlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from rq import Queue

from qa_service import notify
from qa_service.cli import main
from qa_service.queueing import CALL_JOB, call_lease_key, retry_job_id
from qa_service.storage.objects import input_store, make_client, parse_storage_url
from qa_service.storage.repository import NewRescoreRun
from tests.test_api import Api, seed_rules
from tests.test_review import API_CARD

AGENT = "agent-erased"


@pytest.fixture
def backend() -> str:
    """Where inputs live: "local" (QA_STORAGE_DIR) unless a test is parametrized with "s3"."""
    return "local"


@pytest.fixture
def api(backend, make_settings, database_url, redis_url, redis_conn, request) -> Api:
    storage: dict[str, Any] = {}
    if backend == "s3":
        endpoint = request.getfixturevalue("s3_env")
        bucket = f"qa-{uuid.uuid4().hex[:20]}"
        make_client(endpoint).create_bucket(Bucket=bucket)
        storage = {"storage_url": f"s3://{bucket}/tenant"}
    a = Api(make_settings(redis_url=redis_url, database_url=database_url,
                          outgoing_webhook_url="https://hooks.example.com/qa",
                          outgoing_webhook_secret="s" * 32, **storage), redis_conn)
    seed_rules(a.repo)
    return a


def full_call(api: Api, external_id: str, agent_id: str = AGENT) -> str:
    """A call with all a call leaves behind: its input and redacted audio stored, two scorecard
    versions, a review, reads in the audit log, a rescore summary naming it, a webhook delivery, a
    finished job and a scheduled retry in Redis."""
    call_id = api.submit(call_id=external_id, agent_id=agent_id).json()["id"]
    api.repo.start_call(call_id)
    stored = api.repo.finish_call(call_id, {**API_CARD, "call_id": external_id, "agent_id": agent_id})
    api.repo.add_scorecard_versions([(call_id, {**API_CARD, "call_id": external_id, "agent_id": agent_id})])
    store = input_store(api.settings)
    store.put_input(call_id, io.BytesIO(b"plain input " + external_id.encode()), ".json", 10_000)
    store.put_redacted_audio(call_id, io.BytesIO(b"RIFF redacted"))
    review = {"target": "criterion", "id": "recording_notice", "action": "override_pass",
              "reason": "notice given before the recording started"}
    assert api.client.post(f"/v1/calls/{call_id}/reviews", json=review, headers=api.h()).status_code == 201
    assert api.client.get(f"/v1/calls/{call_id}/scorecard", headers=api.h()).status_code == 200
    assert api.client.get(f"/v1/agents/{agent_id}/scorecards", headers=api.h()).status_code == 200
    assert api.client.get(f"/v1/calls/{call_id}", headers=api.h("telephony")).status_code in (403, 404)
    run = api.repo.add_rescore_run(NewRescoreRun(id=_uuid(), rubric_id="r", rubric_version="1",
                                                 requested_by_name="qa", dry_run=True))
    api.repo.start_rescore_run(run.id)
    api.repo.finish_rescore_run(run.id, {
        "calls": 1, "agents_with_flips": {agent_id: {"to_pass": 1}},
        "flipped_calls": [{"call_id": call_id, "agent_id": agent_id, "call_date": "2026-10-14"}],
        "refresher": {agent_id: {"fee": [{"call_id": call_id, "call_date": "2026-10-14", "detail": "x"}]}}})
    call = api.repo.get_call(call_id)
    notify.enqueue_events(Queue(notify.queue_name(api.settings), connection=api.queue.connection),
                          notify.events_for(call, stored, API_CARD))
    api.queue.enqueue_in(timedelta(hours=1), CALL_JOB, call_id, job_id=retry_job_id(call_id, 1))
    return call_id


def _uuid() -> str:
    return str(uuid.uuid4())


def database_hits(url: str, *needles: str) -> list[tuple[str, dict[str, Any]]]:
    """Every row of every table in which any needle appears in any column."""
    engine = sa.create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1)
                              if url.startswith("postgresql://") else url)
    meta = sa.MetaData()
    meta.reflect(engine)
    hits = []
    with engine.connect() as conn:
        for table in meta.sorted_tables:
            for row in conn.execute(sa.select(table)).mappings():
                text = " ".join(json.dumps(v, default=str) if isinstance(v, dict | list) else str(v)
                                for v in row.values())
                if any(n in text for n in needles):
                    hits.append((table.name, dict(row)))
    engine.dispose()
    return hits


def redis_hits(conn: Any, *needles: str) -> list[str]:
    """Every Redis key whose name or value holds a needle (RQ job data decompressed)."""
    found = []
    for key in conn.scan_iter(count=1000):
        kind = conn.type(key).decode()
        if kind == "string":
            values = [conn.get(key)]
        elif kind == "list":
            values = conn.lrange(key, 0, -1)
        elif kind == "set":
            values = list(conn.smembers(key))
        elif kind == "zset":
            values = conn.zrange(key, 0, -1)
        elif kind == "hash":
            values = []
            for field, value in conn.hgetall(key).items():
                values += [field, value]
                if field == b"data":
                    try:
                        values.append(zlib.decompress(value))
                    except zlib.error:
                        pass
        elif kind == "stream":
            values = [repr(conn.xrange(key))]
        else:
            values = []
        blob = key + b" " + b" ".join(v if isinstance(v, bytes) else str(v).encode() for v in values if v)
        if any(n.encode() in blob for n in needles):
            found.append(key.decode())
    return found


def store_hits(api: Api, call_id: str, *needles: str) -> list[str]:
    """What the input store lists for the call, every file under the storage folder and, on an object
    store, every object and unfinished upload in the bucket whose name or content holds a needle."""
    root = Path(api.settings.storage_dir)
    files = [str(p) for p in root.rglob("*") if any(n in str(p) for n in needles)
             or (p.is_file() and any(n.encode() in p.read_bytes() for n in needles))]
    objects: list[str] = []
    if api.settings.storage_url:
        bucket, _ = parse_storage_url(api.settings.storage_url)
        client = make_client(api.settings.storage_endpoint)
        for o in client.list_objects_v2(Bucket=bucket).get("Contents", []):
            body = client.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
            if any(n in o["Key"] or n.encode() in body for n in needles):
                objects.append(o["Key"])
        objects += [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
                    if any(n in u["Key"] for n in needles)]
    return input_store(api.settings).list_call(call_id) + files + objects


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_erasing_a_call_leaves_nothing_of_it_but_the_receipt(api, database_url, redis_conn):
    call_id = full_call(api, "ext-erase-1")
    kept = full_call(api, "ext-kept-1", agent_id="agent-kept")
    # The scan sees the call everywhere before.
    assert database_hits(database_url, call_id, "ext-erase-1")
    assert redis_hits(redis_conn, call_id)
    assert store_hits(api, call_id, call_id)

    r = api.client.delete(f"/v1/calls/{call_id}", headers=api.h("admin"))
    assert r.status_code == 200, r.text
    receipt = r.json()
    assert receipt["call_ids"] == [call_id] and receipt["key_name"] == "admin key"
    removed = receipt["calls"][call_id]
    assert removed["calls"] == 1 and removed["scorecard_versions"] == 2 and removed["reviews"] == 1
    assert removed["stored_objects"] == 2 and removed["queue_jobs"] >= 3  # its job, retry, deliveries
    assert removed["rescore_runs_changed"] == 1 and removed["audit_rows_repointed"] >= 3

    hits = database_hits(database_url, call_id, "ext-erase-1")
    assert [(table, row["action"]) for table, row in hits] == [("audit_log", "erased_call")]
    assert receipt["receipt_id"] in hits[0][1]["details"]
    assert redis_hits(redis_conn, call_id, "ext-erase-1") == []
    assert store_hits(api, call_id, call_id, "ext-erase-1") == []
    # The receipt in the audit log, without the external id.
    [row] = api.repo.audit.entries(action="erased_call")
    assert row.target_id == call_id and row.key_name == "admin key" and "ext-erase" not in str(row)
    # The other call is untouched.
    assert api.repo.get_call(kept).status == "done"
    assert store_hits(api, kept, kept) and redis_hits(redis_conn, kept)
    assert database_hits(database_url, "agent-kept")
    # Gone: 404, and erasing again is 404 too.
    assert api.client.get(f"/v1/calls/{call_id}", headers=api.h()).status_code == 404
    assert api.client.delete(f"/v1/calls/{call_id}", headers=api.h("admin")).status_code == 404


@pytest.mark.parametrize("role", ["qa", "supervisor", "telephony"])
def test_only_admin_keys_erase(api, role):
    call_id = api.submit().json()["id"]
    assert api.client.delete(f"/v1/calls/{call_id}", headers=api.h(role)).status_code == 403
    assert api.client.delete("/v1/calls", params={"external_id": "x"}, headers=api.h(role)).status_code == 403
    assert api.client.delete(f"/v1/agents/{AGENT}/calls", headers=api.h(role)).status_code == 403
    assert api.repo.get_call(call_id)


def test_erasing_by_external_id_keeps_it_out_of_the_audit_log(api, database_url, redis_conn):
    call_id = full_call(api, "ext-person-42")
    # Reads that named the call by its sender's id are audited under that id until the erasure.
    for path in ("/v1/calls/ext-person-42", "/v1/calls/ext-person-42/scorecard"):
        assert api.client.get(path, headers=api.h("admin")).status_code == 200
    assert database_hits(database_url, "ext-person-42")
    assert api.client.delete("/v1/calls", params={"external_id": "nobody"},
                             headers=api.h("admin")).status_code == 404
    r = api.client.delete("/v1/calls", params={"external_id": "ext-person-42"}, headers=api.h("admin"))
    assert r.status_code == 200, r.text
    assert r.json()["external_id"] == "ext-person-42" and r.json()["call_ids"] == [call_id]
    assert database_hits(database_url, "ext-person-42") == []
    assert {row["action"] for _, row in database_hits(database_url, call_id)} == {"erased_call"}
    assert redis_hits(redis_conn, call_id, "ext-person-42") == []


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_erasing_an_agents_calls(api, database_url, redis_conn):
    ids = [full_call(api, f"ext-agent-{i}") for i in range(2)]
    kept = full_call(api, "ext-other", agent_id="agent-kept")
    r = api.client.delete(f"/v1/agents/{AGENT}/calls", headers=api.h("admin"))
    assert r.status_code == 200, r.text
    assert sorted(r.json()["call_ids"]) == sorted(ids) and r.json()["removed"]["calls"] == 2
    for table, row in database_hits(database_url, *ids, AGENT, "ext-agent-"):
        assert (table, row["action"]) == ("audit_log", "erased_call")
        assert AGENT not in str(row)
    assert database_hits(database_url, AGENT) == []
    assert redis_hits(redis_conn, *ids) == []
    assert all(store_hits(api, i, i) == [] for i in ids)
    assert api.repo.get_call(kept).status == "done"
    assert api.client.delete(f"/v1/agents/{AGENT}/calls", headers=api.h("admin")).status_code == 404


def test_a_call_being_scored_is_not_erased(api, redis_conn):
    call_id = full_call(api, "ext-busy")
    redis_conn.set(call_lease_key(call_id), "host|1|token", ex=30)
    r = api.client.delete(f"/v1/calls/{call_id}", headers=api.h("admin"))
    assert r.status_code == 409
    assert api.repo.get_call(call_id) and input_store(api.settings).list_call(call_id)


def test_the_command_line_erases_with_confirmation(api, database_url, redis_conn, monkeypatch, capsys):
    for name, value in (("QA_DATABASE_URL", database_url), ("QA_REDIS_URL", api.settings.redis_url),
                        ("QA_STORAGE_DIR", str(api.settings.storage_dir))):
        monkeypatch.setenv(name, value)
    call_id = full_call(api, "ext-cli-1")
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["erase", "--external-id", "ext-cli-1"]) == 2  # no --yes, no terminal to ask
    assert api.repo.get_call(call_id)
    capsys.readouterr()
    assert main(["erase", "--call", call_id, "--yes"]) == 0
    receipt = json.loads(capsys.readouterr().out)
    assert receipt["call_ids"] == [call_id] and receipt["key_name"].startswith("cli:")
    assert {row["action"] for _, row in database_hits(database_url, call_id, "ext-cli-1")} == {"erased_call"}
    assert redis_hits(redis_conn, call_id, "ext-cli-1") == []
    assert store_hits(api, call_id, call_id, "ext-cli-1") == []
    assert main(["erase", "--call", call_id, "--yes"]) == 2  # no such call any more


# -- retention ---------------------------------------------------------------------------------

def test_the_retention_sweep_deletes_by_age(make_settings, database_url, redis_url, redis_conn):
    from datetime import UTC, datetime

    from qa_service.services.retention import sweep

    api = Api(make_settings(redis_url=redis_url, database_url=database_url, retain_scorecards_days=365,
                            retain_transcripts_days=30, retain_redacted_audio_days=7), redis_conn)
    seed_rules(api.repo)
    call_id = full_call(api, "ext-old-1")
    waiting = api.submit(call_id="ext-waiting").json()["id"]  # never ended: no retention applies
    store = input_store(api.settings)
    t0 = datetime.now(UTC)

    def run(days: int) -> dict[str, int]:
        return sweep(store=api.repo, objects=store, redis=redis_conn, settings=api.settings,
                     now=t0 + timedelta(days=days))

    assert run(1) == {"calls_erased": 0, "earlier_versions": 0, "transcripts_removed": 0, "redacted_audio": 0}
    assert run(10)["redacted_audio"] == 1
    assert store.redacted_audio(call_id) is None and store.list_call(call_id)  # the input stays
    assert api.repo.get_scorecard(call_id).data["transcript"]

    assert run(40)["transcripts_removed"] == 2  # both versions
    card = api.repo.get_scorecard(call_id)
    assert card.data["transcript"] == [] and "transcript_removed_at" in card.data
    assert all(v["text"] == "" for v in card.data["violations"])
    assert (card.score, card.passed, card.auto_fail) == (25.0, False, True)  # the verdict stays
    assert "we guarantee" not in json.dumps(api.repo.get_scorecard(call_id, 1).data)
    assert run(41)["transcripts_removed"] == 0  # nothing left to strip

    done = run(400)
    assert done["calls_erased"] == 1
    assert {row["action"] for _, row in database_hits(database_url, call_id, "ext-old-1")} == {"erased_call"}
    [receipt] = api.repo.audit.entries(action="erased_call")
    assert receipt.key_name == "retention" and receipt.key_id is None
    assert redis_hits(redis_conn, call_id) == [] and store_hits(api, call_id, call_id) == []
    assert api.repo.get_call(waiting).status == "queued"


def test_earlier_scorecard_versions_go_past_the_scorecard_retention(make_settings, redis_url, redis_conn):
    from datetime import UTC, datetime

    from qa_service.services.retention import sweep

    api = Api(make_settings(redis_url=redis_url, retain_scorecards_days=365), redis_conn)
    seed_rules(api.repo)
    call_id = full_call(api, "ext-versions")
    api.repo.requeue_call(call_id)  # not ended: the call itself is kept, its earlier version is not
    done = sweep(store=api.repo, objects=input_store(api.settings), redis=redis_conn, settings=api.settings,
                 now=datetime.now(UTC) + timedelta(days=400))
    assert done["earlier_versions"] == 1 and done["calls_erased"] == 0
    assert api.repo.get_scorecard(call_id).version == 2
    with pytest.raises(Exception, match="version"):
        api.repo.get_scorecard(call_id, 1)
