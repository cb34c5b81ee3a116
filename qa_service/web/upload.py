"""The upload page: send one call or many (recordings or transcripts) and follow each one's progress.

Every file becomes a call through `services.calls.submit_call`, the use case `POST /v1/calls` runs,
with the signed-in key as its submitter. With script, the page sends the files one request each and
shows each file's bytes going up, then polls `/upload/recent` for the calls' status; the list comes
from the database (the calls this key uploaded), so a reload, or another tab, shows the same progress.
A file whose sending a reload cut off is named on the reloaded page (kept in the browser's storage)
so it can be sent again. Without script the form sends every file in one request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, JSONResponse, Response
from starlette.datastructures import FormData, UploadFile

from qa_service.access.keys import SUBMIT
from qa_service.errors import Conflict, InputError, NotFound, TransientError
from qa_service.intake import check_call_date
from qa_service.services.calls import CallInput, CallRequest, may_read, submit_call
from qa_service.storage.inputs import InputTooLarge
from qa_service.storage.repository import InputKind, StoredCall, StoredKey
from qa_service.web.pages import render, signed_form, signed_in, signed_page

router = APIRouter(include_in_schema=False)

RECENT = 50  # uploads listed on the page
CHANNELS = ("auto", "stereo", "stereo-agent-right", "mono")
TRANSCRIPT_SUFFIXES = (".txt", ".json")
# The API's pattern for agent and external call ids (api/schemas.ID_PATTERN; tests/test_web_pages.py
# checks that the two agree).
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@+=-]*$"
_ID = re.compile(ID_PATTERN)
_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$")


def may_upload(key: StoredKey) -> bool:
    """Whether a signed-in key may upload calls (QA keys and admins; telephony keys do not sign in)."""
    return key.role == "admin" or key.role in SUBMIT


def _refused(request: Request, key: StoredKey) -> Response | None:
    if may_upload(key):
        return None
    return render(request, "message.html", {"key": key, "title": "Not for this key",
                                            "message": "Only QA keys (and admins) upload calls."}, 403)


@dataclass(frozen=True)
class Fields:
    """What the form says of every call in one upload."""

    agent_id: str
    call_date: date
    rubric_id: str
    policy_pack_id: str
    channels: str
    call_id: str | None  # one file's external id
    ids_from_names: bool  # each file's name (without its suffix) is its external id


def read_fields(form: FormData) -> tuple[Fields | None, list[str]]:
    """The form's fields, or the problems with them, each naming its field."""
    names = ("agent_id", "call_date", "rubric_id", "policy_pack_id", "channels", "call_id")
    text = {k: str(form.get(k) or "").strip() for k in names}
    problems = []
    if not _ID.match(text["agent_id"]) or len(text["agent_id"]) > 100:
        problems.append("agent id: letters, digits and . _ : @ + = - (up to 100), starting with a letter or "
                        "digit")
    day = None
    try:
        day = check_call_date(date.fromisoformat(text["call_date"]))
    except ValueError:
        problems.append("call date: a date like 2026-11-02")
    except InputError as exc:
        problems.append(f"call date: {exc}")
    for name in ("rubric_id", "policy_pack_id"):
        if not text[name]:
            problems.append(f"{name.replace('_id', '').replace('_', ' ')}: choose one")
    if text["channels"] not in ("", *CHANNELS):
        problems.append("channels: auto, stereo, stereo-agent-right or mono")
    call_id = text["call_id"] or None
    if call_id is not None and (problem := _external_id_problem(call_id)):
        problems.append(f"call id: {problem}")
    if problems or day is None:
        return None, problems
    return Fields(agent_id=text["agent_id"], call_date=day, rubric_id=text["rubric_id"],
                  policy_pack_id=text["policy_pack_id"], channels=text["channels"] or "auto", call_id=call_id,
                  ids_from_names=bool(form.get("ids_from_names"))), []


def _external_id_problem(value: str) -> str | None:
    if not _ID.match(value) or len(value) > 200:
        return "letters, digits and . _ : @ + = - (up to 200), starting with a letter or digit"
    if _UUID.match(value):
        return "not a UUID: that would be taken for the service's own id"
    return None


def _files(form: FormData) -> list[UploadFile]:
    return [f for f in form.getlist("files") if isinstance(f, UploadFile) and f.filename]


def _kind(upload: UploadFile) -> InputKind:
    return "transcript" if Path(upload.filename or "").suffix.lower() in TRANSCRIPT_SUFFIXES else "audio"


def _status_of(exc: Exception) -> int:
    if isinstance(exc, InputTooLarge):
        return 413
    if isinstance(exc, NotFound):
        return 404
    if isinstance(exc, Conflict):
        return 409
    if isinstance(exc, TransientError):
        return 503
    return 422


def _submit_one(request: Request, key: StoredKey, fields: Fields, upload: UploadFile,
                external_id: str | None) -> dict[str, Any]:
    """Store and queue one file's call; what happened to it, for the page."""
    state = request.app.state
    call_request = CallRequest(
        external_id=external_id, agent_id=fields.agent_id, call_date=fields.call_date,
        rubric_id=fields.rubric_id, policy_pack_id=fields.policy_pack_id, channels=fields.channels,
        source="upload", submitted_by_key_id=key.id)
    kind = _kind(upload)
    try:
        submitted = submit_call(store=state.repo, settings=state.settings, queue=state.queue,
                                request=call_request, inputs=state.inputs,
                                upload=CallInput(kind, upload.file, upload.filename, upload.size),
                                visible=lambda call: may_read(key, call, store=state.repo))
    except (InputError, NotFound, Conflict, TransientError) as exc:
        return {"file": upload.filename, "ok": False, "status_code": _status_of(exc), "error": f"{exc}."}
    call = submitted.call
    return {"file": upload.filename, "ok": True, "status_code": 202 if submitted.created else 200,
            "call": _call_json(call), "again": not submitted.created}


def _call_json(call: StoredCall) -> dict[str, Any]:
    return {"call_id": call.id, "external_id": call.external_id, "agent_id": call.agent_id,
            "call_date": call.call_date.isoformat(), "status": call.status,
            "failure_reason": call.failure_reason,
            "received_at": call.created_at.isoformat(timespec="seconds")}


def _wants_json(request: Request) -> bool:
    return "application/json" in request.headers.get("accept", "")


def _page(request: Request, key: StoredKey, status: int = 200, **extra: Any) -> Response:
    repo = request.app.state.repo
    rubrics = sorted({r.id for r in repo.list_rules("rubric")})
    packs = sorted({r.id for r in repo.list_rules("policy_pack")})
    return render(request, "upload.html", {
        "key": key, "rubrics": rubrics, "packs": packs, "channels": CHANNELS,
        "uploads": [_call_json(c) for c in repo.uploads.recent(key.id, RECENT)],
        "max_mb": request.app.state.settings.max_upload_bytes // (1024 * 1024), **extra}, status)


@router.get("/upload", response_class=HTMLResponse)
def upload_page(request: Request) -> Response:
    """The upload form and the calls this key uploaded lately, with their status."""
    key = signed_page(request, _refused)
    return key if isinstance(key, Response) else _page(request, key)


@router.get("/upload/recent")
def recent_uploads(request: Request) -> Response:
    """The calls this key uploaded lately, newest first, with their status (JSON, for the page's polling)."""
    key = signed_in(request)
    if key is None:
        return JSONResponse({"detail": "sign in again"}, status_code=401)
    if not may_upload(key):
        return JSONResponse({"detail": "only QA keys (and admins) upload calls"}, status_code=403)
    calls = request.app.state.repo.uploads.recent(key.id, RECENT)
    return JSONResponse([_call_json(c) for c in calls], headers={"Cache-Control": "no-store"})


@router.post("/upload")
async def upload(request: Request) -> Response:
    """Store and queue a call per file sent; JSON for the page's script, the page itself otherwise."""
    settings = request.app.state.settings
    posted = await signed_form(request, max_part_size=settings.max_transcript_bytes)
    if isinstance(posted, Response):
        return posted
    key, form = posted.key, posted.form
    try:
        refused = _refused(request, key)
        if refused is not None:
            return refused
        fields, problems = read_fields(form)
        files = _files(form)
        if not files:
            problems.append("choose one or more files: recordings, or transcripts as .txt or .json")
        if fields is not None and fields.call_id and len(files) > 1:
            problems.append("call id: give one only with one file (or use each file's name)")
        if problems or fields is None:
            if _wants_json(request):
                return JSONResponse({"detail": "; ".join(problems)}, status_code=422)
            return await run_in_threadpool(lambda: _page(request, key, 422, errors=problems))
        results: list[dict[str, Any]] = []
        for upload in files:
            external_id = fields.call_id
            if fields.ids_from_names:
                external_id = Path(upload.filename or "").stem
                if problem := _external_id_problem(external_id):
                    results.append({"file": upload.filename, "ok": False, "status_code": 422,
                                    "error": f"its name cannot be a call id: {problem}."})
                    continue
            results.append(await run_in_threadpool(_submit_one, request, key, fields, upload, external_id))
    finally:
        await form.close()
    if _wants_json(request):
        if len(results) == 1:
            return JSONResponse(results[0], status_code=results[0]["status_code"])
        return JSONResponse({"results": results})
    status = 422 if results and not any(r["ok"] for r in results) else 200
    return await run_in_threadpool(lambda: _page(request, key, status, results=results))
