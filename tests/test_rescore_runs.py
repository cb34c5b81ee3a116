"""Rescore runs through the API: roles, validation, the job on a real queue, recovery, and one run end to end.

The app runs over SQLite and the private Redis; jobs run in an RQ SimpleWorker in this process with the
spaCy pipeline and redactor loaded once (no speech model: the calls are transcripts).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from rq import SimpleWorker
from rq.job import Job, JobStatus

from qa_service import queueing
from qa_service.storage import paging
from qa_service.storage import tables as t
from qa_service.worker import jobs, lease, recovery
from qa_service.worker.context import WorkerContext, activate, current
from tests.conftest import free_port
from tests.paging_support import walk_api
from tests.test_api import POLICIES, RUBRIC, Api, seed_rules, sha
from tests.test_web import sign_in

PATH = "/v1/rescores"
BODY = {"rubric_id": "harbourline-intake", "rubric_version": "2026.10"}

CALL = """Agent: Thanks for calling Harbourline, my name is Sam, and this call is recorded.
Customer: Hi, how much is the permit?
Agent: First I need to confirm your identity. Do I have your permission to use your details?
Customer: Yes.
Agent: The permit fee is four hundred and twenty euros. It usually takes six weeks.
Agent: Is there anything else I can help you with?
"""

# The next rubric version: a closing phrase the call does not say, and a higher pass mark.
RUBRIC_2 = RUBRIC.replace('version: "2026.10"', 'version: "2026.11"').replace(
    "phrases: [anything else I can help, anything else I can do for you]", "phrases: [have a lovely day]"
).replace("pass_mark: 75", "pass_mark: 95")
# The next policy pack: the permit fee rose from 420 to 450 on 2026-10-15.
POLICIES_2 = POLICIES.replace('version: "2026-10-01"', 'version: "2026-10-15"').replace(
    "current: {value: 420, since: 2026-08-01}", "current: {value: 450, since: 2026-10-15}").replace(
    "      - {value: 380, until: 2026-07-31}",
    "      - {value: 420, until: 2026-10-14}\n      - {value: 380, until: 2026-07-31}")


@pytest.fixture
def api(make_settings, redis_url, redis_conn):
    a = Api(make_settings(redis_url=redis_url), redis_conn)
    seed_rules(a.repo)
    activate(WorkerContext(settings=a.settings, store=a.repo))
    yield a
    activate(None)


@pytest.fixture(scope="module")
def engines():
    """The spaCy pipeline and redactor a worker holds, loaded once for this module (no speech model)."""
    from qa_service.pipeline import load_engines
    from qa_service.settings import Settings

    return load_engines(Settings(), speech=False)


def start(api: Api, role: str = "qa", **body):
    return api.client.post(PATH, json={**BODY, **body}, headers=api.h(role))


def work(api: Api, redis_conn) -> None:
    """Run every queued job in a real RQ worker (this process, so it uses the configured engines)."""
    SimpleWorker([api.queue], connection=redis_conn).work(burst=True)


def audit_rows(api: Api) -> list[dict]:
    with api.repo.engine.connect() as conn:
        return [dict(r) for r in conn.execute(sa.select(t.audit_log).order_by(t.audit_log.c.id)).mappings()]


def age(api: Api, run_id: str, seconds: float = 3600, column: str = "created_at") -> None:
    """Move a run's creation (or start) into the past."""
    with api.repo.engine.begin() as conn:
        conn.execute(t.rescore_runs.update().where(t.rescore_runs.c.id == run_id)
                     .values({column: datetime.now(UTC) - timedelta(seconds=seconds)}))


# -- the API -------------------------------------------------------------------------------------

def test_a_run_is_stored_and_its_id_enqueued_by_path(api):
    r = start(api, policy_pack_id="valdoria-residence", policy_pack_version="2026-10-01",
              since="2026-10-01", until="2026-10-31", dry_run=True)
    assert r.status_code == 202, r.text
    run_id = r.json()["id"]
    assert r.json() == {"id": run_id, "status": "queued"}
    assert r.headers["location"] == f"{PATH}/{run_id}"
    [job] = api.queue.get_jobs()
    assert api.queue.name == api.settings.queue_name  # the queue calls go on
    assert (job.id, job.args) == (f"rescore-{run_id}", (run_id,))
    assert job.func_name == "qa_service.worker.jobs.rescore_run"
    assert job.timeout == api.settings.job_timeout_s

    got = api.client.get(f"{PATH}/{run_id}", headers=api.h("supervisor"))
    assert got.status_code == 200, got.text
    body = got.json()
    qa = next(k for k in api.repo.list_keys() if k.role == "qa")
    assert body["status"] == "queued" and body["summary"] is None and body["totals"] is None
    assert body["rubric"] == {"id": "harbourline-intake", "version": "2026.10"}
    assert body["policies"] == {"id": "valdoria-residence", "version": "2026-10-01"}
    assert (body["since"], body["until"], body["dry_run"]) == ("2026-10-01", "2026-10-31", True)
    assert body["requested_by"] == {"key_id": qa.id, "name": "qa key"}
    assert body["started_at"] is None and body["failure_reason"] is None and body["url"] == f"{PATH}/{run_id}"


def test_without_a_pack_each_call_keeps_its_own(api):
    run_id = start(api).json()["id"]
    stored = api.repo.get_rescore_run(run_id)
    assert (stored.policy_pack_id, stored.policy_pack_version, stored.dry_run) == (None, None, False)
    assert api.client.get(f"{PATH}/{run_id}", headers=api.h()).json()["policies"] is None


@pytest.mark.parametrize(("role", "starts", "reads"), [
    ("admin", 202, 200), ("qa", 202, 200), ("supervisor", 403, 200), ("telephony", 403, 403),
    (None, 401, 401),
])
def test_who_may_start_and_read_runs(api, role, starts, reads):
    existing = start(api, dry_run=True).json()["id"]
    headers = api.h(role) if role else {}
    r = api.client.post(PATH, json=BODY, headers=headers)
    assert r.status_code == starts, r.text
    if starts == 403:
        assert role in r.json()["detail"]
    for path in (PATH, f"{PATH}/{existing}"):
        assert api.client.get(path, headers=headers).status_code == reads
    assert len(api.repo.list_rescore_runs()) == (2 if starts == 202 else 1)


@pytest.mark.parametrize(("body", "message"), [
    ({"rubric_id": "nope"},
     "no rubric 'nope' version '2026.10' is stored; upload it first (POST /v1/rubrics)"),
    ({"rubric_version": "1999"}, "version '1999'"),
    ({"policy_pack_id": "nope", "policy_pack_version": "1"}, "no policy pack 'nope'"),
    ({"policy_pack_id": "valdoria-residence", "policy_pack_version": "1999"}, "POST /v1/policy-packs"),
    ({"policy_pack_id": "valdoria-residence"}, "policy_pack_id and policy_pack_version together"),
    ({"policy_pack_version": "2026-10-01"}, "policy_pack_id and policy_pack_version together"),
    ({"since": "2026-11-01", "until": "2026-10-01"}, "'since' is after 'until'"),
    ({"since": "01/10/2026"}, "since"),
    ({"rubric_version": None}, "rubric_version"),
    ({"rubric_id": ""}, "rubric_id"),
    ({"agent_id": "a"}, "agent_id"),  # unknown fields are refused, not ignored
])
def test_bad_requests_are_422_and_store_nothing(api, body, message):
    payload = {k: v for k, v in {**BODY, **body}.items() if v is not None}
    r = api.client.post(PATH, json=payload, headers=api.h())
    assert r.status_code == 422, r.text
    assert message in r.json()["detail"]
    assert api.repo.list_rescore_runs() == [] and api.queue.count == 0


@pytest.mark.parametrize("run_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_unknown_run_is_404(api, run_id):
    r = api.client.get(f"{PATH}/{run_id}", headers=api.h())
    assert r.status_code == 404 and "no rescore run" in r.json()["detail"]


def test_runs_are_listed_newest_first_with_totals(api):
    ids = [start(api, dry_run=True).json()["id"] for _ in range(3)]
    api.repo.start_rescore_run(ids[0])
    summary = {"calls": 4, "score_changed": 2, "mean_score_change": -5.0, "flipped_to_fail": 1,
               "flipped_to_pass": 0, "agents_with_flips": {}, "new_violations": {}, "vanished_violations": {},
               "flipped_calls": [], "refresher": {}}
    api.repo.finish_rescore_run(ids[0], summary)
    body = api.client.get(PATH, headers=api.h("supervisor")).json()
    assert (body["page_size"], body["next_cursor"]) == (50, None)
    listed = body["runs"]
    assert [x["id"] for x in listed] == ids[::-1]
    assert "summary" not in listed[0]
    assert listed[2]["totals"] == {"calls": 4, "score_changed": 2, "flipped_to_fail": 1, "flipped_to_pass": 0}
    first = api.client.get(f"{PATH}?page_size=2", headers=api.h()).json()
    assert [x["id"] for x in first["runs"]] == ids[:0:-1] and first["next_cursor"]
    done = api.client.get(f"{PATH}?status=done", headers=api.h()).json()["runs"]
    assert [(x["id"], x["status"]) for x in done] == [(ids[0], "done")]
    assert api.client.get(f"{PATH}?status=lost", headers=api.h()).status_code == 422
    assert api.client.get(f"{PATH}?page_size=0", headers=api.h()).status_code == 422
    r = api.client.get(f"{PATH}?limit=2", headers=api.h())
    assert r.status_code == 422 and "page_size" in r.json()["detail"]


def walk_runs(api: Api) -> None:
    """Five dry runs, three of them requested at the same moment: pages of two hold each run once, newest
    first and the id breaking ties; a cursor of another listing, or naming no run id, is refused."""
    ids = [start(api, dry_run=True).json()["id"] for _ in range(5)]
    same = datetime.now(UTC) - timedelta(hours=1)
    with api.repo.engine.begin() as conn:
        conn.execute(t.rescore_runs.update().where(t.rescore_runs.c.id.in_(ids[1:4])).values(created_at=same))
    stored = api.repo.list_rescore_runs(limit=100)
    assert len({r.created_at for r in stored if r.id in ids[1:4]}) == 1
    expected = [r.id for r in sorted(stored, key=lambda r: (r.created_at, r.id), reverse=True)]
    assert set(ids) <= set(expected)
    walked = walk_api(api.client, PATH, "runs", headers=api.h("supervisor"))
    assert [x["id"] for x in walked] == expected
    for cursor in (paging.encode("calibrations", (same, ids[0])), paging.encode("rescores", (same, "x"))):
        r = api.client.get(PATH, params={"cursor": cursor}, headers=api.h())
        assert r.status_code == 422 and "not one this listing gave" in r.json()["detail"]


def test_run_pages_walk_every_run_once(api):
    walk_runs(api)


def test_the_runs_page_links_to_the_next_page(api, monkeypatch):
    ids = [start(api, dry_run=True).json()["id"] for _ in range(3)]
    monkeypatch.setattr("qa_service.web.pages.PAGE_SIZE", 2)
    web = TestClient(api.app, base_url="http://testserver")
    assert sign_in(web, api.keys["supervisor"]).status_code == 303
    first = web.get("/rescores").text
    assert all(f'href="/rescores/{i}"' in first for i in ids[1:])
    assert f'href="/rescores/{ids[0]}"' not in first
    link = re.search(r'<a href="([^"]+)" rel="next">Next page', first).group(1)
    second = web.get(f"/rescores{link}").text
    assert f'href="/rescores/{ids[0]}"' in second and 'rel="next"' not in second
    assert all(f'href="/rescores/{i}"' not in second for i in ids[1:])


def test_one_run_at_a_time_stores_a_rubrics_scorecards(api):
    first = start(api).json()["id"]
    r = start(api, rubric_version="2026.10")
    assert r.status_code == 409 and first in r.json()["detail"] and "queued" in r.json()["detail"]
    assert start(api, dry_run=True).status_code == 202, "a dry run stores nothing and may run beside it"
    assert start(api, "admin").status_code == 409
    api.repo.start_rescore_run(first)
    assert "running" in start(api).json()["detail"]
    api.repo.fail_rescore_run(first, "worker killed")
    assert start(api).status_code == 202
    assert len(api.repo.list_rescore_runs()) == 3


def test_starting_a_run_is_audited(api):
    run_id = start(api).json()["id"]
    assert start(api, "supervisor").status_code == 403
    rows = [r for r in audit_rows(api) if r["action"] in ("start_rescore", "forbidden")]
    assert [(r["action"], r["role"], r["target_kind"], r["target_id"], r["details"].split(" client=")[0])
            for r in rows] == [("start_rescore", "qa", "rescore", run_id, "status=202"),
                               ("forbidden", "supervisor", "rescore", None, "status=403")]
    assert rows[1]["details"].endswith(" tried=start_rescore")


def test_queue_down_keeps_the_run_and_a_worker_queues_it(make_settings, redis_url, redis_conn):
    down = Api(make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0"), redis_conn)
    seed_rules(down.repo)
    r = start(down)
    assert r.status_code == 503, r.text
    [run] = down.repo.list_rescore_runs()
    assert run.status == "queued" and run.id in r.json()["detail"]

    up = Api(make_settings(redis_url=redis_url), redis_conn)  # same database, Redis back
    worker = WorkerContext(settings=up.settings, store=up.repo)
    assert recovery.reconcile_rescores(worker, up.queue) == []  # just stored: the API may still enqueue it
    age(up, run.id)
    assert recovery.reconcile_rescores(worker, up.queue) == [run.id]
    assert up.queue.job_ids == [queueing.rescore_job_id(run.id)]
    assert recovery.reconcile_rescores(worker, up.queue) == [], "a second pass finds nothing more to do"


# -- the job -------------------------------------------------------------------------------------

def test_reconcile_fails_running_runs_whose_worker_is_gone(api, redis_conn):
    runs = {name: start(api, dry_run=True).json()["id"]
            for name in ("lost", "failed", "killed", "exited", "alive", "just_started")}
    for name, run_id in runs.items():
        api.repo.start_rescore_run(run_id)
        if name != "just_started":
            age(api, run_id, lease.LEASE_TTL_S + 5, column="started_at")
    job = {name: Job.fetch(queueing.rescore_job_id(run_id), connection=redis_conn)
           for name, run_id in runs.items()}
    job["lost"].delete()                          # went with a Redis restart
    job["failed"].set_status(JobStatus.FAILED)    # RQ marked it failed
    job["killed"].set_status(JobStatus.STARTED)   # RQ still thinks it runs; its lease lapsed
    exited = subprocess.Popen(["true"])
    exited.wait()
    redis_conn.set(lease.rescore_lease_key(runs["exited"]), f"{socket.gethostname()}|{exited.pid}|x", ex=60)
    # A worker elsewhere holds this one; the last was marked running a moment ago.
    redis_conn.set(lease.rescore_lease_key(runs["alive"]), f"elsewhere|{os.getpid()}|x", ex=60)

    assert recovery.reconcile_rescores(current(), api.queue) == []
    for name in ("lost", "failed", "killed", "exited"):
        run = api.repo.get_rescore_run(runs[name])
        assert run.status == "failed" and "stopped before it finished" in run.failure_reason, name
        assert "keep their new version" not in run.failure_reason, "a dry run stored nothing"
    assert not redis_conn.exists(lease.rescore_lease_key(runs["exited"]))
    for name in ("alive", "just_started"):
        assert api.repo.get_rescore_run(runs[name]).status == "running", name


def test_a_run_holds_a_lease_while_it_works(api, redis_conn, monkeypatch):
    run_id = start(api).json()["id"]
    seen = []

    def rescore_stored(*args, **kwargs):
        seen.append(redis_conn.get(lease.rescore_lease_key(run_id)))
        raise RuntimeError("stop here")

    monkeypatch.setattr("qa_service.rescore.rescore_stored", rescore_stored)
    work(api, redis_conn)
    assert seen and seen[0] is not None and socket.gethostname() in seen[0].decode()
    assert not redis_conn.exists(lease.rescore_lease_key(run_id)), "released when the job ends"
    assert api.repo.get_rescore_run(run_id).status == "failed"


def test_a_run_under_another_workers_lease_is_left_to_it(api, redis_conn):
    run_id = start(api).json()["id"]
    held = redis_conn.lock(lease.rescore_lease_key(run_id), timeout=60)
    assert held.acquire(blocking=False)
    work(api, redis_conn)
    assert api.repo.get_rescore_run(run_id).status == "queued"
    held.release()


def test_a_run_that_cannot_load_its_rubric_fails_readably(api, redis_conn):
    # Stored without the API's check (an older release, a hand edit): the worker finds out.
    bad = RUBRIC.replace("pass_mark: 75", "pass_mark: lots").replace('"2026.10"', '"broken"')
    api.repo.put_rules("rubric", "harbourline-intake", "broken", sha(bad), bad)
    run_id = start(api, rubric_version="broken").json()["id"]
    work(api, redis_conn)
    body = api.client.get(f"{PATH}/{run_id}", headers=api.h()).json()
    assert body["status"] == "failed" and body["finished_at"] is not None and body["summary"] is None
    assert "pass_mark" in body["failure_reason"] and "start a new run" in body["failure_reason"]
    job = Job.fetch(queueing.rescore_job_id(run_id), connection=redis_conn)
    assert job.get_status() == JobStatus.FAILED and "pass_mark" in job.latest_result().exc_string
    [row] = [r for r in audit_rows(api) if r["action"] == "rescore"]
    assert row["details"] == f"version=broken failed run={run_id}" and row["key_name"] == "qa key"


def test_a_leftover_job_does_not_run_a_run_again(api):
    run_id = start(api).json()["id"]
    api.repo.start_rescore_run(run_id)
    api.repo.finish_rescore_run(run_id, {"calls": 0})
    assert jobs.rescore_run(run_id) == run_id
    assert api.repo.get_rescore_run(run_id).summary == {"calls": 0}


# -- end to end ----------------------------------------------------------------------------------

def test_rescore_through_the_api_flips_a_verdict(api, redis_conn, engines):
    activate(WorkerContext(settings=api.settings, store=api.repo, engines_loaded=engines))
    r = api.client.post("/v1/calls", headers=api.h(), data={
        "agent_id": "agent-sam", "call_date": "2026-10-20", "rubric_id": "harbourline-intake",
        "policy_pack_id": "valdoria-residence", "transcript": CALL})
    assert r.status_code == 202, r.text
    call_id = r.json()["id"]
    work(api, redis_conn)
    first = api.repo.get_scorecard(call_id)
    assert api.repo.get_call(call_id).status == "done" and (first.version, first.passed) == (1, True)

    # Stored without the rescan on publish (tests/test_rescan.py), so this run shows the pack's change.
    for path, text in (("/v1/rubrics", RUBRIC_2), ("/v1/policy-packs?rescan=false", POLICIES_2)):
        assert api.client.post(path, content=text, headers=api.h()).status_code == 201

    # A dry run with each call's own pack: the impact, and nothing stored.
    dry = start(api, rubric_version="2026.11", since="2026-10-01", dry_run=True).json()["id"]
    work(api, redis_conn)
    body = api.client.get(f"{PATH}/{dry}", headers=api.h("supervisor")).json()
    assert body["status"] == "done", body
    assert (body["summary"]["calls"], body["summary"]["flipped_to_fail"]) == (1, 1)
    assert body["summary"]["new_violations"] == {}
    assert api.repo.get_scorecard(call_id).version == 1

    # The real run, with the new policy pack as well.
    run_id = start(api, rubric_version="2026.11", policy_pack_id="valdoria-residence",
                   policy_pack_version="2026-10-15", since="2026-10-01", until="2026-10-31").json()["id"]
    work(api, redis_conn)
    body = api.client.get(f"{PATH}/{run_id}", headers=api.h("supervisor")).json()
    assert body["status"] == "done" and body["failure_reason"] is None, body
    assert body["started_at"] is not None and body["finished_at"] >= body["started_at"]
    summary = body["summary"]
    assert (summary["calls"], summary["flipped_to_fail"], summary["flipped_to_pass"]) == (1, 1, 0)
    assert summary["agents_with_flips"] == {"agent-sam": {"to_fail": 1}}
    [flip] = summary["flipped_calls"]
    assert (flip["call_id"], flip["old_passed"], flip["new_passed"]) == (call_id, True, False)
    assert flip["new_score"] < flip["old_score"]
    assert summary["new_violations"] == {"outdated_policy:permit-fee": 1}
    assert summary["refresher"]["agent-sam"]["permit-fee"][0]["call_id"] == call_id
    assert body["totals"] == {"calls": 1, "score_changed": 1, "flipped_to_fail": 1, "flipped_to_pass": 0}

    card = api.client.get(f"/v1/calls/{call_id}/scorecard", headers=api.h("supervisor"))
    assert card.headers["x-scorecard-version"] == "2"
    assert card.json()["passed"] is False and card.json()["rubric"]["version"] == "2026.11"
    assert card.json()["policies"]["version"] == "2026-10-15"
    assert api.repo.get_scorecard(call_id, 1).passed is True  # the earlier version is kept
    assert card.json()["transcript"] == api.repo.get_scorecard(call_id, 1).data["transcript"]

    # The change is in the audit log under the key that asked, like a rescore from the command line.
    [row] = [r for r in audit_rows(api) if r["action"] == "rescore"]
    assert (row["key_name"], row["role"], row["target_kind"], row["target_id"]) == (
        "qa key", "qa", "rubric", "harbourline-intake")
    assert row["details"] == f"version=2026.11 calls=1 run={run_id}"


@pytest.mark.postgres
def test_rescore_routes_on_postgresql(make_settings, redis_url, redis_conn, pg_url):
    api = Api(make_settings(redis_url=redis_url, database_url=pg_url), redis_conn)
    seed_rules(api.repo)
    run_id = start(api, since="2026-10-01").json()["id"]
    assert api.client.get(f"{PATH}/{run_id}", headers=api.h()).json()["since"] == "2026-10-01"
    assert [x["id"] for x in api.client.get(PATH, headers=api.h()).json()["runs"]] == [run_id]
    assert api.client.get(f"{PATH}/not-a-uuid", headers=api.h()).status_code == 404
    api.repo.fail_rescore_run(run_id, "made way for the dry runs")
    walk_runs(api)
