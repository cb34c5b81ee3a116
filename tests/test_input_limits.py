"""What the API refuses, and how early, through the real app over SQLite (and PostgreSQL) and Redis.

A body is read only once the caller has been checked, and only up to its route's limit; input that
would crash a parser (deep nesting, endless numbers, impossible dates) is a 4xx naming the problem;
call fields are strict; a call id that another client used first gives away nothing about that call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from qa_service.api.webhooks import MAX_EVENT_BYTES
from qa_service.app import BODY_LIMIT_BYTES
from qa_service.auth import create_key
from qa_service.storage.inputs import write_bytes
from qa_service.worker import jobs
from qa_service.worker.context import WorkerContext, activate
from tests.conftest import REPO_ROOT
from tests.test_api import CHAT, FORM, POLICIES, RUBRIC, Api, event, post_event, seed_rules

BOUNDARY = "b0undary"
BLOCK = b"\x01" * 65536


@pytest.fixture
def api(make_settings, redis_url, redis_conn) -> Api:
    a = Api(make_settings(redis_url=redis_url, max_upload_bytes=200_000), redis_conn)
    seed_rules(a.repo)
    # Answer a crash with a 500, as a server would, instead of raising it into the test.
    a.client = TestClient(a.app, raise_server_exceptions=False)
    return a


def drive(app: Any, path: str, headers: dict[str, Any], body: Iterable[bytes]) -> tuple[int, Any, int]:
    """POST straight into the ASGI app, handing over the body a chunk at a time as the app asks.

    Returns the status, the JSON answer and how many body bytes the app asked for.
    """
    chunks = iter(body)
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    raw = [(k.lower().encode(), v if isinstance(v, bytes) else v.encode()) for k, v in headers.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": raw, "client": ("127.0.0.1", 40000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    answer = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(answer), pulled


def multipart(blocks: int) -> Iterator[bytes]:
    """A call upload whose audio part is `blocks` x 64 KiB, made as it is sent."""
    yield (f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"agent_id\"\r\n\r\nagent-mira\r\n"
           f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n"
           "Content-Type: audio/wav\r\n\r\n").encode()
    for _ in range(blocks):
        yield BLOCK
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


UPLOAD = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}


# -- bodies are read after the caller is checked, and no further than the route's limit ----------

@pytest.mark.parametrize(("role", "status"), [(None, 401), ("nobody", 401), ("supervisor", 403)])
def test_an_upload_is_refused_before_its_body_is_read(api, role, status):
    headers = dict(UPLOAD)
    if role is not None:
        headers["authorization"] = f"Bearer {api.keys.get(role, 'qak_not-a-key')}"
    got, answer, pulled = drive(api.app, "/v1/calls", headers, multipart(64))  # 4 MiB, chunked
    assert got == status, answer
    assert pulled == 0, f"{pulled} bytes of the body were read before answering {status}"
    assert not any(api.settings.storage_dir.iterdir())


def test_a_rate_limited_upload_is_refused_before_its_body_is_read(make_settings, redis_url, redis_conn):
    api = Api(make_settings(redis_url=redis_url, rate_limit_per_minute=1), redis_conn)
    seed_rules(api.repo)
    assert api.submit().status_code == 202  # the key's one request this minute
    headers = {**UPLOAD, "authorization": f"Bearer {api.keys['qa']}"}
    status, answer, pulled = drive(api.app, "/v1/calls", headers, multipart(64))
    assert status == 429 and "rate limit" in answer["detail"]
    assert pulled == 0


@pytest.mark.parametrize("signature", [None, "", "sha256=00", "sha1=" + "0" * 40,
                                       ("sha256=" + "é" * 32).encode("utf-8")])
def test_an_unsigned_webhook_is_refused_before_its_body_is_read(api, signature):
    headers: dict[str, str | bytes] = {"content-type": "application/json"}
    if signature is not None:
        headers["x-signature"] = signature
    status, answer, pulled = drive(api.app, "/v1/webhooks/telephony", headers, (BLOCK for _ in range(64)))
    assert status == 401 and "X-Signature" in answer["detail"]
    assert pulled == 0


def test_a_webhook_longer_than_its_limit_is_refused_by_its_length(api):
    headers = {"content-type": "application/json", "content-length": str(MAX_EVENT_BYTES + 1),
               "x-signature": "sha256=" + "0" * 64}
    status, answer, pulled = drive(api.app, "/v1/webhooks/telephony", headers, (BLOCK for _ in range(2)))
    assert status == 413 and answer["detail"] == (
        f"the body is larger than the limit of {MAX_EVENT_BYTES} bytes for /v1/webhooks/telephony")
    assert pulled == 0


def test_a_streamed_webhook_is_cut_off_at_its_limit(api):
    headers = {"content-type": "application/json", "x-signature": "sha256=" + "0" * 64}
    status, answer, pulled = drive(api.app, "/v1/webhooks/telephony", headers, (BLOCK for _ in range(64)))
    assert status == 413 and str(MAX_EVENT_BYTES) in answer["detail"]
    assert pulled <= MAX_EVENT_BYTES + len(BLOCK)


@pytest.mark.parametrize(("path", "kind"), [
    ("/v1/rescores", "application/json"),
    ("/v1/calls/00000000-0000-4000-8000-000000000001/reviews", "application/json"),
    ("/sign-in", "application/x-www-form-urlencoded"),
])
def test_other_bodies_are_cut_off_at_a_small_limit(make_settings, redis_url, redis_conn, path, kind):
    # FastAPI reads a JSON or form body before it checks the key: held only to the upload limit (200 MiB
    # here), an anonymous client could make it read that much into memory.
    api = Api(make_settings(redis_url=redis_url), redis_conn)
    status, answer, pulled = drive(api.app, path, {"content-type": kind}, (BLOCK for _ in range(128)))
    assert status == 413
    assert answer["detail"] == f"the request body is larger than the limit of {BODY_LIMIT_BYTES} bytes"
    assert pulled <= BODY_LIMIT_BYTES + len(BLOCK)
    declared = {"content-type": kind, "content-length": str(8 * 2**20)}
    status, _, pulled = drive(api.app, path, declared, [BLOCK])
    assert status == 413 and pulled == 0


def test_rules_bodies_have_a_limit_of_their_own(make_settings, redis_url, redis_conn):
    api = Api(make_settings(redis_url=redis_url), redis_conn)  # uploads may be 200 MiB
    r = api.client.post("/v1/rubrics", content=b"#" * (1024 * 1024 + 1), headers=api.h())
    assert r.status_code == 413 and "1048576 bytes for /v1/rubrics" in r.json()["detail"]


# -- transcripts: a size limit of their own ------------------------------------------------------

@pytest.fixture
def small(make_settings, redis_url, redis_conn) -> Api:
    a = Api(make_settings(redis_url=redis_url, max_transcript_bytes=4096), redis_conn)
    seed_rules(a.repo)
    return a


def test_a_transcript_over_its_limit_is_413(small):
    text = b"Agent: hello there\n" * 300  # 5,700 bytes
    for sent in ({"files": {"transcript": ("t.txt", text, "text/plain")}},  # a file part
                 {"data": {**FORM, "transcript": text.decode()}},  # a text field
                 {"data": {**FORM, "transcript": text.decode() * 400}}):  # far over: cut off while parsing
        r = small.client.post("/v1/calls", **({"data": FORM} | sent), headers=small.h())
        assert r.status_code == 413, r.text
        assert r.json()["detail"].startswith("the transcript is larger than the limit of 4096 bytes "
                                             "(QA_MAX_TRANSCRIPT_BYTES)")
    assert not any(small.settings.storage_dir.iterdir()) and small.queue.count == 0
    # Audio keeps the upload limit.
    assert small.submit(files={"audio": ("a.wav", b"RIFF" + bytes(8000), "audio/wav")}).status_code == 202


def test_the_worker_refuses_a_stored_transcript_over_the_limit(small):
    from qa_service.storage import NewCall

    call_id = str(uuid.uuid4())
    path = write_bytes(small.settings.storage_dir, call_id, b"Agent: hello there\n" * 300, ".txt")
    small.repo.add_call(NewCall(
        id=call_id, agent_id="agent-mira", call_date=date(2026, 10, 14), rubric_id="harbourline-intake",
        rubric_version="2026.10", policy_pack_id="valdoria-residence", policy_pack_version="2026-10-01",
        input_kind="transcript", input_path=str(path)))
    activate(WorkerContext(settings=small.settings, store=small.repo))
    try:
        jobs.process_call(call_id)
    finally:
        activate(None)
    failed = small.repo.get_call(call_id)
    assert failed.status == "failed"
    assert "5700 bytes, more than the limit of 4096 (QA_MAX_TRANSCRIPT_BYTES)" in failed.failure_reason


# -- input that would crash a parser ---------------------------------------------------------------

DEEP_JSON = "[" * 5000 + "]" * 5000
DEEP_YAML = "id: r\ncriteria:\n" + "".join("  " * i + "- \n" for i in range(1, 300))
LONG_INT = "9" * 5000
BAD_DAY = "2026-13-01"


def _rubric(line: str) -> str:
    return RUBRIC.replace('version: "2026.10"', 'version: "2026.99"').replace("pass_mark: 75", line)


def _transcript(api: Api, body: str):
    return api.submit(files={"transcript": ("t.json", body.encode(), "application/json")})


def _webhook(api: Api, body: str, signature: str | bytes | None = "good"):
    if isinstance(signature, bytes):
        return api.client.post("/v1/webhooks/telephony", content=body.encode(),
                               headers={"X-Signature": signature})  # type: ignore[dict-item]
    return post_event(api, body.encode(), signature)


CASES = [
    ("rubric-deep-json", lambda a: a.client.post("/v1/rubrics", content=DEEP_JSON, headers=a.h()), 422,
     "rubric.yaml:1: nested more than 50 levels deep"),
    ("rubric-deep-yaml", lambda a: a.client.post("/v1/rubrics", content=DEEP_YAML, headers=a.h()), 422,
     "rubric.yaml:52: nested more than 50 levels deep"),
    ("rubric-long-int", lambda a: a.client.post("/v1/rubrics", content=_rubric("pass_mark: " + LONG_INT),
                                                headers=a.h()), 422, "a number of more than 4300 digits"),
    ("rubric-bad-day", lambda a: a.client.post("/v1/rubrics", content=_rubric("since: " + BAD_DAY),
                                               headers=a.h()), 422, "month must be in 1..12"),
    ("pack-deep", lambda a: a.client.post("/v1/policy-packs", content=DEEP_JSON, headers=a.h()), 422,
     "policy-pack.yaml:1: nested more than 50 levels deep"),
    ("pack-bad-day", lambda a: a.client.post("/v1/policy-packs", headers=a.h(),
                                             content=POLICIES.replace("2026-08-01", BAD_DAY)),
     422, "month must be in 1..12"),
    ("transcript-deep", lambda a: _transcript(a, DEEP_JSON), 422, "nested more than 32 levels deep"),
    ("transcript-long-int", lambda a: _transcript(a, '[{"speaker": "agent", "text": "hi", "start": '
                                                  + LONG_INT + "}]"), 422, "more than 4300 digits"),
    ("webhook-deep", lambda a: _webhook(a, '{"x": ' + DEEP_JSON + "}"), 422, "recursion limit"),
    ("webhook-long-int", lambda a: _webhook(a, event().decode()[:-1] + ', "x": ' + LONG_INT + "}"), 422,
     "invalid telephony event"),
    ("webhook-bad-day", lambda a: _webhook(a, event(start_time=BAD_DAY + "T09:00:00Z").decode()), 422,
     "start_time"),
    ("webhook-non-ascii-signature", lambda a: _webhook(a, event().decode(), ("sha256=" + "é" * 32).encode()),
     401, "X-Signature"),
]


@pytest.mark.parametrize(("request_", "status", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_input_a_parser_cannot_take_is_a_4xx(api, caplog, request_, status, message):
    caplog.set_level(logging.INFO)
    r = request_(api)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert len(caplog.records) < 5, f"{len(caplog.records)} log lines for one refused request"
    assert api.queue.count == 0 and not any(api.settings.storage_dir.iterdir())


def test_rules_text_is_never_a_path_on_the_server(api):
    stored = len(api.repo.list_rules("rubric"))
    for body in (str(REPO_ROOT / "samples" / "rubric.yaml"), "/no/such/rubric.yaml"):
        r = api.client.post("/v1/rubrics", content=body, headers=api.h())
        assert r.status_code == 422
        assert r.json()["detail"] == ("rubric.yaml: a rubric file must be a YAML mapping with an `id`, "
                                      "`version`, ... at the top level")
    assert len(api.repo.list_rules("rubric")) == stored


# -- strict call fields ----------------------------------------------------------------------------

@pytest.mark.parametrize("day", ["0", "1", "20261014", "2026-13-01", "1970-01-01", "1999-12-31",
                                 str(date.today() + timedelta(days=2)), "2026-10-14T00:00:00"])
def test_call_date_is_a_day_in_a_sane_range(api, day):
    r = api.submit(call_date=day)
    assert r.status_code == 422, r.text
    assert r.json()["errors"][0]["field"] == "call_date"
    assert "Value error" not in r.json()["detail"]
    assert not any(api.settings.storage_dir.iterdir())


def test_call_dates_up_to_tomorrow_are_taken(api):
    for day in (date(2000, 1, 1), date.today(), date.today() + timedelta(days=1)):
        r = api.submit(call_date=day.isoformat())
        assert r.status_code == 202, r.text
        assert api.repo.get_call(r.json()["id"]).call_date == day


@pytest.mark.parametrize("start_time", [0, 1760000000, "0", "1970-01-01T00:00:00Z", "2026-10-20",
                                        "2999-01-01T00:00:00Z", "1999-12-31T23:00:00+00:00"])
def test_webhook_start_time_is_an_iso_time_in_a_sane_range(api, start_time):
    r = post_event(api, event(start_time=start_time))
    assert r.status_code == 422 and "start_time" in r.json()["detail"], r.text
    assert api.repo.find_call("pbx-1001") is None


@pytest.mark.parametrize("call_id", ["3f1c2b9e-8d4a-4e6b-9a7c-1d2e3f4a5b6c",
                                     "3f1c2b9e8d4a4e6b9a7c1d2e3f4a5b6c",
                                     "urn:uuid:3f1c2b9e-8d4a-4e6b-9a7c-1d2e3f4a5b6c",
                                     "00000000-0000-0000-0000-000000000000"])
def test_external_ids_that_read_as_uuids_are_refused(api, call_id):
    r = api.submit(call_id=call_id)
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "call_id"
    assert "must not be a UUID" in r.json()["detail"]
    r = post_event(api, event(external_call_id=call_id))
    assert r.status_code == 422 and "external_call_id: must not be a UUID" in r.json()["detail"]
    assert api.repo.find_call(call_id) is None


def test_a_call_id_another_client_used_first_reveals_nothing(make_settings, redis_url, redis_conn,
                                                             database_url):
    api = Api(make_settings(redis_url=redis_url, database_url=database_url), redis_conn)
    seed_rules(api.repo)
    other = {"Authorization": f"Bearer {create_key(api.repo, 'telephony', 'second system')}"}
    [first_key] = [k for k in api.repo.list_keys() if k.name == "telephony key"]

    first = api.submit("telephony", call_id="ext-1")
    assert first.status_code == 202
    call_id = first.json()["id"]
    assert api.repo.get_call(call_id).submitted_by_key_id == first_key.id
    again = api.submit("telephony", call_id="ext-1")  # the same client resending
    assert again.status_code == 200 and again.json()["id"] == call_id

    taken = api.client.post("/v1/calls", data={**FORM, "call_id": "ext-1"}, headers=other,
                            files={"transcript": ("c.json", CHAT, "application/json")})
    assert taken.status_code == 409 and "used by another client" in taken.json()["detail"]
    assert call_id not in taken.text and "queued" not in taken.text and "ext-1" not in taken.text
    assert api.client.get(f"/v1/calls/{call_id}", headers=other).status_code == 404
    # Roles that read every call learn which call it is.
    for role in ("qa", "admin"):
        r = api.submit(role, call_id="ext-1")
        assert r.status_code == 200 and r.json()["id"] == call_id
    # The webhook is another client of its own.
    r = post_event(api, event(external_call_id="ext-1"))
    assert r.status_code == 409 and call_id not in r.text
    hooked = post_event(api, event(external_call_id="pbx-7"))
    assert hooked.status_code == 202
    assert post_event(api, event(external_call_id="pbx-7")).json()["id"] == hooked.json()["id"]
    r = api.submit("telephony", call_id="pbx-7")
    assert r.status_code == 409 and hooked.json()["id"] not in r.text
    assert len(api.queue.get_jobs()) == 2
