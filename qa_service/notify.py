"""Outgoing webhooks: signed POSTs to one URL per deployment when a call is scored.

Events: `call.scored` once per stored scorecard, `violation.detected` once per violation on it,
`certification.expiring` once per certification and expiry date when it enters the notice window
(services/certification.py, checked by the worker's maintenance), and `policy.impact` once per
finished rescan of a published policy pack (qa_service/rescan.py).
Payloads carry ids, scores, rule references and times only, built field by field from a list:
never transcript or evidence text, never personal data (the receiver fetches the scorecard with
an API key when it needs more).

Headers, as for the incoming telephony webhook:
  X-Signature: sha256=<hex HMAC-SHA256 of the raw body with QA_OUTGOING_WEBHOOK_SECRET>
  X-Event: call.scored | violation.detected | certification.expiring
  X-Delivery-Id: the same for every attempt at one event, so receivers can drop repeats.

Each event is an RQ job on the `<queue>-notify` queue, enqueued by dotted path. A connection
error, a timeout, HTTP 408, 429 or 5xx is retried with exponential backoff (RQ `Retry`); any other
answer that is not 2xx (3xx included: redirects are not followed) fails the job at once. The URL
is checked before every attempt like a recording URL: no private, loopback or link-local
addresses unless QA_ALLOW_PRIVATE_URLS is set, and the POST goes to the address that was judged
(qa_service/outbound.py), not to a later answer of the resolver.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from datetime import UTC, datetime
from hashlib import sha256
from typing import TYPE_CHECKING, Any

from qa_service.errors import QAServiceError, TransientError
from qa_service.queueing import DELIVER_JOB
from qa_service.settings import Settings

if TYPE_CHECKING:
    from redis import Redis
    from rq import Queue

    from qa_service.storage.repository import StoredCall, StoredRescoreRun, StoredScorecard

log = logging.getLogger(__name__)

CALL_SCORED = "call.scored"
VIOLATION_DETECTED = "violation.detected"
# Seconds before each retry: about 10 s, 40 s, 3 min, 11 min, 43 min (the receiver may be redeploying).
RETRY_INTERVALS_S = [10, 40, 160, 640, 2560]
CONNECT_TIMEOUT_S = 5
READ_TIMEOUT_S = 10
JOB_TIMEOUT_S = 60
URL_SETTING = "QA_OUTGOING_WEBHOOK_URL"
# Answers worth trying again; every other non-2xx answer means the request itself is unwelcome.
RETRY_STATUSES = frozenset({408, 429})
_DELIVERY_NS = uuid.UUID("6f1c6a52-5d0e-4a57-9a43-1c1a3f3c2b7e")


class DeliveryFailed(TransientError):
    """A webhook attempt that may succeed later: connection error, timeout, 408, 429 or 5xx."""


class DeliveryRefused(QAServiceError):
    """A webhook the receiver (or the address rule) refused: retrying would not help."""


def queue_name(settings: Settings) -> str:
    """The RQ queue that holds webhook deliveries."""
    return f"{settings.queue_name}-notify"


def sign(secret: str, body: bytes) -> str:
    """The X-Signature header value for a body (the scheme of the incoming webhook)."""
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, sha256).hexdigest()


def delivery_id(call_id: str, version: int, event: str, index: int = 0) -> str:
    """A stable id for one event about one scorecard version: the same on every attempt and re-enqueue."""
    return str(uuid.uuid5(_DELIVERY_NS, f"{call_id}/{version}/{event}/{index}"))


def event_delivery_id(*parts: str) -> str:
    """A stable delivery id for an event that is not about a scorecard (its parts name it)."""
    return str(uuid.uuid5(_DELIVERY_NS, "/".join(parts)))


Event = tuple[str, str, dict[str, Any]]


def events_for(call: StoredCall, stored: StoredScorecard, card: dict[str, Any]) -> list[Event]:
    """The (event, delivery id, payload) triples for a stored scorecard: call.scored, then violations."""
    occurred_at = datetime.now(UTC).isoformat(timespec="seconds")
    call_fields = {
        "call_id": call.id,
        "external_id": call.external_id,
        "agent_id": stored.agent_id,
        "call_date": stored.call_date.isoformat(),
        "scorecard_version": stored.version,
    }
    policies = card.get("policies") or {}
    violations = [v for v in card.get("violations") or [] if isinstance(v, dict)]
    scored: dict[str, Any] = {
        "event": CALL_SCORED, "occurred_at": occurred_at, **call_fields,
        "score": stored.score, "passed": stored.passed, "auto_fail": stored.auto_fail,
        "rubric": {"id": stored.rubric_id, "version": stored.rubric_version},
        "policies": {"id": policies.get("id"), "version": policies.get("version")},
        "violation_count": len(violations),
        "scorecard_url": f"/v1/calls/{call.id}/scorecard?version={stored.version}",
    }
    out: list[Event] = [(CALL_SCORED, delivery_id(call.id, stored.version, CALL_SCORED), scored)]
    for index, v in enumerate(violations):
        # Only the rule's own words: `text` (what was said) and `speaker` stay in the scorecard.
        violation = {
            "id": v.get("id"), "kind": v.get("kind"), "policy_id": v.get("policy_id"),
            "title": v.get("title"), "auto_fail": v.get("auto_fail", False),
            "start": v.get("start"), "end": v.get("end"), "detail": v.get("detail"),
        }
        payload: dict[str, Any] = {"event": VIOLATION_DETECTED, "occurred_at": occurred_at, **call_fields,
                                   "violation": violation}
        out.append((VIOLATION_DETECTED, delivery_id(call.id, stored.version, VIOLATION_DETECTED, index),
                    payload))
    return out


def enqueue_events(queue: Queue, events: list[Event]) -> list[str]:
    """Put one delivery job per event on the queue by dotted path; return the job ids (= delivery ids)."""
    from rq import Retry

    ids = []
    for event, delivery, payload in events:
        # Serialised once here: every attempt sends (and signs) exactly the same bytes.
        body = json.dumps(payload, separators=(",", ":"), sort_keys=True)
        queue.enqueue(DELIVER_JOB, event, body, delivery, job_id=delivery, job_timeout=JOB_TIMEOUT_S,
                      retry=Retry(max=len(RETRY_INTERVALS_S), interval=list(RETRY_INTERVALS_S)),
                      result_ttl=24 * 3600, failure_ttl=7 * 24 * 3600, description=f"webhook {event}")
        ids.append(delivery)
    return ids


def notify_scored(settings: Settings, call: StoredCall, stored: StoredScorecard, card: dict[str, Any],
                  connection: Redis | None = None) -> list[str]:
    """Enqueue the webhooks for a stored scorecard (none when no URL is set); never raises."""
    if not settings.outgoing_webhook_url:
        return []
    try:
        from rq import Queue

        if connection is None:
            connection = _connection(settings)
        return enqueue_events(Queue(queue_name(settings), connection=connection),
                              events_for(call, stored, card))
    except Exception as exc:
        # The scorecard is stored whatever happens here; a lost notification must not fail the call.
        log.error("webhooks for call %s were not queued: %s", call.id,
                  exc if isinstance(exc, QAServiceError) else type(exc).__name__)
        return []


POLICY_IMPACT = "policy.impact"
MAX_LISTED = 1000  # calls named per list in a policy.impact payload; the run's URL has them all


def policy_impact_event(run: StoredRescoreRun, summary: dict[str, Any]) -> Event:
    """The `policy.impact` event of a finished rescan: counts, agents, facts and call ids, no text."""
    def ids(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: c[k] for k in ("call_id", "agent_id", "call_date")} for c in calls[:MAX_LISTED]]

    now_outdated = summary.get("now_outdated") or {}
    payload: dict[str, Any] = {
        "event": POLICY_IMPACT, "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "run_id": run.id, "status": run.status,
        "policies": {"id": run.policy_pack_id, "version": run.policy_pack_version},
        "effective_from": summary.get("effective_from") or {},
        **{k: summary.get(k, 0) for k in ("calls", "score_changed", "flipped_to_fail", "flipped_to_pass")},
        "agents_with_flips": summary.get("agents_with_flips") or {},
        "new_violations": summary.get("new_violations") or {},
        "vanished_violations": summary.get("vanished_violations") or {},
        "flipped_calls": ids(summary.get("flipped_calls") or []),
        "now_outdated": {fact: ids(calls) for fact, calls in now_outdated.items()},
        "truncated": any(len(c) > MAX_LISTED for c in [summary.get("flipped_calls") or [],
                                                       *now_outdated.values()]),
        "report_url": f"/v1/rescores/{run.id}",
    }
    return POLICY_IMPACT, delivery_id(run.id, 0, POLICY_IMPACT), payload


def notify_policy_impact(settings: Settings, run: StoredRescoreRun, summary: dict[str, Any],
                         connection: Redis | None = None) -> list[str]:
    """Enqueue `policy.impact` for a finished rescan (none when no URL is set); never raises."""
    if not settings.outgoing_webhook_url:
        return []
    try:
        from rq import Queue

        if connection is None:
            connection = _connection(settings)
        return enqueue_events(Queue(queue_name(settings), connection=connection),
                              [policy_impact_event(run, summary)])
    except Exception as exc:
        log.error("the policy.impact webhook of run %s was not queued: %s", run.id,
                  exc if isinstance(exc, QAServiceError) else type(exc).__name__)
        return []


def _connection(settings: Settings) -> Redis:
    from redis import Redis
    from rq import get_current_job

    job = get_current_job()
    return job.connection if job is not None else Redis.from_url(settings.redis_url)


def deliver(settings: Settings, event: str, body: str, delivery: str) -> int:
    """POST one signed event for the delivery job; return the HTTP status. Raises DeliveryFailed to be
    retried, DeliveryRefused (with no retries left) when retrying would not help."""
    try:
        return post(settings, event, body.encode("utf-8"), delivery)
    except DeliveryRefused:
        _no_more_retries()
        raise


def post(settings: Settings, event: str, body: bytes, delivery: str) -> int:
    """One delivery attempt: DeliveryFailed when worth retrying, DeliveryRefused when not."""
    import httpx

    from qa_service import outbound
    from qa_service.storage.fetch import check_url

    url, secret = settings.outgoing_webhook_url, settings.outgoing_webhook_secret
    if not url or not secret:
        raise DeliveryRefused("outgoing webhooks are turned off or unsigned now "
                              "(QA_OUTGOING_WEBHOOK_URL / QA_OUTGOING_WEBHOOK_SECRET)")
    headers = {"Content-Type": "application/json", "User-Agent": "qa-service-webhook",
               "X-Event": event, "X-Delivery-Id": delivery, "X-Signature": sign(secret, body)}
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    allow_private = settings.allow_private_urls
    try:
        # The scheme and a literal address first; the connection resolves the host name once, before
        # every attempt, and connects only to the addresses it judged.
        check_url(url, allow_private=allow_private, resolve=False)
        with outbound.client(allow_private=allow_private, label=URL_SETTING, timeout=timeout) as client:
            status = client.post(url, content=body, headers=headers).status_code
    except outbound.UrlRefused:
        raise DeliveryRefused("QA_OUTGOING_WEBHOOK_URL must be an http(s) URL of a public address; "
                              "set QA_ALLOW_PRIVATE_URLS=true for a receiver inside the network") from None
    except httpx.TimeoutException:
        raise DeliveryFailed(f"webhook {event} {delivery}: the receiver timed out") from None
    except httpx.TransportError as exc:
        raise DeliveryFailed(f"webhook {event} {delivery}: {type(exc).__name__}") from None
    if 200 <= status < 300:
        log.info("webhook %s %s delivered (HTTP %d)", event, delivery, status)
        return status
    if status >= 500 or status in RETRY_STATUSES:
        raise DeliveryFailed(f"webhook {event} {delivery}: the receiver answered HTTP {status}")
    raise DeliveryRefused(f"webhook {event} {delivery}: the receiver answered HTTP {status}; not retried")


def _no_more_retries() -> None:
    """Make the running RQ job fail for good (into the failed registry) instead of being retried."""
    from rq import get_current_job

    job = get_current_job()
    if job is not None:
        job.retries_left = 0
