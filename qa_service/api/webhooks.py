"""Telephony webhook: a finished call posted as signed JSON; the worker downloads the recording.

Signature: `X-Signature: sha256=<hex HMAC-SHA256 of the raw body with QA_WEBHOOK_SECRET>`.
Idempotent on `external_call_id`: a system that retries delivery gets the same call back.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import ValidationError

from qa_service.api.deps import QueueDep, RepoDep, SettingsDep
from qa_service.api.schemas import CallAccepted, Error, TelephonyEvent
from qa_service.errors import AuthError, InputError, TransientError
from qa_service.storage.fetch import check_url
from qa_service.storage.repository import NewCall

log = logging.getLogger(__name__)
router = APIRouter()

MAX_EVENT_BYTES = 64 * 1024


class WebhookInvalid(InputError):
    """A webhook body that is not the expected JSON."""


def sign(secret: str, body: bytes) -> str:
    """The X-Signature header value for a body."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


@router.post(
    "/v1/webhooks/telephony", status_code=202, response_model=CallAccepted, tags=["webhooks"],
    responses={200: {"model": CallAccepted, "description": "This external_call_id was received before"},
               401: {"model": Error, "description": "Missing or wrong signature"},
               422: {"model": Error}, 503: {"model": Error, "description": "Webhooks not configured"}},
    openapi_extra={"requestBody": {"required": True, "content": {
        "application/json": {"schema": TelephonyEvent.model_json_schema()}}}},
)
async def telephony(request: Request, repo: RepoDep, queue: QueueDep, settings: SettingsDep,
                    response: Response,
                    x_signature: Annotated[str | None, Header()] = None) -> CallAccepted:
    """Register a finished call from a telephony system; its recording is fetched by the worker."""
    from qa_service.api import routes

    if not settings.webhook_secret:
        raise TransientError("telephony webhooks are not configured (set QA_WEBHOOK_SECRET)")
    body = await request.body()
    if len(body) > MAX_EVENT_BYTES:
        raise WebhookInvalid(f"webhook bodies are limited to {MAX_EVENT_BYTES} bytes")
    expected = sign(settings.webhook_secret, body)
    if not x_signature or not hmac.compare_digest(x_signature.strip().lower(), expected):
        raise AuthError("missing or wrong X-Signature (expected sha256=<hex HMAC-SHA256 of the body>)")
    try:
        event = TelephonyEvent.model_validate_json(body)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}"
                             for e in exc.errors())
        raise WebhookInvalid(f"invalid telephony event: {problems}") from None
    # Hostnames are resolved and checked again by the worker right before it downloads.
    check_url(event.recording_url, allow_private=settings.allow_private_urls, resolve=False)

    def register() -> CallAccepted:
        existing = repo.find_call(event.external_call_id)
        if existing is not None:
            return routes._existing(existing, queue, settings, response)
        rubric = routes.stored_rules(repo, "rubric", event.rubric_id, event.rubric_version)
        policies = routes.stored_rules(repo, "policy_pack", event.policy_pack_id,
                                          event.policy_pack_version)
        call, created = repo.add_call(NewCall(
            id=str(uuid.uuid4()), external_id=event.external_call_id, agent_id=event.agent_id,
            call_date=event.start_time.date(), rubric_id=rubric.id, rubric_version=rubric.version,
            policy_pack_id=policies.id, policy_pack_version=policies.version, channels=event.channels,
            source="webhook", input_kind="audio", input_url=event.recording_url,
        ))
        if not created:
            return routes._existing(call, queue, settings, response)
        routes._enqueue(queue, call.id, settings)
        response.headers["Location"] = f"/v1/calls/{call.id}"
        return CallAccepted(id=call.id, status=call.status, external_id=call.external_id)

    accepted: Any = await run_in_threadpool(register)
    return accepted  # type: ignore[no-any-return]
