"""Human review routes, the review queue, and the audit trail of reads and changes.

`install(app)` adds the routes and the `AuditTrail` middleware. The middleware writes one audit row
per request to the routes that read call, scorecard, agent, review, rescore, audit or key data or
change something (who: the API key or web session behind the request; what: an action name, the
call, agent, key or rules id, and the HTTP status), and one per refused request on any route
(`auth_failed` for 401, `forbidden` for 403: the presented key's prefix, never the key, the client
address and what was tried). Refusals are bounded by the client limit (`api/ratelimit.py`): past an
address's limit one row says it is refused, and its later failures are turned away unrecorded.
It never records bodies, so no transcript text or reason reaches the audit log.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import parse_qs

import anyio
from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Engine

from qa_service.api.deps import PRESENTED_STATE, READ_SCORES, AdminKey, RepoDep, requires
from qa_service.api.ratelimit import FAILED_AUTH, FAILURES_STATE, ClientLimit, FailureCount, client_address
from qa_service.auth import KEY_CACHE_TTL_S, Presented, presented
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


class BadReview(InputError):
    """A review whose action does not fit its target, or without a reason (HTTP 422)."""


class ReviewIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    target: Literal["criterion", "violation", "to_check", "verdict"]
    id: str = Field(min_length=1, max_length=100,
                    description='Id of the criterion, violation or item to check; "verdict" for the verdict')
    action: Literal["override_pass", "override_fail", "dismiss", "confirm", "restore"] = Field(
        description="criterion: override_pass, override_fail, restore; violation: dismiss, restore; "
                    "to_check: confirm (it counts as a violation), dismiss, restore; "
                    "verdict: confirm (a provisional verdict becomes final), restore")
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
        what = {"to_check": "item to check"}.get(target, target)
        raise NotFound(f"the call's scorecard has no {what} {target_id!r}")
    review = store.add_review(_engine(repo), Review(
        call_id=stored.call_id, scorecard_version=stored.version, target_kind=target,  # type: ignore[arg-type]
        target_id=target_id, action=action, reason=reason.strip(),  # type: ignore[arg-type]
        reviewer_key_id=key.id, reviewer_name=key.name, created_at=datetime.now(UTC)))
    card = reviewed_card(repo, stored)
    store.set_reviewed(_engine(repo), stored.call_id, stored.version, card["review"])
    return review, card


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
    """Calls marked for review and not reviewed yet: every provisional verdict, every auto-fail, every
    call with items to check (phrases and figures nearly heard), plus each agent's weekly sample."""
    if date_from and date_to and date_from > date_to:
        raise InputError("'from' is after 'to'")
    share = request.app.state.review_share
    calls = []
    for c in store.queue_candidates(_engine(repo), agent_id, date_from, date_to):
        if needs_review(c.call_id, c.agent_id, c.call_date, c.auto_fail, share,
                        to_check=c.to_check > 0 or c.provisional):
            why = "provisional" if c.provisional else "auto_fail" if c.auto_fail else \
                "to_check" if c.to_check else "sampled"
            calls.append({"call_id": c.call_id, "agent_id": c.agent_id, "call_date": c.call_date.isoformat(),
                          "scorecard_version": c.version, "score": c.score, "passed": c.passed,
                          "auto_fail": c.auto_fail, "provisional": c.provisional, "to_check": c.to_check,
                          "why": why})
            if len(calls) >= limit:
                break
    return {"share": share, "count": len(calls), "calls": calls}


@router.get("/v1/audit")
def get_audit(
    repo: RepoDep, _key: AdminKey,
    call_id: Annotated[str | None, Query(description="A call, agent, key or rules id")] = None,
    key_id: str | None = None,
    action: Annotated[str | None, Query(description="e.g. read_scorecard, export_calls, auth_failed")] = None,
    since: Annotated[datetime | None, Query(alias="from")] = None,
    until: Annotated[datetime | None, Query(alias="to")] = None,
    limit: Annotated[int, Query(ge=1, le=10000)] = 1000,
) -> list[dict[str, Any]]:
    """Audit rows, newest first, by target (call, agent, key or rules id), key, action and time range
    (admin only)."""
    since, until = (_aware(x) for x in (since, until))
    rows = store.audit_entries(_engine(repo), target_id=call_id, key_id=key_id, action=action, since=since,
                               until=until, limit=limit)
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
# Every route that reads call, scorecard, agent, review, rescore, audit or key data, and every change.
# Left out on purpose (tests/test_audit.py walks the app's routes against this list and those): health,
# metrics, the OpenAPI description and docs, static files, the rules listings (no personal or
# performance data in them), the sign-in form and sign-out. A GET without an id in its path names the
# agent it is filtered to (`?agent_id=`), when it is.
AUDITED: tuple[_Audited, ...] = tuple(_Audited(m, re.compile(p), a, k) for m, p, a, k in (
    ("GET", r"^/v1/calls$", "list_calls", "call"),
    ("GET", rf"^/v1/calls/{_ID}$", "read_call", "call"),
    ("GET", rf"^/v1/calls/{_ID}/scorecard$", "read_scorecard", "call"),
    ("GET", rf"^/v1/calls/{_ID}/scorecard/reviewed$", "read_scorecard", "call"),
    ("GET", rf"^/v1/calls/{_ID}/reviews$", "read_reviews", "call"),
    ("GET", rf"^/v1/calls/{_ID}/audio$", "read_audio", "call"),
    ("GET", r"^/v1/agents$", "list_agents", "agent"),
    ("GET", rf"^/v1/agents/{_ID}/(?:scorecards|scorecards\.csv|summary)$", "read_scorecards", "agent"),
    ("GET", r"^/v1/policy-currency$", "read_policy_currency", "agent"),
    ("GET", r"^/v1/review-queue$", "read_review_queue", "call"),
    ("GET", r"^/v1/rescores$", "list_rescores", "rescore"),
    ("GET", rf"^/v1/rescores/{_ID}$", "read_rescore", "rescore"),
    ("GET", r"^/v1/audit$", "read_audit", None),
    ("GET", r"^/v1/keys$", "list_keys", "key"),
    ("GET", rf"^/v1/keys/{_ID}$", "read_key", "key"),
    ("GET", r"^/agents$", "list_agents", "agent"),
    ("GET", rf"^/agents/{_ID}$", "read_scorecards", "agent"),
    ("GET", rf"^/agents/{_ID}/scorecards\.csv$", "read_scorecards", "agent"),
    ("GET", r"^/calls$", "list_calls", "call"),
    ("GET", rf"^/calls/{_ID}$", "read_call", "call"),
    ("GET", rf"^/calls/{_ID}/audio$", "read_audio", "call"),
    ("POST", r"^/sign-in$", "sign_in", "key"),
    ("POST", r"^/v1/calls$", "submit_call", "call"),
    ("POST", r"^/v1/webhooks/telephony$", "submit_call", "call"),
    ("POST", rf"^/v1/calls/{_ID}/retry$", "retry_call", "call"),
    ("POST", rf"^/v1/calls/{_ID}/reviews$", "review", "call"),
    ("POST", rf"^/calls/{_ID}/reviews$", "review", "call"),
    ("POST", r"^/v1/rubrics$", "put_rules", "rubric"),
    ("POST", r"^/v1/policy-packs$", "put_rules", "policy_pack"),
    ("POST", r"^/v1/rescores$", "start_rescore", "rescore"),
    ("POST", r"^/v1/keys$", "create_key", "key"),
    ("POST", rf"^/v1/keys/{_ID}/revoke$", "revoke_key", "key"),
))
_LOCATION = re.compile(r"^/v1/(?:calls|rubrics|policy-packs|rescores|keys)/([^/?]+(?:/[^/?]+)?)$")
# Answers that mean nothing was read or changed and nobody should be recorded: a client over its limit.
_NOT_RECORDED = frozenset({429})
# Lists that take `?agent_id=`: a read of one of them filtered so names that agent.
_BY_AGENT = frozenset({"list_calls", "read_policy_currency", "read_review_queue"})


def audited(method: str, path: str, query: bytes | str = b"") -> tuple[str, str | None, str | None] | None:
    """The audit action, target kind and target id for a request, or None when it is not audited."""
    for item in AUDITED:
        if item.method == method:
            m = item.pattern.match(path)
            if m:
                if m.groups():
                    return item.action, item.target_kind, m.group(1)
                return _listing(item, method, query)
    return None


def _listing(item: _Audited, method: str, query: bytes | str) -> tuple[str, str | None, str | None]:
    # A list read names the agent it was filtered to, and a CSV export of the calls is an export.
    if method != "GET" or not query:
        return item.action, item.target_kind, None
    params = parse_qs(query.decode("latin-1") if isinstance(query, bytes) else query)
    action = item.action
    if action == "list_calls" and params.get("format") == ["csv"]:
        action = "export_calls"
    agent = params.get("agent_id", [""])[0] if item.action in _BY_AGENT else ""
    return (action, "agent", agent) if agent else (action, item.target_kind, None)


class AuditTrail:
    """ASGI middleware appending one audit row per audited request, and one per refused request (401,
    403) on any route, after the response is sent."""

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = audited(scope["method"], scope["path"], scope.get("query_string", b""))
        # Shared with the app below: a sign-in form leaves the pasted key's prefix here, the client
        # limit how the address's failures stand.
        scope.setdefault("state", {})
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
            status = seen["status"]
            if (found is not None or status in FAILED_AUTH) and status not in _NOT_RECORDED:
                try:
                    await anyio.to_thread.run_sync(_record, scope, found, status, seen["headers"])
                except Exception as exc:  # the response is out; a lost audit row is logged, never raised
                    log.error("could not write the audit row for %s %s: %s", scope["method"],
                              found[0] if found else "request", type(exc).__name__)


def _record(scope: dict[str, Any], found: tuple[str, str | None, str | None] | None, status: int,
            headers: dict[str, str]) -> None:
    app = scope["app"]
    presented = _presented(scope, app)
    stored = _stored_key(app.state.repo, presented)
    if status in FAILED_AUTH:
        _record_refusal(scope, found, status, presented, stored)
        return
    if found is None:
        return
    action, target_kind, target_id = found
    key = stored if stored is not None and not stored.revoked else None
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


def _record_refusal(scope: dict[str, Any], found: tuple[str, str | None, str | None] | None, status: int,
                    presented: Presented, stored: StoredKey | None) -> None:
    """One row per refused request, `auth_failed` (401) or `forbidden` (403): the key's prefix, whose
    key it is when it is a stored (perhaps revoked) key, the client address and what was tried. The
    failure that uses up the address's limit says how long the address is now refused; the client
    limit turns the later ones away before they reach the app, unrecorded."""
    failures: FailureCount | None = scope["state"].get(FAILURES_STATE)
    if failures is not None and failures.past_limit:
        return  # the row of the failure that used up the limit said the address is refused
    action, target_kind, target_id = found if found is not None else (None, None, None)
    details = f"status={status} client={client_address(scope)} key={presented.shown}"
    if stored is not None and stored.revoked:
        details += " revoked"
    if failures is not None and failures.first_refused:
        details += f" refused={math.ceil(failures.refused_for_s)}s"
    details += f" tried={action or scope['method'] + ' ' + scope['path']}"
    store.audit(_engine(scope["app"].state.repo), "auth_failed" if status == 401 else "forbidden",
                key_id=stored.id if stored else None, key_name=stored.name if stored else None,
                role=stored.role if stored else None, target_kind=target_kind, target_id=target_id,
                details=details)


def _presented(scope: dict[str, Any], app: Any) -> Presented:
    """The key behind a request as far as the audit may know it: its bearer token, the key a sign-in
    form carried, or the web session cookie."""
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer ") and auth[7:].strip():
        return presented(auth[7:].strip())
    noted: Presented | None = scope["state"].get(PRESENTED_STATE)
    if noted is not None:
        return noted
    if "cookie" in headers:
        from http.cookies import SimpleCookie

        from qa_service.storage.sessions import session_is_live
        from qa_service.web.session import COOKIE_NAME, read_session, session_secret

        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers["cookie"])
        except Exception:  # a malformed cookie header names nobody
            return presented(None)
        if COOKIE_NAME in cookie:
            session = read_session(session_secret(app.state), cookie[COOKIE_NAME].value)
            # A cookie kept after its session ended (signed out, expired on the server) names nobody:
            # the pages refuse it, so the audit must not record its key as the reader.
            stored = None if session is None else _stored_key(app.state.repo, Presented(session.key_hash,
                                                                                      "session"))
            if session is not None and stored is not None \
                    and session_is_live(_engine(app.state.repo), session.id, stored.id):
                return Presented(session.key_hash, "session")
    return presented(None)


def _stored_key(repo: Repository, who: Presented) -> StoredKey | None:
    """The stored key a request presented, revoked or not."""
    if who.key_hash is None:
        return None
    return repo.key_by_hash(who.key_hash, max_age_s=KEY_CACHE_TTL_S)  # type: ignore[no-any-return]


def install(app: FastAPI) -> None:
    """Add the review routes, the audit trail and the client limit to the app; reads QA_REVIEW_SHARE
    (fails fast if bad)."""
    try:
        app.state.review_share = review_share()
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    from qa_service.web import review as web_review

    app.include_router(router)
    app.include_router(web_review.router)
    # Inside the audit trail, so the trail sees how the address's failures stand once it has counted;
    # outside everything else, so a refused address costs no work.
    app.add_middleware(ClientLimit)
    app.add_middleware(AuditTrail)
