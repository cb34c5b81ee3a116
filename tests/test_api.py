"""The HTTP API with a real SQLite database and a real (private) Redis; no models are loaded."""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import sys
import textwrap
import wave
from datetime import date
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from rq import Queue

from qa_service.api.webhooks import sign
from qa_service.app import create_app
from qa_service.auth import create_key
from tests.conftest import REPO_ROOT, free_port

RUBRIC = (REPO_ROOT / "samples" / "rubric.yaml").read_text()
POLICIES = (REPO_ROOT / "samples" / "policies.yaml").read_text()
CHAT = (REPO_ROOT / "samples" / "transcript-chat.json").read_bytes()
FORM = {"agent_id": "agent-mira", "call_date": "2026-10-14", "rubric_id": "harbourline-intake",
        "policy_pack_id": "valdoria-residence"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def seed_rules(repo) -> None:
    repo.put_rules("rubric", "harbourline-intake", "2026.10", sha(RUBRIC), RUBRIC)
    repo.put_rules("policy_pack", "valdoria-residence", "2026-10-01", sha(POLICIES), POLICIES)


def wav_bytes(seconds: float = 0.5) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x01" * int(8000 * seconds))
    return buf.getvalue()


class Api:
    """A test client plus one key per role and the pieces behind the app."""

    def __init__(self, settings, redis_conn):
        self.settings = settings
        self.app = create_app(settings)
        self.repo = self.app.state.repo
        self.queue = Queue(settings.queue_name, connection=redis_conn)
        self.client = TestClient(self.app)
        self.keys = {role: create_key(self.repo, role, f"{role} key")
                     for role in ("admin", "qa", "telephony", "supervisor")}

    def h(self, role: str = "qa") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[role]}"}

    def submit(self, role: str = "qa", *, files=None, **fields):
        data = {**FORM, **fields}
        if files is None:
            files = {"transcript": ("chat.json", CHAT, "application/json")}
        return self.client.post("/v1/calls", data=data, files=files, headers=self.h(role))


@pytest.fixture
def api(make_settings, redis_url, redis_conn) -> Api:
    a = Api(make_settings(redis_url=redis_url, max_upload_bytes=200_000), redis_conn)
    seed_rules(a.repo)
    return a


def test_the_api_docs_page_needs_nothing_from_the_internet(api):
    page = api.client.get("/docs")
    assert page.status_code == 200 and "/openapi.json" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert assets and all(a.startswith("/docs-assets/") for a in assets), assets  # no CDN
    for asset in assets:
        r = api.client.get(asset)
        assert r.status_code == 200 and len(r.content) > 100, asset
    assert "SwaggerUIBundle" in api.client.get("/docs-assets/swagger-ui-bundle.js").text


def test_openapi_and_health_need_no_key(api):
    spec = api.client.get("/openapi.json").json()
    for path in ("/v1/calls", "/v1/calls/{call_id}", "/v1/calls/{call_id}/scorecard", "/v1/rubrics",
                 "/v1/agents/{agent_id}/scorecards", "/v1/policy-packs", "/v1/webhooks/telephony"):
        assert path in spec["paths"]
    health = api.client.get("/healthz")
    assert health.status_code == 200
    assert health.json()["database"] == "ok" and health.json()["queue"] == "ok"


@pytest.mark.parametrize(("headers", "status"), [
    ({}, 401),
    ({"Authorization": "Bearer qak_wrong"}, 401),
    ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
])
def test_missing_or_bad_key_is_401(api, headers, status):
    r = api.client.get("/v1/rubrics", headers=headers)
    assert r.status_code == status
    assert r.headers.get("www-authenticate") == "Bearer"
    assert "key" in r.json()["detail"].lower()


def test_revoked_key_is_401(api):
    [qa] = [k for k in api.repo.list_keys() if k.role == "qa"]
    api.repo.revoke_key(qa.id)
    assert api.client.get("/v1/rubrics", headers=api.h("qa")).status_code == 401


def test_submit_transcript_stores_input_and_enqueues_by_path(api):
    r = api.submit(call_id="ext-1", channels="stereo")
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "queued" and body["external_id"] == "ext-1"
    assert r.headers["location"] == f"/v1/calls/{body['id']}"
    [job] = api.queue.get_jobs()
    assert job.id == body["id"] and job.args == (body["id"],)
    assert job.func_name == "qa_service.worker.jobs.process_call"

    call = api.repo.get_call(body["id"])
    assert Path(call.input_path).read_bytes() == CHAT
    assert Path(call.input_path).parent == api.settings.storage_dir / body["id"]
    assert (call.input_kind, call.source, call.channels) == ("transcript", "upload", "stereo")
    assert (call.rubric_id, call.rubric_version) == ("harbourline-intake", "2026.10")

    got = api.client.get(f"/v1/calls/{body['id']}", headers=api.h("supervisor")).json()
    assert got["status"] == "queued" and got["agent_id"] == "agent-mira" and got["call_date"] == "2026-10-14"
    assert got["rubric"] == {"id": "harbourline-intake", "version": "2026.10"}
    assert got["scorecard_url"] is None


def test_submit_audio(api):
    audio = wav_bytes()
    r = api.submit("telephony", files={"audio": ("call.WAV", audio, "audio/wav")})
    assert r.status_code == 202, r.text
    call = api.repo.get_call(r.json()["id"])
    assert call.input_kind == "audio" and call.input_path.endswith("input.wav")
    assert Path(call.input_path).read_bytes() == audio


def test_transcript_as_plain_form_field(api):
    r = api.client.post("/v1/calls", data={**FORM, "transcript": "Agent: Hello.\nCustomer: Hi."},
                        headers=api.h())
    assert r.status_code == 202, r.text
    assert Path(api.repo.get_call(r.json()["id"]).input_path).read_text() == "Agent: Hello.\nCustomer: Hi."


def test_same_call_id_twice_returns_the_same_call(api):
    first = api.submit(call_id="ext-7")
    second = api.submit(call_id="ext-7", files={"audio": ("x.wav", wav_bytes(), "audio/wav")})
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json()["id"] == second.json()["id"]
    assert len(api.queue.get_jobs()) == 1
    assert len(list(api.settings.storage_dir.iterdir())) == 1


@pytest.mark.parametrize(("files", "status", "message"), [
    ({"audio": ("empty.wav", b"", "audio/wav")}, 400, "empty"),
    ({"transcript": ("empty.json", b"", "application/json")}, 400, "empty"),
    ({"audio": ("a.wav", b"RIFF", "audio/wav"), "transcript": ("t.json", CHAT, "application/json")}, 400,
     "not both"),
    ({"transcript": ("t.txt", b"just some words, no speakers", "text/plain")}, 422, "line 1"),
    ({"transcript": ("t.json", b'[{"speaker": "agent"', "application/json")}, 422, "not valid JSON"),
])
def test_bad_uploads(api, files, status, message):
    r = api.submit(files=files)
    assert r.status_code == status, r.text
    assert message in r.json()["detail"]
    assert api.queue.count == 0
    assert not any(api.settings.storage_dir.iterdir()), "a refused upload must leave nothing behind"


def test_no_input_at_all_is_400(api):
    r = api.client.post("/v1/calls", data=FORM, headers=api.h())
    assert r.status_code == 400 and "audio" in r.json()["detail"]


@pytest.mark.parametrize(("fields", "field"), [
    ({"agent_id": None}, "agent_id"),
    ({"call_date": "14/10/2026"}, "call_date"),
    ({"channels": "quad"}, "channels"),
    ({"agent_id": "has space"}, "agent_id"),
    ({"rubric_id": None}, "rubric_id"),
])
def test_invalid_fields_are_422_naming_the_field(api, fields, field):
    data = {k: v for k, v in {**FORM, **fields}.items() if v is not None}
    r = api.client.post("/v1/calls", data=data, files={"transcript": ("c.json", CHAT, "application/json")},
                        headers=api.h())
    assert r.status_code == 422
    assert r.json()["detail"].startswith(field) or f"{field}:" in r.json()["detail"]
    assert "has space" not in r.text, "submitted values are not echoed back"


@pytest.mark.parametrize(("fields", "message"), [
    ({"rubric_id": "no-such-rubric"}, "no rubric 'no-such-rubric'"),
    ({"policy_pack_id": "nope"}, "no policy pack 'nope'"),
    ({"rubric_version": "1999"}, "version '1999'"),
])
def test_unknown_rules_are_422(api, fields, message):
    r = api.submit(**fields)
    assert r.status_code == 422 and message in r.json()["detail"]


def test_upload_over_the_limit_is_413(api):
    # Declared too big: refused before the body is read.
    r = api.submit(files={"audio": ("big.wav", b"\x01" * 300_000, "audio/wav")})
    assert r.status_code == 413 and "limit of 200000 bytes" in r.json()["detail"]
    # Within the multipart slack but over the file limit: counted while copying to disk.
    r = api.submit(files={"audio": ("big.wav", b"\x01" * 200_001, "audio/wav")})
    assert r.status_code == 413
    assert not any(api.settings.storage_dir.iterdir()) and api.queue.count == 0


def test_streamed_body_over_the_limit_is_413(api):
    boundary = "b0undary"

    def body():
        yield (f"--{boundary}\r\nContent-Disposition: form-data; name=\"audio\"; filename=\"a.wav\"\r\n"
               "Content-Type: audio/wav\r\n\r\n").encode()
        for _ in range(40):  # 40 x 64 KiB, sent chunked with no Content-Length
            yield b"\x01" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = api.client.post("/v1/calls", content=body(), headers={
        **api.h(), "Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert r.status_code == 413


def test_roles(api):
    call_id = api.submit().json()["id"]
    assert api.submit("supervisor").status_code == 403
    assert api.client.get(f"/v1/calls/{call_id}/scorecard", headers=api.h("telephony")).status_code == 403
    assert api.client.get("/v1/agents/a/scorecards", headers=api.h("telephony")).status_code == 403
    r = api.client.post("/v1/rubrics", content=RUBRIC, headers=api.h("supervisor"))
    assert r.status_code == 403 and "supervisor" in r.json()["detail"]
    for role in ("admin", "qa", "supervisor"):
        assert api.client.get(f"/v1/calls/{call_id}", headers=api.h(role)).status_code == 200
    # A telephony key reads the status of the calls it sent, and no other call.
    own = api.submit("telephony").json()["id"]
    assert api.client.get(f"/v1/calls/{own}", headers=api.h("telephony")).status_code == 200
    r = api.client.get(f"/v1/calls/{call_id}", headers=api.h("telephony"))
    assert r.status_code == 404 and "no call" in r.json()["detail"]


def test_scorecard_follows_the_call_status(api):
    call_id = api.submit().json()["id"]
    url = f"/v1/calls/{call_id}/scorecard"
    r = api.client.get(url, headers=api.h("supervisor"))
    assert r.status_code == 404 and r.json()["status"] == "queued"

    card = {"format": "scorecard/v1", "call_id": "c", "score": 85.0, "passed": True, "auto_fail": False,
            "rubric": {"id": "harbourline-intake", "version": "2026.10", "sha256": sha(RUBRIC)}}
    api.repo.start_call(call_id)
    api.repo.finish_call(call_id, card)
    api.repo.finish_call(call_id, {**card, "score": 40.0, "passed": False})
    r = api.client.get(url, headers=api.h("supervisor"))
    assert r.status_code == 200 and r.json()["score"] == 40.0 and r.headers["x-scorecard-version"] == "2"
    assert api.client.get(url + "?version=1", headers=api.h()).json()["score"] == 85.0
    assert r.json() == {**card, "score": 40.0, "passed": False}
    assert r.headers["content-type"] == "application/json"
    r = api.client.get(url + "?version=3", headers=api.h())
    assert r.status_code == 404 and "no version 3" in r.json()["detail"]
    assert api.client.get(f"/v1/calls/{call_id}", headers=api.h()).json()["scorecard_url"] == url

    other = api.submit().json()["id"]
    api.repo.fail_call(other, "the audio could not be decoded")
    r = api.client.get(f"/v1/calls/{other}/scorecard", headers=api.h())
    assert r.status_code == 409 and "could not be decoded" in r.json()["detail"]
    assert api.client.get(f"/v1/calls/{other}", headers=api.h()).json()["failure_reason"] == \
        "the audio could not be decoded"


@pytest.mark.parametrize("call_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_unknown_call_is_404(api, call_id):
    for path in (f"/v1/calls/{call_id}", f"/v1/calls/{call_id}/scorecard"):
        r = api.client.get(path, headers=api.h())
        assert r.status_code == 404 and "no call" in r.json()["detail"]


def test_agent_scorecards_list_and_aggregate(api):
    for day, score, passed in [("2026-10-01", 50.0, False), ("2026-10-10", 90.0, True),
                               ("2026-10-20", 70.0, True)]:
        call_id = api.submit(call_date=day).json()["id"]
        api.repo.finish_call(call_id, {"score": score, "passed": passed, "auto_fail": False,
                                       "rubric": {"id": "harbourline-intake", "version": "2026.10"}})
    r = api.client.get("/v1/agents/agent-mira/scorecards?from=2026-10-05&to=2026-10-31",
                       headers=api.h("supervisor"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["aggregate"] == {"count": 2, "mean_score": 80.0, "pass_rate": 1.0, "auto_fail_count": 0}
    assert [c["call_date"] for c in body["scorecards"]] == ["2026-10-20", "2026-10-10"]
    assert body["from"] == "2026-10-05" and body["to"] == "2026-10-31"
    whole = api.client.get("/v1/agents/agent-mira/scorecards", headers=api.h()).json()
    assert whole["aggregate"]["count"] == 3 and whole["aggregate"]["pass_rate"] == round(2 / 3, 4)
    r = api.client.get("/v1/agents/agent-mira/scorecards?from=2026-10-31&to=2026-10-01", headers=api.h())
    assert r.status_code == 422 and "after" in r.json()["detail"]
    r = api.client.get("/v1/agents/agent-mira/scorecards?from=yesterday", headers=api.h())
    assert r.status_code == 422 and "from" in r.json()["detail"]


def test_rubric_upload(make_settings, redis_url, redis_conn):
    api = Api(make_settings(redis_url=redis_url), redis_conn)  # nothing seeded
    r = api.client.post("/v1/rubrics", content=RUBRIC,
                        headers={**api.h(), "Content-Type": "application/yaml"})
    assert r.status_code == 201, r.text
    assert r.json()["sha256"] == sha(RUBRIC) and r.json()["version"] == "2026.10"
    assert api.repo.get_rules("rubric", "harbourline-intake").text == RUBRIC

    again = api.client.post("/v1/rubrics", content=RUBRIC, headers=api.h())
    assert again.status_code == 200 and again.json()["created"] is False
    changed = RUBRIC.replace("pass_mark: 75", "pass_mark: 80")
    clash = api.client.post("/v1/rubrics", content=changed, headers=api.h())
    assert clash.status_code == 409 and "new version" in clash.json()["detail"]

    broken = RUBRIC.replace("points: 15\n    auto_fail: true", "points: lots\n    auto_fail: true").replace(
        'version: "2026.10"', 'version: "2026.11"')
    bad = api.client.post("/v1/rubrics", content=broken, headers=api.h())
    line = broken.splitlines().index("    points: lots") + 1
    assert bad.status_code == 422 and "points" in bad.json()["detail"] and f":{line}:" in bad.json()["detail"]

    listed = api.client.get("/v1/rubrics", headers=api.h("telephony")).json()
    assert [(x["id"], x["version"]) for x in listed] == [("harbourline-intake", "2026.10")]
    yaml_back = api.client.get("/v1/rubrics/harbourline-intake/2026.10", headers=api.h())
    assert yaml_back.text == RUBRIC

    pack = api.client.post("/v1/policy-packs", content=POLICIES, headers=api.h("admin"))
    assert pack.status_code == 201 and pack.json()["id"] == "valdoria-residence"
    assert api.client.post("/v1/policy-packs", content=RUBRIC, headers=api.h()).status_code == 422
    assert api.client.post("/v1/rubrics", content=b"", headers=api.h()).status_code == 400


def test_queue_down_keeps_the_call_and_a_resend_queues_it(make_settings, redis_url, redis_conn):
    dead = make_settings(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    down = Api(dead, redis_conn)
    seed_rules(down.repo)
    r = down.submit(call_id="ext-9")
    assert r.status_code == 503 and "resend" in r.json()["detail"]
    assert down.client.get("/healthz").json()["queue"] == "unreachable"
    stored = down.repo.find_call("ext-9")
    assert stored is not None and stored.status == "queued"

    up = Api(make_settings(redis_url=redis_url), redis_conn)  # same database, Redis back
    again = up.client.post("/v1/calls", data={**FORM, "call_id": "ext-9"},
                           files={"transcript": ("chat.json", CHAT, "application/json")}, headers=up.h())
    assert again.status_code == 200 and again.json()["id"] == stored.id
    assert [j.id for j in up.queue.get_jobs()] == [stored.id]


def test_retry_only_failed_calls_with_input(api):
    call_id = api.submit().json()["id"]
    assert api.client.post(f"/v1/calls/{call_id}/retry", headers=api.h()).status_code == 409
    api.queue.empty()
    api.repo.fail_call(call_id, "internal error (RuntimeError)")
    r = api.client.post(f"/v1/calls/{call_id}/retry", headers=api.h())
    assert r.status_code == 202 and r.json()["status"] == "queued"
    assert [j.id for j in api.queue.get_jobs()] == [call_id]
    assert api.client.post(f"/v1/calls/{call_id}/retry", headers=api.h("supervisor")).status_code == 403
    api.repo.fail_call(call_id, "x")
    api.repo.set_input_path(call_id, None)
    r = api.client.post(f"/v1/calls/{call_id}/retry", headers=api.h())
    assert r.status_code == 409 and "no longer stored" in r.json()["detail"]


# -- telephony webhook ---------------------------------------------------------------------------

def event(**kw) -> bytes:
    body = {"external_call_id": "pbx-1001", "agent_id": "agent-tom",
            "start_time": "2026-10-20T09:15:00+02:00",
            "recording_url": "https://recordings.example.com/1001.wav", "channels": "stereo",
            "rubric_id": "harbourline-intake", "policy_pack_id": "valdoria-residence"}
    body.update(kw)
    return json.dumps(body).encode()


def post_event(api: Api, body: bytes, signature: str | None = "good"):
    headers = {"Content-Type": "application/json"}
    if signature == "good":
        headers["X-Signature"] = sign(api.settings.webhook_secret, body)
    elif signature is not None:
        headers["X-Signature"] = signature
    return api.client.post("/v1/webhooks/telephony", content=body, headers=headers)


@pytest.mark.parametrize("signature", [None, "sha256=00", "sha1=abc", "wrong"])
def test_webhook_bad_signature_is_401(api, signature):
    r = post_event(api, event(), signature)
    assert r.status_code == 401 and "X-Signature" in r.json()["detail"]
    assert api.repo.find_call("pbx-1001") is None


def test_webhook_signature_covers_the_body(api):
    body = event()
    tampered = body.replace(b"agent-tom", b"agent-tim")
    r = api.client.post("/v1/webhooks/telephony", content=tampered,
                        headers={"X-Signature": sign(api.settings.webhook_secret, body)})
    assert r.status_code == 401


def test_webhook_same_body_twice_gives_the_same_call(api):
    first = post_event(api, event())
    second = post_event(api, event())
    assert (first.status_code, second.status_code) == (202, 200), first.text
    assert first.json()["id"] == second.json()["id"]
    call = api.repo.get_call(first.json()["id"])
    assert (call.source, call.input_kind, call.channels, call.call_date) == (
        "webhook", "audio", "stereo", date(2026, 10, 20))
    assert call.input_url == "https://recordings.example.com/1001.wav" and call.input_path is None
    assert [j.id for j in api.queue.get_jobs()] == [call.id]


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/r.wav", "http://10.1.2.3/r.wav", "http://[::1]/r.wav",
                                 "http://169.254.169.254/latest/meta-data"])
def test_webhook_private_addresses_are_refused(api, url):
    r = post_event(api, event(recording_url=url))
    assert r.status_code == 422 and "QA_ALLOW_PRIVATE_URLS" in r.json()["detail"]


def test_webhook_private_address_allowed_by_setting(make_settings, redis_url, redis_conn):
    api = Api(make_settings(redis_url=redis_url, allow_private_urls=True), redis_conn)
    seed_rules(api.repo)
    assert post_event(api, event(recording_url="http://127.0.0.1:8080/r.wav")).status_code == 202


@pytest.mark.parametrize(("body", "message"), [
    (event(recording_url="ftp://example.com/r.wav"), "http or https"),
    (event(start_time="yesterday"), "start_time"),
    (b"not json", "invalid telephony event"),
    (event(rubric_id="nope"), "no rubric 'nope'"),
])
def test_webhook_bad_events_are_422(api, body, message):
    r = post_event(api, body)
    assert r.status_code == 422 and message in r.json()["detail"]


def test_webhook_needs_a_secret(make_settings, redis_url, redis_conn):
    api = Api(make_settings(redis_url=redis_url, webhook_secret=None), redis_conn)
    r = api.client.post("/v1/webhooks/telephony", content=event(), headers={"X-Signature": "sha256=00"})
    assert r.status_code == 503 and "QA_WEBHOOK_SECRET" in r.json()["detail"]


# -- the API process stays free of the models ------------------------------------------------------

def test_api_process_does_not_import_models(tmp_path, redis_url):
    script = textwrap.dedent(f"""
        import hashlib
        import sys
        from fastapi.testclient import TestClient
        from qa_service.app import create_app
        from qa_service.auth import create_key
        from qa_service.settings import Settings
        app = create_app(Settings(database_url="sqlite:///{tmp_path}/db.sqlite", storage_dir="{tmp_path}/s",
                                  redis_url="{redis_url}"))
        key = create_key(app.state.repo, "admin", "k")
        client = TestClient(app)
        h = {{"Authorization": "Bearer " + key}}
        assert client.post("/v1/rubrics", content=open(sys.argv[1]).read(), headers=h).status_code == 201
        rules = app.state.repo
        text = open(sys.argv[2]).read()
        digest = hashlib.sha256(text.encode()).hexdigest()
        rules.put_rules("policy_pack", "valdoria-residence", "2026-10-01", digest, text)
        r = client.post("/v1/calls", headers=h, files={{"transcript": ("c.json", open(sys.argv[3], "rb"))}},
                        data={json.dumps(FORM)})
        assert r.status_code == 202, r.text
        r = client.post("/v1/rescores", headers=h,
                        json={{"rubric_id": "harbourline-intake", "rubric_version": "2026.10"}})
        assert r.status_code == 202, r.text
        assert client.get(r.headers["location"], headers=h).json()["status"] == "queued"
        heavy = ("faster_whisper", "ctranslate2", "spacy", "thinc", "presidio_analyzer",
                 "presidio_anonymizer", "torch", "av")
        print(sorted(m for m in sys.modules if m.split(".")[0] in heavy))
    """)
    out = subprocess.run([sys.executable, "-c", script, str(REPO_ROOT / "samples" / "rubric.yaml"),
                          str(REPO_ROOT / "samples" / "policies.yaml"),
                          str(REPO_ROOT / "samples" / "transcript-chat.json")],
                         capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.postgres
def test_api_on_postgresql(make_settings, redis_url, redis_conn, pg_url):
    api = Api(make_settings(redis_url=redis_url, database_url=pg_url), redis_conn)
    seed_rules(api.repo)
    first = api.submit(call_id="pg-1")
    assert first.status_code == 202, first.text
    assert api.submit(call_id="pg-1").json()["id"] == first.json()["id"]
    call_id = first.json()["id"]
    api.repo.finish_call(call_id, {"score": 90.0, "passed": True, "auto_fail": False,
                                   "rubric": {"id": "harbourline-intake", "version": "2026.10"}})
    assert api.client.get(f"/v1/calls/{call_id}/scorecard", headers=api.h()).json()["score"] == 90.0
    agg = api.client.get("/v1/agents/agent-mira/scorecards", headers=api.h()).json()["aggregate"]
    assert agg == {"count": 1, "mean_score": 90.0, "pass_rate": 1.0, "auto_fail_count": 0}
    assert api.client.get("/healthz").json()["database"] == "ok"
