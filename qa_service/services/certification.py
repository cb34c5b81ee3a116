"""Certifications and refresher training: records in (CSV or JSON), what they mean for scorecards, and
the lists QA leads act on.

- A rubric or policy pack may name the certification a call needs (`requires_certification`). A call
  whose agent held no certification of that name covering the rubric (or pack) id and valid on the
  call's date (issued <= call date <= expires) gets a `certification_lapsed` finding: the score stays,
  the call goes to the review queue (`CertificationCheck.annotate`, run by the worker after scoring,
  by `qa-service process` and by every rescore).
- An outdated-policy violation on a call dated after the agent completed the refresher for the pack
  is marked `repeat: true` with the training date, when the version trained on taught the fact as it
  stood for the call (the call's own pack version, or another stored version with the same current
  value and date for that fact).
- Expiring within N days (renewed ones left out), lapsed, and the agents not yet trained on a pack
  version; the worker sends a `certification.expiring` webhook once per certification and expiry date.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from qa_service.errors import InputError, NotFound
from qa_service.services.imports import (
    csv_rows,
    day_field,
    json_rows,
    parsed,
    refuse,
    text_field,
)
from qa_service.services.teams import Reach
from qa_service.settings import Settings
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, Listing, Paged, every
from qa_service.storage.repository import Certification, ImportCounts, Repository, Scope, TrainingRecord

log = logging.getLogger(__name__)

FINDING_KIND = "certification_lapsed"
EXPIRING_EVENT = "certification.expiring"
DEFAULT_WITHIN_DAYS = 90
CERTIFICATION_COLUMNS = ("agent_id", "name", "covers", "issued", "expires")
TRAINING_COLUMNS = ("agent_id", "pack_id", "version", "completed")
_COVERS_SPLIT = re.compile(r"[;|\s]+")


# -- reading records -------------------------------------------------------------------------------

def certification_from(fields: dict[str, str]) -> tuple[Certification | None, list[str]]:
    """A certification from text fields (agent_id, name, covers, issued, expires), or the problems."""
    problems: list[str] = []
    agent = text_field(fields.get("agent_id") or "", "agent_id", problems)
    name = text_field(fields.get("name") or "", "name", problems)
    covers = tuple(c for c in _COVERS_SPLIT.split(fields.get("covers") or "") if c)
    if not covers:
        problems.append("covers is empty: name the rubric and/or policy pack ids it covers, separated by ;")
    for c in covers:
        text_field(c, "covers id", problems, ident=True)
    issued = day_field(fields.get("issued") or "", "issued", problems)
    expires = day_field(fields.get("expires") or "", "expires", problems)
    if issued and expires and issued > expires:
        problems.append(f"expires ({expires}) is before issued ({issued})")
    if problems or issued is None or expires is None:
        return None, problems
    return Certification(agent_id=agent, name=name, covers=tuple(dict.fromkeys(covers)), issued_on=issued,
                         expires_on=expires), []


def training_from(fields: dict[str, str],
                  known: set[tuple[str, str]]) -> tuple[TrainingRecord | None, list[str]]:
    """A training record from text fields (agent_id, pack_id, version, completed), or the problems; the
    pack version must be one stored (`known`)."""
    problems: list[str] = []
    agent = text_field(fields.get("agent_id") or "", "agent_id", problems)
    pack = text_field(fields.get("pack_id") or "", "pack_id", problems, ident=True)
    version = text_field(fields.get("version") or "", "version", problems, limit=50)
    completed = day_field(fields.get("completed") or "", "completed", problems)
    if pack and version and not problems and (pack, version) not in known:
        problems.append(f"no policy pack {pack!r} version {version!r} is stored (upload it first)")
    if problems or completed is None:
        return None, problems
    return TrainingRecord(agent_id=agent, pack_id=pack, pack_version=version, completed_on=completed), []


def read_certifications(text: str) -> list[Certification]:
    """Every certification of a CSV file (agent_id,name,covers,issued,expires); ImportRefused naming each
    bad line."""
    what = "certifications file"
    rows, problems = csv_rows(text, CERTIFICATION_COLUMNS, what)
    items = parsed(rows, certification_from, problems)
    seen: dict[tuple[str, str, date], int] = {}
    for line, cert in items:
        key = (cert.agent_id, cert.name, cert.issued_on)
        if key in seen:
            problems.append((line, f"the same agent, name and issue date as line {seen[key]}"))
        seen.setdefault(key, line)
    refuse(what, problems)
    return [cert for _, cert in items]


def _known_packs(store: Repository) -> set[tuple[str, str]]:
    return {(r.id, r.version) for r in store.list_rules("policy_pack")}


def read_training(store: Repository, text: str) -> list[TrainingRecord]:
    """Every training record of a CSV file (agent_id,pack_id,version,completed); ImportRefused naming each
    bad line."""
    what = "training file"
    known = _known_packs(store)
    rows, problems = csv_rows(text, TRAINING_COLUMNS, what)
    items = parsed(rows, lambda fields: training_from(fields, known), problems)
    refuse(what, problems)
    return [record for _, record in items]


def import_certifications(*, store: Repository, items: Sequence[Certification]) -> ImportCounts:
    """Store checked certifications, all or none."""
    return store.certification.import_certifications(items)


def import_training(*, store: Repository, items: Sequence[TrainingRecord]) -> ImportCounts:
    """Store checked training records, all or none."""
    return store.certification.import_training(items)


def check_items(store: Repository, rows: Sequence[dict[str, str]], kind: str) -> list[Any]:
    """Records sent as JSON objects (fields as in the CSV files), checked like file lines: item 1 is the
    first; ImportRefused naming each bad item."""
    parse: Any = certification_from
    columns: tuple[str, ...] = CERTIFICATION_COLUMNS
    if kind == "training":
        known = _known_packs(store)
        parse, columns = (lambda fields: training_from(fields, known)), TRAINING_COLUMNS
    numbered, problems = json_rows(rows, columns)
    items = parsed(numbered, parse, problems)
    refuse(f"{kind} request", problems, unit="item")
    return [record for _, record in items]


# -- scorecards --------------------------------------------------------------------------------------

def _fact_change(fact: Any) -> tuple[Any, ...]:
    """What a refresher teaches about a fact: its current value and since when (a term: its end date)."""
    if getattr(fact, "kind", None) == "number":
        return ("number", fact.current.value, fact.current.since)
    return ("term", getattr(fact, "since", None))


class CertificationCheck:
    """Adds certification findings and repeat marks to scorecards; keeps the records it read, so a rescore
    of many calls reads each agent's records once."""

    def __init__(self, store: Repository):
        self._store = store
        self._certs: dict[str, list[Certification]] = {}
        self._training: dict[tuple[str, str], list[TrainingRecord]] = {}
        self._packs: dict[tuple[str, str], Any] = {}

    def _certifications(self, agent_id: str) -> list[Certification]:
        if agent_id not in self._certs:
            self._certs[agent_id] = self._store.certification.certifications(agent_id=agent_id)
        return self._certs[agent_id]

    def _trained(self, agent_id: str, pack_id: str) -> list[TrainingRecord]:
        key = (agent_id, pack_id)
        if key not in self._training:
            self._training[key] = self._store.certification.training(agent_id=agent_id, pack_id=pack_id)
        return self._training[key]

    def _pack(self, pack_id: str, version: str) -> Any | None:
        key = (pack_id, version)
        if key not in self._packs:
            from qa_service.rules.load import load_policy_pack

            try:
                text = self._store.get_rules("policy_pack", pack_id, version).text
                self._packs[key] = load_policy_pack(text, name=f"policy pack {pack_id} {version}")
            except NotFound:
                self._packs[key] = None
        return self._packs[key]

    def annotate(self, card: dict[str, Any], rubric: Any, policies: Any) -> dict[str, Any]:
        """The scorecard with its `findings` (certification_lapsed) and outdated-policy violations made
        after the agent's refresher marked `repeat`; score and verdict are untouched."""
        agent_id, day = str(card["agent_id"]), date.fromisoformat(str(card["call_date"]))
        findings = [f for f in (card.get("findings") or []) if f.get("kind") != FINDING_KIND]
        for kind, rules in (("rubric", rubric), ("policy_pack", policies)):
            needed = getattr(rules, "requires_certification", None)
            if needed:
                finding = lapsed_finding(self._certifications(agent_id), kind, rules.id, rules.version,
                                         needed, day)
                if finding is not None:
                    findings.append(finding)
        violations = card.get("violations") or []
        if any(v.get("kind") == "outdated_policy" for v in violations):
            violations = self._mark_repeats(agent_id, day, policies, violations)
        return {**card, "findings": findings, "violations": violations}

    def _mark_repeats(self, agent_id: str, day: date, policies: Any,
                      violations: list[dict[str, Any]]) -> list[dict[str, Any]]:
        before = [r for r in self._trained(agent_id, policies.id) if r.completed_on < day]
        facts = {f.id: f for f in policies.facts}
        out = []
        for v in violations:
            v = {k: val for k, val in v.items() if k not in ("repeat", "trained_on", "trained_version")}
            fact = facts.get(v.get("policy_id") or v.get("id"))
            if v.get("kind") == "outdated_policy" and fact is not None:
                taught = [r for r in before if self._teaches(r, policies, fact)]
                if taught:
                    last = max(taught, key=lambda r: r.completed_on)
                    v |= {"repeat": True, "trained_on": last.completed_on.isoformat(),
                          "trained_version": last.pack_version}
            out.append(v)
        return out

    def _teaches(self, record: TrainingRecord, policies: Any, fact: Any) -> bool:
        """Whether the version trained on taught this fact as the call's pack states it."""
        if record.pack_version == policies.version:
            return True
        other = self._pack(record.pack_id, record.pack_version)
        if other is None:
            return False
        same = next((f for f in other.facts if f.id == fact.id), None)
        return same is not None and _fact_change(same) == _fact_change(fact)


def lapsed_finding(certs: Iterable[Certification], kind: str, rules_id: str, version: str, name: str,
                   day: date) -> dict[str, Any] | None:
    """The `certification_lapsed` finding for one requirement on a call's date, or None when a
    certification of that name covering the rules was valid that day."""
    named = [c for c in certs if c.name == name]
    covering = [c for c in named if rules_id in c.covers]
    if any(c.valid_on(day) for c in covering):
        return None
    what = f"{kind.replace('_', ' ')} {rules_id}"
    expired = [c for c in covering if c.expires_on < day]
    later = [c for c in covering if c.issued_on > day]
    if expired:
        last = max(expired, key=lambda c: c.expires_on)
        detail, extra = f"certification {name!r} for {what} expired on {last.expires_on}", {
            "expired_on": last.expires_on.isoformat()}
    elif later:
        first = min(later, key=lambda c: c.issued_on)
        detail = f"certification {name!r} for {what} was issued on {first.issued_on}, after the call"
        extra = {}
    elif named:
        detail, extra = f"the agent's certification {name!r} does not cover {what}", {}
    else:
        detail, extra = f"no certification {name!r} on record for the agent", {}
    return {"id": f"{kind}:{rules_id}:{name}", "kind": FINDING_KIND, "certification": name,
            "required_by": {"kind": kind, "id": rules_id, "version": version},
            "detail": f"{detail} ({what} requires it; call dated {day})", **extra}


# -- lists -------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Expiring:
    """A certification with the days left before it lapses (negative: lapsed that many days ago)."""

    certification: Certification
    days_left: int


def expiring(*, store: Repository, today: date, within_days: int = DEFAULT_WITHIN_DAYS,
             scope: Scope | None = None, cursor: str | None = None,
             page_size: int = DEFAULT_PAGE_SIZE) -> Paged[Expiring]:
    """A page of the certifications expiring from today to `within_days` from now, soonest first; one
    renewed already (the agent holds the same name expiring later) is left out."""
    if within_days < 0:
        raise InputError("within_days must be 0 or more")
    return _days_left(store.certification.unrenewed_page(
        today, today + timedelta(days=within_days), scope, cursor, page_size), today)


def lapsed(*, store: Repository, today: date, scope: Scope | None = None, cursor: str | None = None,
           page_size: int = DEFAULT_PAGE_SIZE) -> Paged[Expiring]:
    """A page of the certifications that have expired and were not renewed, most recently lapsed first."""
    return _days_left(store.certification.unrenewed_page(
        None, today - timedelta(days=1), scope, cursor, page_size, latest_first=True), today)


def _days_left(found: Paged[Certification], today: date) -> Paged[Expiring]:
    return Paged([Expiring(c, (c.expires_on - today).days) for c in found.items], found.page_size,
                 found.next_cursor)


# The agents not yet trained on a pack version, by agent id (worked out in Python from three reads).
UNTRAINED: Listing[dict[str, Any]] = Listing("untrained", (str,), lambda a: (a["agent_id"],))


def untrained(*, store: Repository, pack_id: str, version: str, scope: Scope | None = None,
              cursor: str | None = None, page_size: int = DEFAULT_PAGE_SIZE) -> Paged[dict[str, Any]]:
    """A page of the agents (inside the scope) who took calls under this policy pack (any version) or hold
    a certification covering it, and have no training record for this version, by agent id; NotFound
    for a version not stored."""
    store.get_rules("policy_pack", pack_id, version)
    with_calls = store.certification.pack_agents(pack_id)
    certified = {c.agent_id for c in store.certification.certifications() if pack_id in c.covers}
    trained = {r.agent_id for r in store.certification.training(pack_id=pack_id, pack_version=version)}
    inside = Reach(store, scope).agent
    agents = [{"agent_id": agent, "took_calls": agent in with_calls, "certified": agent in certified}
              for agent in (with_calls | certified) - trained if inside(agent)]
    return UNTRAINED.listed(agents, cursor, page_size)


# -- the expiry webhook ------------------------------------------------------------------------------

def expiring_event(cert: Certification, today: date) -> tuple[str, str, dict[str, Any]]:
    """The (event, delivery id, payload) of a certification.expiring webhook: ids and dates only."""
    from qa_service.notify import event_delivery_id

    payload = {
        "event": EXPIRING_EVENT, "occurred_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "certification_id": cert.id, "agent_id": cert.agent_id, "name": cert.name,
        "covers": list(cert.covers),
        "issued_on": cert.issued_on.isoformat(), "expires_on": cert.expires_on.isoformat(),
        "days_left": (cert.expires_on - today).days,
    }
    return EXPIRING_EVENT, event_delivery_id("certification", cert.id, cert.expires_on.isoformat(),
                                             EXPIRING_EVENT), payload


def send_expiry_notices(*, store: Repository, settings: Settings, queue: Any,
                        today: date | None = None) -> list[str]:
    """Queue a certification.expiring webhook for each certification that has entered the window
    (QA_CERTIFICATION_NOTICE_DAYS) and has had none for its expiry date; returns the delivery ids. Without
    an outgoing webhook URL nothing is sent or marked (the notices go once one is set)."""
    from qa_service.notify import enqueue_events

    if not settings.outgoing_webhook_url:
        return []
    today = today or datetime.now(UTC).date()
    sent = []
    window = settings.certification_notice_days
    for item in every(lambda cursor: expiring(store=store, today=today, within_days=window, cursor=cursor,
                                              page_size=MAX_PAGE_SIZE)):
        cert = item.certification
        if cert.notified_expiry == cert.expires_on:
            continue
        if not store.certification.claim_expiry_notice(cert.id, cert.expires_on):
            continue  # another worker sent it meanwhile
        try:
            sent.extend(enqueue_events(queue, [expiring_event(cert, today)]))
        except Exception:
            store.certification.release_expiry_notice(cert.id)  # the next check tries again
            raise
    if sent:
        log.info("certification expiry notices queued: %d", len(sent))
    return sent
