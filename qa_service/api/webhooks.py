"""Telephony webhook: a finished call posted as signed JSON; the worker downloads the recording.

Signature: `X-Signature: sha256=<hex HMAC-SHA256 of the raw body with QA_WEBHOOK_SECRET>`.
Idempotent on `external_call_id`: a system that retries delivery gets the same call back; an id
that an upload used first gets 409, without that call's id.

A request without a well-formed signature is refused before its body is read, and a body is
read only up to MAX_EVENT_BYTES (the app's BodyLimit refuses a longer Content-Length at once and
cuts off a longer stream).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from typing import Annotated

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from qa_service.api.deps import QueueDep, RepoDep, SettingsDep
from qa_service.api.routes import accepted
from qa_service.api.schemas import CallAccepted, Error, TelephonyEvent, message_of
from qa_service.errors import AuthError, InputError, TransientError
from qa_service.services.calls import CallRequest, submit_call
from qa_service.storage.fetch import check_url

log = logging.getLogger(__name__)
router = APIRouter()

MAX_EVENT_BYTES = 64 * 1024
_SIGNATURE = re.compile(r"sha256=[0-9a-f]{64}")


class WebhookInvalid(InputError):
    """A webhook body that is not the expected JSON."""


def sign(secret: str, body: bytes) -> str:
    """The X-Signature header value for a body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@router.post(
    "/v1/webhooks/telephony", status_code=202, response_model=CallAccepted, tags=["webhooks"],
    responses={200: {"model": CallAccepted, "description": "This external_call_id was received before"},
               401: {"model": Error, "description": "Missing or wrong signature"},
               409: {"model": Error, "description": "An upload used this external_call_id first"},
               413: {"model": Error, "description": f"Body larger than {MAX_EVENT_BYTES} bytes"},
               422: {"model": Error}, 503: {"model": Error, "description": "Webhooks not configured"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": TelephonyEvent.model_json_schema()}}}},
)
async def telephony(request: Request, repo: RepoDep, queue: QueueDep, settings: SettingsDep,
                    response: Response,
                    x_signature: Annotated[str | None, Header()] = None) -> CallAccepted:
    """Register a finished call from a telephony system; its recording is fetched by the worker."""
    if not settings.webhook_secret:
        raise TransientError("telephony webhooks are not configured (set QA_WEBHOOK_SECRET)")
    signature = (x_signature or "").strip().lower()
    if not _SIGNATURE.fullmatch(signature):
        raise AuthError("missing or malformed X-Signature (expected sha256=<hex HMAC-SHA256 of the body>)")
    body = await request.body()
    if not hmac.compare_digest(signature, sign(settings.webhook_secret, body)):
        raise AuthError("wrong X-Signature (expected sha256=<hex HMAC-SHA256 of the body>)")
    try:
        event = TelephonyEvent.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {message_of(e)}"
                             for e in exc.errors())
        raise WebhookInvalid(f"invalid telephony event: {problems}") from None
    # Hostnames are resolved and checked again by the worker right before it downloads.
    check_url(event.recording_url, allow_private=settings.allow_private_urls, resolve=False)

    # Every webhook is signed with the one shared secret: one client, which learns only of its own calls.
    request_ = CallRequest(
        external_id=event.external_call_id, agent_id=event.agent_id, call_date=event.start_time.date(),
        rubric_id=event.rubric_id, rubric_version=event.rubric_version, policy_pack_id=event.policy_pack_id,
        policy_pack_version=event.policy_pack_version, channels=event.channels, source="webhook",
        input_url=event.recording_url, input_kind="audio")
    submitted = await run_in_threadpool(lambda: submit_call(
        store=repo, settings=settings, queue=queue, request=request_,
        visible=lambda call: call.source == "webhook"))
    return accepted(submitted, response)
