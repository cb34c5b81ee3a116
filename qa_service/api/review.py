"""Human review routes, the review queue, and the audit trail of reads and changes.

`install(app)` adds the routes and the `AuditTrail` middleware. The middleware writes one audit row
per request to the routes that read transcripts or scorecards or change something (who: the API key
or web session behind the request; what: an action name, the call or rules id, and the HTTP status).
It never records bodies, so no transcript text or reason reaches the audit log.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from qa_service.api.deps import READ_SCORES, RepoDep, requires
from qa_service.auth import KEY_CACHE_TTL_S, hash_key
from qa_service.errors import ConfigError, InputError, NotFound
from qa_service.review import (
    MAX_REASON_CHARS,
    Review,
    ReviewError,
    apply_reviews,
    check_review,
    has_target,
    needs_review,
    review_share,
    rubric_terms,
)
from qa_service.storage import review as store
from qa_service.storage.repository import Repository, StoredKey, StoredScorecard

log = logging.getLogger(__name__)
router = APIRouter(tags=["review"])

REVIEW = ("qa",)
ReviewKey = Annotated[StoredKey, requires(*REVIEW)]
ReadScoresKey = Annotated[StoredKey, requires(*READ_SCORES)]
AdminKey = Annotated[StoredKey, requires()]  # no role but admin


class BadReview(InputError):
    """A review whose action does not fit its target, or without a reason (HTTP 422)."""


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Literal["criterion", "violation"]
    id: str = Field(min_length=1, max_length=100, description="The criterion's or violation's id")
    action: Literal["override_pass", "override_fail", "dismiss", "restore"] = Field(
        description="criterion: override_pass, override_fail, restore; violation: dismiss, restore")
    reason: str = Field(max_length=MAX_REASON_CHARS, description="Why; required")


def _engine(repo: Repository) -> Engine:
    engine = getattr(repo, "engine", None)
    if engine is None:
        raise ConfigError("reviews and the audit log need the SQL repository")
    return engine  # type: ignore[no-any-return]


def reviewed_card(repo: Repository, stored: StoredScorecard) -> dict[str, Any]:
    """A stored scorecard with its `review` section (pass mark and auto-fail criteria from its rubric)."""
    try:
        rubric = repo.get_rules("rubric", stored.rubric_id, stored.rubric_version)
        pass_mark, auto_fail = rubric_terms(rubric.text)
    except NotFound:
        pass_mark, auto_fail = None, frozenset()
    reviews = store.call_reviews(_engine(repo), stored.call_id)
    card = apply_reviews(stored.data, reviews, pass_mark=pass_mark, auto_fail_criteria=auto_fail)
    card["review"]["scorecard_version"] = stored.version
    return card


def add_review(repo: Repository, key: StoredKey, call_id: str, target: str, target_id: str, action: str,
               reason: str) -> tuple[Review, dict[str, Any]]:
    """Check and store a review of the call's latest scorecard; the review and the reviewed scorecard."""
    try:
        check_review(target, action, reason)
    except ReviewError as exc:
        raise BadReview(str(exc)) from None
    stored = repo.get_scorecard(call_id)
    if not has_target(stored.data, target, target_id):
        raise NotFound(f"the call's scorecard has no {target} {target_id!r}")
    review = store.add_review(_engine(repo), Review(
        call_id=stored.call_id, scorecard_version=stored.version, target_kind=target,  # type: ignore[arg-type]
        target_id=target_id, action=action, reason=reason.strip(),  # type: ignore[arg-type]
        reviewer_key_id=key.id, reviewer_name=key.name, created_at=datetime.now(UTC)))
    return review, reviewed_card(repo, stored)


@router.post("/v1/calls/{call_id}/reviews", status_code=201)
def post_review(call_id: str, body: ReviewIn, repo: RepoDep, key: ReviewKey) -> dict[str, Any]:
    """Override a criterion or dismiss a violation of the call's latest scorecard, with a reason."""
    review, card = add_review(repo, key, call_id, body.target, body.id, body.action, body.reason)
    return {"review": review.to_dict(), "result": {k: v for k, v in card["review"].items() if k != "items"}}


@router.get("/v1/calls/{call_id}/reviews")
def get_reviews(call_id: str, repo: RepoDep, _key: ReadScoresKey) -> list[dict[str, Any]]:
    """Every review of the call, oldest first."""
    call = repo.get_call(call_id)
    return [r.to_dict() for r in store.call_reviews(_engine(repo), call.id)]


@router.get("/v1/calls/{call_id}/scorecard/reviewed")
def get_reviewed_scorecard(call_id: str, repo: RepoDep, _key: ReadScoresKey) -> dict[str, Any]:
    """The latest scorecard with its `review` section: automatic and reviewed verdicts, who, when, why."""
    return reviewed_card(repo, repo.get_scorecard(call_id))


@router.get("/v1/review-queue")
def review_queue(
    request: Request, repo: RepoDep, _key: ReadScoresKey,
    agent_id: str | None = None,
    date_from: Annotated[date | None, Query(alias="from", description="First call date, inclusive")] = None,
    date_to: Annotated[date | None, Query(alias="to", description="Last call date, inclusive")] = None,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    """Calls marked for review and not reviewed yet: every auto-fail, every call with items to check
    (outdated figures the recogniser was unsure of), plus each agent's weekly sample."""
    if date_from and date_to and date_from > date_to:
        raise InputError("'from' is after 'to'")
    share = request.app.state.review_share
    calls = []
    for c in store.queue_candidates(_engine(repo), agent_id, date_from, date_to):
        if needs_review(c.call_id, c.agent_id, c.call_date, c.auto_fail, share, to_check=c.to_check > 0):
            why = "auto_fail" if c.auto_fail else "to_check" if c.to_check else "sampled"
            calls.append({"call_id": c.call_id, "agent_id": c.agent_id, "call_date": c.call_date.isoformat(),
                          "scorecard_version": c.version, "score": c.score, "passed": c.passed,
                          "auto_fail": c.auto_fail, "to_check": c.to_check, "why": why})
            if len(calls) >= limit:
                break
    return {"share": share, "count": len(calls), "calls": calls}


@router.get("/v1/audit")
def get_audit(
    repo: RepoDep, _key: AdminKey,
    call_id: str | None = None, key_id: str | None = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[dict[str, Any]]:
    """Audit rows, newest first, by call (or rules id), key and time range (admin only)."""
    since, until = (_aware(x) for x in (since, until))
    rows = store.audit_entries(_engine(repo), target_id=call_id, key_id=key_id, since=since, until=until,
                               limit=limit)
    return [r.to_dict() for r in rows]


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


# -- audit trail -------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Audited:
    method: str
    pattern: re.Pattern[str]
    action: str
    target_kind: str | None


_ID = r"([^/]+)"
AUDITED: tuple[_Audited, ...] = tuple(_Audited(m, re.compile(p), a, k) for m, p, a, k in (
    ("GET", rf"^/v1/calls/{_ID}$", "read_call", "call"),
    ("GET", rf"^/v1/calls/{_ID}/scorecard$", "read_scorecard", "call"),
    ("GET", rf"^/v1/calls/{_ID}/scorecard/reviewed$", "read_scorecard", "call"),
    ("GET", rf"^/v1/calls/{_ID}/reviews$", "read_reviews", "call"),
    ("GET", rf"^/v1/calls/{_ID}/audio$", "read_audio", "call"),
    ("GET", rf"^/v1/agents/{_ID}/(?:scorecards|scorecards\.csv|summary)$", "read_scorecards", "agent"),
    ("GET", rf"^/calls/{_ID}$", "read_call", "call"),
    ("GET", rf"^/calls/{_ID}/audio$", "read_audio", "call"),
    ("GET", rf"^/agents/{_ID}/scorecards\.csv$", "read_scorecards", "agent"),
    ("POST", r"^/v1/calls$", "submit_call", "call"),
    ("POST", r"^/v1/webhooks/telephony$", "submit_call", "call"),
    ("POST", rf"^/v1/calls/{_ID}/retry$", "retry_call", "call"),
    ("POST", rf"^/v1/calls/{_ID}/reviews$", "review", "call"),
    ("POST", rf"^/calls/{_ID}/reviews$", "review", "call"),
    ("POST", r"^/v1/rubrics$", "put_rules", "rubric"),
    ("POST", r"^/v1/policy-packs$", "put_rules", "policy_pack"),
    ("POST", r"^/v1/rescores$", "start_rescore", "rescore"),
    ("GET", r"^/v1/audit$", "read_audit", None),
))
_LOCATION = re.compile(r"^/v1/(?:calls|rubrics|policy-packs|rescores)/([^/?]+(?:/[^/?]+)?)$")


def audited(method: str, path: str) -> tuple[str, str | None, str | None] | None:
    """The audit action, target kind and target id for a request, or None when it is not audited."""
    for item in AUDITED:
        if item.method == method:
            m = item.pattern.match(path)
            if m:
                return item.action, item.target_kind, (m.group(1) if m.groups() else None)
    return None


class AuditTrail:
    """ASGI middleware appending one audit row per audited request, after the response is sent."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = audited(scope["method"], scope["path"])
        if found is None:
            await self.app(scope, receive, send)
            return
        seen: dict[str, Any] = {"status": 500, "headers": {}}

        async def watching_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
                seen["headers"] = {k.decode("latin-1").lower(): v.decode("latin-1")
                                   for k, v in message.get("headers") or []}
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            try:
                await anyio.to_thread.run_sync(_record, scope, found, seen["status"], seen["headers"])
            except Exception as exc:  # the response is out; a lost audit row is logged, never raised
                log.error("could not write the audit row for %s %s: %s", scope["method"],
                          found[0], type(exc).__name__)


def _record(scope: dict[str, Any], found: tuple[str, str | None, str | None], status: int,
            headers: dict[str, str]) -> None:
    action, target_kind, target_id = found
    app = scope["app"]
    key = _who(scope, app)
    if key is None and not (action == "submit_call" and status < 400):
        return  # nobody to name: refused before any read or change happened
    location = _LOCATION.match(headers.get("location", ""))
    if location and target_id is None:
        target_id = location.group(1)
    details = f"status={status}"
    if "x-scorecard-version" in headers:
        details += f" version={headers['x-scorecard-version']}"
    if scope["path"].endswith("/reviewed"):
        details += " reviewed"
    if key is None:
        details += " via=webhook"
    store.audit(_engine(app.state.repo), action, key_id=key.id if key else None,
                key_name=key.name if key else None, role=key.role if key else None,
                target_kind=target_kind, target_id=target_id, details=details)


def _who(scope: dict[str, Any], app: Any) -> StoredKey | None:
    """The key behind a request: its bearer token, or the web session cookie."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    repo = app.state.repo
    auth = headers.get("authorization", "")
    key_hash: str | None = None
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        key_hash = hash_key(auth[7:].strip())
    elif "cookie" in headers:
        from http.cookies import SimpleCookie

        from qa_service.web.session import COOKIE_NAME, read_token, session_secret

        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:  # a malformed cookie header names nobody
            return None
        if COOKIE_NAME in cookie:
            key_hash = read_token(session_secret(app.state), cookie[COOKIE_NAME].value)
    if key_hash is None:
        return None
    key = repo.key_by_hash(key_hash, max_age_s=KEY_CACHE_TTL_S)
    return key if key is not None and not key.revoked else None  # type: ignore[no-any-return]


def install(app: FastAPI) -> None:
    """Add the review routes and the audit trail to the app; reads QA_REVIEW_SHARE (fails fast if bad)."""
    try:
        app.state.review_share = review_share()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from qa_service.web import review as web_review

    app.include_router(router)
    app.include_router(web_review.router)
    app.add_middleware(AuditTrail)
