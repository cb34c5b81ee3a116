"""The audit trail: one audit row per request that reads call, scorecard, agent, review, rescore,
audit or key data or changes something, and one per refused request.

Who: the API key or web session behind the request; what: an action name, the call, agent, key or
rules id, and the HTTP status. Refused requests on any route are recorded as `auth_failed` (401)
and `forbidden` (403): the presented key's prefix, never the key, the client address and what was
tried. Refusals are bounded by the client limit (`access/ratelimit.py`): past an address's limit
one row says it is refused, and its later failures are turned away unrecorded. It never records
bodies, so no transcript text or reason reaches the audit log.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs

import anyio

from qa_service.access.keys import PRESENTED_STATE
from qa_service.access.ratelimit import FAILED_AUTH, FAILURES_STATE, FailureCount, client_address
from qa_service.access.session import COOKIE_NAME, read_session, session_secret
from qa_service.auth import KEY_CACHE_TTL_S, Presented, presented
from qa_service.storage.repository import Repository, StoredKey

log = logging.getLogger(__name__)


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
# performance data in them), the sign-in form and sign-out, and the upload page's polling of the status
# of the calls its key uploaded (the page's own read is recorded; the poll repeats it every few
# seconds). A GET without an id in its path names the agent it is filtered to (`?agent_id=`), when it is.
AUDITED: tuple[_Audited, ...] = tuple(_Audited(m, re.compile(p), a, k) for m, p, a, k in (
    ("GET", r"^/v1/calls$", "list_calls", "call"),
    ("GET", rf"^/v1/calls/{_ID}$", "read_call", "call"),
    ("GET", rf"^/v1/calls/{_ID}/scorecard$", "read_scorecard", "call"),
    ("GET", rf"^/v1/calls/{_ID}/scorecard/reviewed$", "read_scorecard", "call"),
    ("GET", rf"^/v1/calls/{_ID}/reviews$", "read_reviews", "call"),
    ("GET", rf"^/v1/calls/{_ID}/audio$", "read_audio", "call"),
    ("GET", rf"^/v1/calls/{_ID}/disputes$", "read_disputes", "call"),
    ("GET", r"^/v1/disputes$", "list_disputes", "call"),
    ("GET", r"^/v1/overturn-rates$", "read_overturn_rates", "agent"),
    ("GET", r"^/disputes$", "list_disputes", "call"),
    ("GET", r"^/v1/agents$", "list_agents", "agent"),
    ("GET", rf"^/v1/agents/{_ID}/(?:scorecards|scorecards\.csv|summary)$", "read_scorecards", "agent"),
    ("GET", r"^/v1/policy-currency$", "read_policy_currency", "agent"),
    ("GET", r"^/v1/review-queue$", "read_review_queue", "call"),
    ("GET", r"^/review-queue$", "read_review_queue", "call"),
    ("GET", r"^/(?:v1/)?search$", "search_calls", "call"),
    ("GET", r"^/v1/rescores$", "list_rescores", "rescore"),
    ("GET", rf"^/v1/rescores/{_ID}$", "read_rescore", "rescore"),
    ("GET", r"^/rescores$", "list_rescores", "rescore"),
    ("GET", rf"^/rescores/{_ID}$", "read_rescore", "rescore"),
    ("GET", r"^/(?:v1/)?calibrations$", "list_calibrations", "calibration"),
    ("GET", rf"^/(?:v1/)?calibrations/{_ID}$", "read_calibration", "calibration"),
    ("GET", rf"^/calibrations/{_ID}/calls/[^/]+$", "read_calibration", "calibration"),
    ("GET", r"^/v1/certifications(?:/expiring|/lapsed)?$", "list_certifications", "agent"),
    ("GET", r"^/v1/training-records$", "list_training", "agent"),
    ("GET", rf"^/v1/policy-packs/{_ID}/versions/[^/]+/untrained$", "read_untrained", "policy_pack"),
    ("GET", r"^/certifications$", "list_certifications", "agent"),
    ("GET", r"^/v1/memberships$", "list_memberships", "agent"),
    ("GET", r"^/v1/teams$", "list_teams", "team"),
    ("GET", r"^/v1/vendors$", "list_vendors", "vendor"),
    ("GET", rf"^/v1/teams/{_ID}/scorecards(?:\.csv)?$", "read_scorecards", "team"),
    ("GET", rf"^/v1/vendors/{_ID}/scorecards(?:\.csv)?$", "read_scorecards", "vendor"),
    ("GET", r"^/teams$", "list_teams", "team"),
    ("GET", r"^/vendors$", "list_vendors", "vendor"),
    ("GET", r"^/v1/audit$", "read_audit", None),
    ("GET", r"^/v1/keys$", "list_keys", "key"),
    ("GET", rf"^/v1/keys/{_ID}$", "read_key", "key"),
    ("GET", r"^/keys$", "list_keys", "key"),
    ("GET", r"^/agents$", "list_agents", "agent"),
    ("GET", rf"^/agents/{_ID}$", "read_scorecards", "agent"),
    ("GET", rf"^/agents/{_ID}/scorecards\.csv$", "read_scorecards", "agent"),
    ("GET", r"^/calls$", "list_calls", "call"),
    ("GET", rf"^/calls/{_ID}$", "read_call", "call"),
    ("GET", rf"^/calls/{_ID}/audio$", "read_audio", "call"),
    ("POST", r"^/sign-in$", "sign_in", "key"),
    ("POST", r"^/v1/calls$", "submit_call", "call"),
    ("POST", r"^/upload$", "submit_call", "call"),
    ("GET", r"^/upload$", "list_uploads", "call"),
    ("POST", r"^/v1/webhooks/telephony$", "submit_call", "call"),
    ("POST", rf"^/v1/calls/{_ID}/retry$", "retry_call", "call"),
    ("POST", rf"^/v1/calls/{_ID}/reviews$", "review", "call"),
    ("POST", rf"^/calls/{_ID}/reviews$", "review", "call"),
    ("POST", rf"^/(?:v1/)?calls/{_ID}/acknowledgement$", "acknowledge", "call"),
    ("POST", rf"^/(?:v1/)?calls/{_ID}/disputes$", "dispute", "call"),
    ("POST", rf"^/(?:v1/)?disputes/{_ID}/resolution$", "resolve_dispute", "dispute"),
    ("POST", r"^/v1/rubrics$", "put_rules", "rubric"),
    ("POST", r"^/v1/policy-packs$", "put_rules", "policy_pack"),
    ("POST", r"^/v1/rescores$", "start_rescore", "rescore"),
    ("POST", r"^/v1/calibrations$", "open_calibration", "calibration"),
    ("PUT", rf"^/v1/calibrations/{_ID}/calls/[^/]+/answers$", "answer_calibration", "calibration"),
    ("POST", rf"^/calibrations/{_ID}/calls/[^/]+$", "answer_calibration", "calibration"),
    ("POST", rf"^/v1/calibrations/{_ID}/close$", "close_calibration", "calibration"),
    ("POST", r"^/v1/certifications$", "import_certifications", None),
    ("POST", r"^/v1/training-records$", "import_training", None),
    ("POST", r"^/v1/memberships$", "import_memberships", None),
    ("POST", r"^/v1/keys$", "create_key", "key"),
    ("POST", rf"^/v1/keys/{_ID}/revoke$", "revoke_key", "key"),
    ("POST", r"^/keys$", "create_key", "key"),
    ("POST", rf"^/keys/{_ID}/revoke$", "revoke_key", "key"),
    # Erasures name no target here: the erasure writes its own receipt rows, and the external id or
    # agent id a request names must not reach the audit log.
    ("DELETE", r"^/v1/calls(?:/[^/]+)?$", "erase", None),
    ("DELETE", r"^/v1/agents/[^/]+/calls$", "erase", None),
))
_LOCATION = re.compile(r"^/v1/(?:calls|rubrics|policy-packs|rescores|keys)/([^/?]+(?:/[^/?]+)?)$")
# Answers that mean nothing was read or changed and nobody should be recorded: a client over its limit.
_NOT_RECORDED = frozenset({429})
# Lists that take `?agent_id=`: a read of one of them filtered so names that agent.
_BY_AGENT = frozenset({"list_calls", "read_policy_currency", "read_review_queue", "list_certifications",
                       "list_training", "list_memberships", "list_disputes", "read_overturn_rates"})


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
    app.state.repo.audit.record(action, key_id=key.id if key else None, key_name=key.name if key else None,
                                role=key.role if key else None, target_kind=target_kind,
                                target_id=target_id, details=details)


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
    scope["app"].state.repo.audit.record(
        "auth_failed" if status == 401 else "forbidden", key_id=stored.id if stored else None,
        key_name=stored.name if stored else None, role=stored.role if stored else None,
        target_kind=target_kind, target_id=target_id, details=details)


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
                    and app.state.repo.sessions.is_live(session.id, stored.id):
                return Presented(session.key_hash, "session")
    return presented(None)


def _stored_key(repo: Repository, who: Presented) -> StoredKey | None:
    """The stored key a request presented, revoked or not."""
    if who.key_hash is None:
        return None
    return repo.key_by_hash(who.key_hash, max_age_s=KEY_CACHE_TTL_S)  # type: ignore[no-any-return]
