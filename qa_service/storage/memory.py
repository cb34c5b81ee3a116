"""The storage protocols kept in memory, for the services' unit tests (no database, no migrations).

`MemoryRepository` holds calls, scorecards, rules, rescore runs and keys as its methods and reviews,
the audit log, web sessions, certifications and teams as its parts, with the errors the SQL implementation
raises. The read-side views are SQL queries over the latest scorecards and have no twin here (`views` raises).
One process, one thread: nothing here is shared between processes.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, NoReturn

from qa_service.calibration import CalibrationSession, Sheet
from qa_service.errors import Conflict, NotFound
from qa_service.review import Review, outdated_count
from qa_service.storage import listings
from qa_service.storage.calibration import SessionClosed
from qa_service.storage.erasure import (
    RECEIPT_ACTION,
    RECEIPT_KIND,
    has_transcript,
    receipt_details,
    summary_without,
    without_transcript,
)
from qa_service.storage.paging import DEFAULT_PAGE_SIZE, Paged
from qa_service.storage.repository import (
    Acknowledgement,
    AgentSummary,
    AlreadyResolved,
    Certification,
    Dispute,
    DisputeOpen,
    DisputeStatus,
    ErasureNote,
    ImportCounts,
    Membership,
    NewCall,
    NewRescoreRun,
    Repository,
    RescoreOverlap,
    RulesKind,
    Scope,
    ScorecardText,
    StoredCall,
    StoredKey,
    StoredRescoreRun,
    StoredRules,
    StoredScorecard,
    TrainingRecord,
    canonical_uuid,
)
from qa_service.storage.review import DETAILS_MAX, UUID_TARGETS, AuditEntry, QueueCandidate, QueueKey
from qa_service.storage.views import ResponseRate


def _now() -> datetime:
    return datetime.now(UTC)


def _mean(values: Sequence[float]) -> float | None:
    return round(sum(values) / len(values), 1) if values else None


def _in_range(day: date, date_from: date | None, date_to: date | None) -> bool:
    return (date_from is None or day >= date_from) and (date_to is None or day <= date_to)


class MemoryReviews:
    """`ReviewStore` in memory."""

    def __init__(self, repo: MemoryRepository):
        self._repo = repo
        self.rows: list[Review] = []

    def add(self, review: Review) -> Review:
        """Store a review; NotFound when its call does not exist."""
        self._repo.get_call(review.call_id)
        stored = dataclasses.replace(review, id=len(self.rows) + 1)
        self.rows.append(stored)
        return stored

    def set_reviewed(self, call_id: str, version: int, review: dict[str, Any]) -> None:
        """Keep the reviewed verdict on the scorecard version (here: its provisional flag)."""
        self._repo.reviewed[(call_id, version)] = review

    def for_call(self, call_id: str) -> list[Review]:
        """Every review of a call, oldest first."""
        return [r for r in self.rows if r.call_id == call_id]

    def reviewed_call_ids(self, call_ids: list[str]) -> set[str]:
        """Which of these calls have at least one review."""
        return {r.call_id for r in self.rows} & set(call_ids)

    def queue_candidates(self, agent_id: str | None = None, date_from: date | None = None,
                         date_to: date | None = None,
                         after: QueueKey | None = None) -> Iterator[QueueCandidate]:
        """The latest scorecard of each call not yet reviewed, with an open dispute, or awaiting a second
        reviewer, oldest first (call date, time received, call id), strictly after the `after` key."""
        reviewed = {r.call_id for r in self.rows}
        disputes: dict[str, int] = {}
        for d in self._repo.disputes.listing(status="open", limit=10**9):
            disputes[d.call_id] = disputes.get(d.call_id, 0) + 1

        def second(c: StoredScorecard) -> bool:
            dual = self._repo.reviewed.get((c.call_id, c.version), {}).get("dual_review") or {}
            return bool(dual.get("pending"))

        latest = [c for c in self._repo.latest_scorecards(date_from, date_to)
                  if (c.call_id not in reviewed or c.call_id in disputes or second(c))
                  and (agent_id is None or c.agent_id == agent_id)]
        received = {c.call_id: self._repo.get_call(c.call_id).created_at for c in latest}
        for c in sorted(latest, key=lambda c: (c.call_date, received[c.call_id], c.call_id)):
            if after is not None and (c.call_date, received[c.call_id], c.call_id) <= after:
                continue
            review = self._repo.reviewed.get((c.call_id, c.version), {})
            provisional = bool(review.get("reviewed_provisional", c.data.get("provisional", False)))
            yield QueueCandidate(call_id=c.call_id, agent_id=c.agent_id, call_date=c.call_date,
                                 received_at=received[c.call_id],
                                 version=c.version, score=c.score, passed=c.passed, auto_fail=c.auto_fail,
                                 to_check=len(c.data.get("to_check") or []), provisional=provisional,
                                 outdated=outdated_count(c.data),
                                 findings=len(c.data.get("findings") or []),
                                 disputes=disputes.get(c.call_id, 0), second_review=second(c))


class MemoryDisputes:
    """`DisputeStore` in memory."""

    def __init__(self, repo: MemoryRepository):
        self._repo = repo
        self.acks: list[Acknowledgement] = []
        self.rows: list[Dispute] = []

    def acknowledge(self, ack: Acknowledgement) -> tuple[Acknowledgement, bool]:
        """Store an acknowledgement of a scorecard version; the stored one and False when there is one."""
        for a in self.acks:
            if (a.call_id, a.scorecard_version) == (ack.call_id, ack.scorecard_version):
                return a, False
        self.acks.append(ack)
        return ack, True

    def acknowledgements(self, call_id: str) -> list[Acknowledgement]:
        """A call's acknowledgements, oldest version first."""
        return sorted((a for a in self.acks if a.call_id == call_id), key=lambda a: a.scorecard_version)

    def add(self, dispute: Dispute) -> Dispute:
        """Store an open dispute; DisputeOpen when the target already has one open."""
        self._repo.get_call(dispute.call_id)
        if any((d.call_id, d.target_kind, d.target_id, d.status) ==
               (dispute.call_id, dispute.target_kind, dispute.target_id, "open") for d in self.rows):
            raise DisputeOpen(f"this {dispute.target_kind} already has an open dispute")
        stored = dataclasses.replace(dispute, id=len(self.rows) + 1)
        self.rows.append(stored)
        return stored

    def get(self, dispute_id: int) -> Dispute:
        """The dispute with this id, or NotFound."""
        found = next((d for d in self.rows if d.id == dispute_id), None)
        if found is None:
            raise NotFound(f"no dispute with id {dispute_id}")
        return found

    def resolve(self, dispute_id: int, *, outcome: DisputeStatus, reason: str, key_id: str, key_name: str,
                at: datetime, review: Review | None = None) -> Dispute:
        """Resolve an open dispute (and store the overturn's review); AlreadyResolved when it is not open."""
        dispute = self.get(dispute_id)
        if dispute.status != "open":
            raise AlreadyResolved(f"dispute {dispute_id} is already resolved")
        review_id = self._repo.reviews.add(review).id if review is not None else None
        resolved = dataclasses.replace(dispute, status=outcome, resolution_reason=reason,
                                       resolved_by_key_id=key_id, resolved_by_name=key_name, resolved_at=at,
                                       review_id=review_id)
        self.rows[self.rows.index(dispute)] = resolved
        return resolved

    def for_call(self, call_id: str) -> list[Dispute]:
        """A call's disputes, oldest first."""
        return [d for d in self.rows if d.call_id == call_id]

    def listing(self, *, status: str | None = None, agent_id: str | None = None, scope: Scope | None = None,
                after: tuple[datetime, int] | None = None, limit: int = 500) -> list[Dispute]:
        """Disputes (with a status, of one agent, inside a scope), oldest first by (created time, id), from
        the one after the key `after` when given."""
        rows = sorted((d for d in self.rows if status in (None, d.status) and agent_id in (None, d.agent_id)
                       and (scope is None or self._inside(scope, d))), key=lambda d: (d.created_at, d.id))
        return [d for d in rows if after is None or (d.created_at, d.id) > after][:limit]

    def _inside(self, scope: Scope, d: Dispute) -> bool:
        if scope.agent is not None:
            return d.agent_id == scope.agent
        return any(m.on(d.call_date) for m in self._repo.teams.memberships(agent_id=d.agent_id, scope=scope))


class MemoryAudit:
    """`AuditLog` in memory."""

    def __init__(self) -> None:
        self.rows: list[AuditEntry] = []

    def record(self, action: str, *, key_id: str | None = None, key_name: str | None = None,
               role: str | None = None, target_kind: str | None = None, target_id: str | None = None,
               details: str | None = None, at: datetime | None = None) -> None:
        """Append one row (details cut to a short line, UUID targets in their usual form)."""
        if target_id and target_kind in UUID_TARGETS:
            target_id = canonical_uuid(target_id) or target_id
        self.rows.append(AuditEntry(
            id=len(self.rows) + 1, at=at or _now(), key_id=key_id, key_name=key_name, role=role,
            action=action, target_kind=target_kind, target_id=target_id[:200] if target_id else target_id,
            details=details[:DETAILS_MAX] if details else details))

    def entries(self, *, target_id: str | None = None, key_id: str | None = None, action: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                after: tuple[datetime, int] | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Rows, newest first by (time, id), filtered by target, key, action and time range, from the row
        after the key `after` when given."""
        targets = {target_id, canonical_uuid(target_id) or target_id} if target_id is not None else None
        rows = [r for r in self.rows
                if (targets is None or r.target_id in targets)
                and (key_id is None or r.key_id == (canonical_uuid(key_id) or key_id))
                and (action is None or r.action == action)
                and (since is None or r.at >= since) and (until is None or r.at <= until)
                and (after is None or (r.at, r.id) < after)]
        return sorted(rows, key=lambda r: (r.at, r.id), reverse=True)[:limit]


class MemorySessions:
    """`SessionStore` in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, tuple[str, datetime]] = {}

    def start(self, session_id: str, key_id: str, max_age_s: int, now: datetime | None = None) -> None:
        """Keep a new session of this key for `max_age_s` seconds."""
        self.rows[session_id] = (key_id, (now or _now()) + timedelta(seconds=max_age_s))

    def is_live(self, session_id: str, key_id: str, now: datetime | None = None) -> bool:
        """Whether this session of this key was started, has not expired and was not ended."""
        found = self.rows.get(session_id)
        return found is not None and found[0] == key_id and found[1] > (now or _now())

    def end(self, session_id: str) -> None:
        """Forget a session."""
        self.rows.pop(session_id, None)


class MemoryCertification:
    """`CertificationStore` in memory."""

    def __init__(self, repo: MemoryRepository):
        self._repo = repo
        self.certs: dict[tuple[str, str, date], Certification] = {}
        self.records: dict[tuple[str, str, str], TrainingRecord] = {}

    def import_certifications(self, items: Sequence[Certification]) -> ImportCounts:
        """Store certifications (one per agent, name and issue date; a changed one replaces the stored)."""
        added = updated = unchanged = 0
        for item in items:
            key = (item.agent_id, item.name, item.issued_on)
            stored = self.certs.get(key)
            if stored is None:
                self.certs[key] = dataclasses.replace(item, id=str(uuid.uuid4()), notified_expiry=None)
                added += 1
            elif (stored.covers, stored.expires_on) == (tuple(item.covers), item.expires_on):
                unchanged += 1
            else:
                self.certs[key] = dataclasses.replace(stored, covers=tuple(item.covers),
                                                      expires_on=item.expires_on)
                updated += 1
        return ImportCounts(added=added, updated=updated, unchanged=unchanged)

    def certifications(self, agent_id: str | None = None, expires_from: date | None = None,
                       expires_to: date | None = None) -> list[Certification]:
        """Certifications (one agent's, expiring in a date range), by agent, name and issue date."""
        return [c for _, c in sorted(self.certs.items())
                if (agent_id is None or c.agent_id == agent_id)
                and _in_range(c.expires_on, expires_from, expires_to)]

    def _by_id(self, certification_id: str) -> tuple[tuple[str, str, date], Certification] | None:
        return next(((k, c) for k, c in self.certs.items() if c.id == certification_id), None)

    def claim_expiry_notice(self, certification_id: str, expires_on: date) -> bool:
        """Mark the notice for this expiry date sent; False when it already was."""
        found = self._by_id(certification_id)
        if found is None or found[1].expires_on != expires_on or found[1].notified_expiry == expires_on:
            return False
        self.certs[found[0]] = dataclasses.replace(found[1], notified_expiry=expires_on)
        return True

    def release_expiry_notice(self, certification_id: str) -> None:
        """Forget a claimed notice."""
        found = self._by_id(certification_id)
        if found is not None:
            self.certs[found[0]] = dataclasses.replace(found[1], notified_expiry=None)

    def import_training(self, items: Sequence[TrainingRecord]) -> ImportCounts:
        """Store training records (the first completion date of a version stays)."""
        added = unchanged = 0
        for item in items:
            key = (item.agent_id, item.pack_id, item.pack_version)
            if key in self.records:
                unchanged += 1
            else:
                self.records[key] = item
                added += 1
        return ImportCounts(added=added, unchanged=unchanged)

    def training(self, agent_id: str | None = None, pack_id: str | None = None,
                 pack_version: str | None = None) -> list[TrainingRecord]:
        """Training records, by agent, pack, version."""
        return [r for _, r in sorted(self.records.items())
                if (agent_id is None or r.agent_id == agent_id) and (pack_id is None or r.pack_id == pack_id)
                and (pack_version is None or r.pack_version == pack_version)]

    def pack_agents(self, pack_id: str) -> set[str]:
        """The agents of every stored call scored under any version of this policy pack."""
        return {c.agent_id for c in self._repo.calls.values() if c.policy_pack_id == pack_id}

    def certification_page(self, agent_id: str | None = None, scope: Scope | None = None,
                           cursor: str | None = None,
                           page_size: int = DEFAULT_PAGE_SIZE) -> Paged[Certification]:
        """One page of certifications (one agent's; of the agents a scope reaches), by agent, name and
        issue date."""
        found = [c for c in self.certifications(agent_id) if self._repo.teams.reached(c.agent_id, scope)]
        return listings.CERTIFICATIONS.listed(found, cursor, page_size)

    def unrenewed_page(self, expires_from: date | None = None, expires_to: date | None = None,
                       scope: Scope | None = None, cursor: str | None = None,
                       page_size: int = DEFAULT_PAGE_SIZE, *,
                       latest_first: bool = False) -> Paged[Certification]:
        """One page of the unrenewed certifications expiring in a date range, soonest first (most recent
        first with latest_first)."""
        every = self.certs.values()
        found = [c for c in every if _in_range(c.expires_on, expires_from, expires_to)
                 and self._repo.teams.reached(c.agent_id, scope)
                 and not any(o.agent_id == c.agent_id and o.name == c.name and o.expires_on > c.expires_on
                             for o in every)]
        listing = listings.LAPSED if latest_first else listings.EXPIRING
        return listing.listed(found, cursor, page_size, descending=latest_first)

    def training_page(self, agent_id: str | None = None, pack_id: str | None = None,
                      pack_version: str | None = None, scope: Scope | None = None, cursor: str | None = None,
                      page_size: int = DEFAULT_PAGE_SIZE) -> Paged[TrainingRecord]:
        """One page of training records (filtered; of the agents a scope reaches), by agent, pack, version."""
        found = [r for r in self.training(agent_id, pack_id, pack_version)
                 if self._repo.teams.reached(r.agent_id, scope)]
        return listings.TRAINING.listed(found, cursor, page_size)


class MemoryTeams:
    """`TeamStore` in memory."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, date], Membership] = {}

    def put_memberships(self, items: Sequence[Membership]) -> ImportCounts:
        """Store memberships (one per agent and start date; a changed one replaces the stored)."""
        added = updated = unchanged = 0
        for item in items:
            stored = self.rows.get((item.agent_id, item.since))
            if stored is None:
                added += 1
            elif stored == item:
                unchanged += 1
                continue
            else:
                updated += 1
            self.rows[(item.agent_id, item.since)] = item
        return ImportCounts(added=added, updated=updated, unchanged=unchanged)

    def memberships(self, agent_id: str | None = None, scope: Scope | None = None) -> list[Membership]:
        """Memberships (one agent's, those inside a scope), by agent and start date."""
        return [m for _, m in sorted(self.rows.items())
                if (agent_id is None or m.agent_id == agent_id)
                and (scope is None or (scope.allows(m.team, m.vendor)
                                       and scope.agent in (None, m.agent_id)))]

    def membership_page(self, agent_id: str | None = None, scope: Scope | None = None,
                        cursor: str | None = None, page_size: int = DEFAULT_PAGE_SIZE) -> Paged[Membership]:
        """One page of memberships (one agent's, those inside a scope), by agent and start date."""
        return listings.MEMBERSHIPS.listed(self.memberships(agent_id, scope), cursor, page_size)

    def reached(self, agent_id: str, scope: Scope | None) -> bool:
        """Whether the agent is the scope's agent or was in a membership inside the scope on some day."""
        if scope is None or scope.agent is not None:
            return scope is None or agent_id == scope.agent
        return any(m.agent_id == agent_id and scope.allows(m.team, m.vendor) for m in self.rows.values())

    def teams_and_vendors(self) -> tuple[list[str], list[str]]:
        """Every team and every vendor named by a membership, sorted."""
        return (sorted({m.team for m in self.rows.values()}), sorted({m.vendor for m in self.rows.values()}))


class MemoryCalibration:
    """`CalibrationStore` in memory."""

    def __init__(self) -> None:
        self.rows: dict[str, CalibrationSession] = {}
        self.sheet_rows: dict[tuple[str, str, str], Sheet] = {}

    def add_session(self, session: CalibrationSession) -> CalibrationSession:
        """Store a new session with its calls and reviewers."""
        if session.id in self.rows:
            raise Conflict(f"calibration session {session.id} already exists")
        self.rows[session.id] = session
        return session

    def get_session(self, session_id: str) -> CalibrationSession:
        """The session with this id, or NotFound."""
        found = self.rows.get(canonical_uuid(session_id) or session_id)
        if found is None:
            raise NotFound(f"no calibration session with id {session_id!r}")
        return found

    def list_sessions(self, after: tuple[datetime, str] | None = None,
                      limit: int = 100) -> list[CalibrationSession]:
        """Sessions, newest first by (created time, id), from the one after the key `after` when given."""
        rows = sorted(self.rows.values(), key=lambda x: (x.created_at, x.id), reverse=True)
        return [x for x in rows if after is None or (x.created_at, x.id) < after][:limit]

    def put_sheet(self, sheet: Sheet) -> Sheet:
        """Store a sheet (replacing an earlier one); SessionClosed when the session is closed."""
        if self.get_session(sheet.session_id).status != "open":
            raise SessionClosed("the calibration session is closed: its answers are revealed")
        self.sheet_rows[(sheet.session_id, sheet.call_id, sheet.reviewer_key_id)] = sheet
        return sheet

    def sheets(self, session_id: str, reviewer_key_id: str | None = None) -> list[Sheet]:
        """The sheets of a session (one reviewer's only, when named), by call and reviewer."""
        return [v for k, v in sorted(self.sheet_rows.items())
                if k[0] == session_id and (reviewer_key_id is None or k[2] == reviewer_key_id)]

    def close_session(self, session_id: str, by: str, at: datetime) -> CalibrationSession:
        """Close an open session (a closed one stays as it was)."""
        session = self.get_session(session_id)
        if session.status == "open":
            self.rows[session.id] = dataclasses.replace(session, status="closed", closed_at=at,
                                                        closed_by_name=by)
        return self.rows[session.id]

    def forget_call(self, call_id: str) -> None:
        """Take an erased call out of every session, with its sheets."""
        for sid, session in self.rows.items():
            self.rows[sid] = dataclasses.replace(session, calls=tuple(c for c in session.calls
                                                                      if c.call_id != call_id))
        self.sheet_rows = {k: v for k, v in self.sheet_rows.items() if k[1] != call_id}


class MemoryRepository:
    """`Repository` in memory (but for the read-side views)."""

    def __init__(self) -> None:
        self.calls: dict[str, StoredCall] = {}
        self.scorecards: dict[str, list[StoredScorecard]] = {}
        self.reviewed: dict[tuple[str, int], dict[str, Any]] = {}
        self.rules: dict[tuple[RulesKind, str, str], StoredRules] = {}
        self.runs: dict[str, StoredRescoreRun] = {}
        self.keys: dict[str, StoredKey] = {}
        self.reviews = MemoryReviews(self)
        self.disputes = MemoryDisputes(self)
        self.audit = MemoryAudit()
        self.sessions = MemorySessions()
        self.certification = MemoryCertification(self)
        self.teams = MemoryTeams()
        self.calibration = MemoryCalibration()

    @property
    def views(self) -> NoReturn:
        """The read-side views are SQL queries: use the SQL repository for them."""
        raise NotImplementedError("the read-side views need the SQL repository")

    @property
    def history(self) -> NoReturn:
        """The call page's history reads the SQL repository."""
        raise NotImplementedError("the scorecard history needs the SQL repository")

    @property
    def uploads(self) -> NoReturn:
        """The upload page reads the SQL repository."""
        raise NotImplementedError("the upload listing needs the SQL repository")

    @property
    def search(self) -> NoReturn:
        """The transcript search is the databases' own full-text search: use the SQL repository for it."""
        raise NotImplementedError("the transcript search needs the SQL repository")

    # -- calls ---------------------------------------------------------------------------------

    def add_call(self, call: NewCall) -> tuple[StoredCall, bool]:
        """Store a new call; with a known external id return the existing call and False instead."""
        if call.external_id is not None:
            existing = self.find_call(call.external_id)
            if existing is not None:
                return existing, False
        if call.id in self.calls:
            raise Conflict(f"call {call.id} already exists")
        now = _now()
        self.calls[call.id] = StoredCall(
            id=call.id, external_id=call.external_id, agent_id=call.agent_id, call_date=call.call_date,
            status="queued", failure_reason=None, rubric_id=call.rubric_id,
            rubric_version=call.rubric_version, policy_pack_id=call.policy_pack_id,
            policy_pack_version=call.policy_pack_version, channels=call.channels, source=call.source,
            input_kind=call.input_kind, input_path=call.input_path, input_url=call.input_url, attempts=0,
            created_at=now, updated_at=now, submitted_by_key_id=call.submitted_by_key_id,
            channel=call.channel)
        return self.calls[call.id], True

    def get_call(self, call_id: str) -> StoredCall:
        """A call by id; NotFound when there is none."""
        found = self.calls.get(canonical_uuid(call_id) or call_id)
        if found is None:
            raise NotFound(f"no call with id {call_id!r}")
        return found

    def find_call(self, external_id: str) -> StoredCall | None:
        """A call by the sender's own id."""
        return next((c for c in self.calls.values() if c.external_id == external_id), None)

    def external_ids(self, call_ids: Iterable[str]) -> dict[str, str | None]:
        """The external id of each of these calls that exists."""
        found = (self.calls.get(canonical_uuid(c) or c) for c in call_ids)
        return {c.id: c.external_id for c in found if c is not None}

    def calls_with_status(self, statuses: Iterable[str]) -> list[StoredCall]:
        """Calls in these statuses."""
        wanted = set(statuses)
        return [c for c in self.calls.values() if c.status in wanted]

    def calls_with_plain_input(self, statuses: Iterable[str]) -> list[StoredCall]:
        """Calls in these statuses whose input is stored and not sealed."""
        wanted = set(statuses)
        return [c for c in self.calls.values()
                if c.status in wanted and c.input_path and not c.input_path.endswith(".sealed")]

    def failed_calls_with_input(self, failed_before: datetime) -> list[StoredCall]:
        """Failed calls that still hold an input, failed before this time."""
        return [c for c in self.calls.values()
                if c.status == "failed" and c.input_path and c.updated_at < failed_before]

    def _update(self, call_id: str, **values: Any) -> StoredCall:
        call = self.get_call(call_id)
        self.calls[call.id] = dataclasses.replace(call, updated_at=_now(), **values)
        return self.calls[call.id]

    def start_call(self, call_id: str) -> StoredCall:
        """Mark a call processing and count the attempt."""
        return self._update(call_id, status="processing", failure_reason=None,
                            attempts=self.get_call(call_id).attempts + 1)

    def requeue_call(self, call_id: str) -> StoredCall:
        """Put a call back to queued, clearing any failure reason."""
        return self._update(call_id, status="queued", failure_reason=None)

    def fail_call(self, call_id: str, reason: str) -> StoredCall:
        """Mark a call failed with a reason."""
        return self._update(call_id, status="failed", failure_reason=reason[:2000])

    def set_input_path(self, call_id: str, path: str | None) -> None:
        """Record where the call's input is now (None: deleted)."""
        self._update(call_id, input_path=path)

    def touch_call(self, call_id: str) -> None:
        """Record that a worker is still on the call."""
        self._update(call_id)

    # -- scorecards ----------------------------------------------------------------------------

    def finish_call(self, call_id: str, scorecard: dict[str, Any]) -> StoredScorecard:
        """Store a new scorecard version and mark the call done."""
        call = self.get_call(call_id)
        versions = self.scorecards.setdefault(call.id, [])
        rubric = scorecard.get("rubric") or {}
        stored = StoredScorecard(
            call_id=call.id, version=len(versions) + 1, agent_id=call.agent_id, call_date=call.call_date,
            score=float(scorecard["score"]), passed=bool(scorecard["passed"]),
            auto_fail=bool(scorecard.get("auto_fail", False)),
            rubric_id=str(rubric.get("id", call.rubric_id)),
            rubric_version=str(rubric.get("version", call.rubric_version)),
            rubric_sha256=str(rubric.get("sha256", "")), created_at=_now(), data=scorecard)
        versions.append(stored)
        self._update(call.id, status="done", failure_reason=None)
        return stored

    def get_scorecard(self, call_id: str, version: int | None = None) -> StoredScorecard:
        """One version of a call's scorecard (None: the latest); NotFound when there is none."""
        versions = self.scorecards.get(self.get_call(call_id).id) or []
        found = versions[-1] if versions and version is None else next(
            (v for v in versions if v.version == version), None)
        if found is None:
            raise NotFound(f"call {call_id} has no scorecard" + (f" version {version}" if version else ""))
        return found

    def scorecard_text(self, call_id: str, version: int | None = None) -> ScorecardText:
        """The call's status and one version of its scorecard as JSON text."""
        call = self.get_call(call_id)
        try:
            card = self.get_scorecard(call.id, version)
        except NotFound:
            return ScorecardText(call.id, call.status, call.failure_reason, None, None)
        return ScorecardText(call.id, call.status, call.failure_reason, card.version, json.dumps(card.data))

    def agent_scorecards(self, agent_id: str, date_from: date | None = None, date_to: date | None = None,
                         limit: int = 100) -> tuple[list[StoredScorecard], AgentSummary]:
        """An agent's latest scorecard per call in a date range, newest first, and their aggregate."""
        rows = sorted((c for c in self.latest_scorecards(date_from, date_to) if c.agent_id == agent_id),
                      key=lambda c: (c.call_date, c.created_at), reverse=True)
        count = len(rows)
        verdicts = [self._verdict(c) for c in rows]
        summary = AgentSummary(
            count=count, mean_score=sum(v[0] for v in verdicts) / count if count else None,
            pass_rate=sum(v[1] for v in verdicts) / count if count else None,
            auto_fail_count=sum(v[2] for v in verdicts), response_times=self._response_rates(rows))
        return rows[:limit], summary

    def _verdict(self, card: StoredScorecard) -> tuple[float, bool, bool]:
        """Score, pass and auto-fail after reviews where a reviewer changed something (as the SQL
        repository keeps them in the reviewed columns), else the automatic ones."""
        review = self.reviewed.get((card.call_id, card.version)) or {}
        changed = any(i["reviewed"] != i["automatic"] for i in review.get("items") or []
                      if i["target"] != "verdict")
        if not changed:
            return card.score, card.passed, card.auto_fail
        passed = review.get("reviewed_passed")
        return (float(review.get("reviewed_score", card.score)),
                card.passed if passed is None else bool(passed),
                bool(review.get("reviewed_auto_fail", card.auto_fail)))

    def _response_rates(self, cards: Sequence[StoredScorecard]) -> tuple[ResponseRate, ...]:
        """What `Views.response_rates` answers, over these scorecards (the latest per call)."""
        groups: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        for card in cards:
            overrides = {r.target_id: r.action for r in self.reviews.for_call(card.call_id)
                         if r.target_kind == "criterion"}  # oldest first: the last one stays
            for c in card.data.get("criteria") or []:
                response, action = c.get("response"), overrides.get(str(c.get("id")))
                overridden = action in ("override_pass", "override_fail")
                if not response or not (c.get("applicable", True) or overridden):
                    continue
                key = (card.rubric_id, str(c["id"]), str(response["measure"]),
                       str(response.get("channel", "")))
                group = groups.setdefault(key, {"title": c.get("title"), "n": 0, "within": 0, "waits": []})
                group["n"] += 1
                group["within"] += action == "override_pass" or (not overridden and bool(c.get("passed")))
                if response.get("wait_s") is not None:
                    group["waits"].append(float(response["wait_s"]))
        return tuple(ResponseRate(rubric_id=r, id=i, title=str(g["title"] or i), measure=m, channel=ch,
                                  conversations=g["n"], within=int(g["within"]),
                                  mean_wait_s=_mean(g["waits"]), longest_wait_s=max(g["waits"], default=None))
                     for (r, i, m, ch), g in sorted(groups.items()))

    def latest_scorecards(self, date_from: date | None = None, date_to: date | None = None,
                          rubric_id: str | None = None, batch: int = 500) -> Iterator[StoredScorecard]:
        """Every call's latest scorecard in a date range (optionally for one rubric id), oldest first."""
        latest = [v[-1] for v in self.scorecards.values()
                  if v and _in_range(v[-1].call_date, date_from, date_to)
                  and (rubric_id is None or v[-1].rubric_id == rubric_id)]
        return iter(sorted(latest, key=lambda c: (c.call_date, c.call_id)))

    def add_scorecard_versions(self, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Add a new scorecard version to each call (a rescore); returns how many were added."""
        for call_id, card in items:
            self.finish_call(call_id, card)
        return len(items)

    # -- rules ---------------------------------------------------------------------------------

    def put_rules(self, kind: RulesKind, rules_id: str, version: str, sha256: str,
                  text: str) -> tuple[StoredRules, bool]:
        """Store rules; the same content again is no change, other content under the id and version a
        Conflict."""
        stored = self.rules.get((kind, rules_id, version))
        if stored is not None:
            if stored.sha256 != sha256:
                raise Conflict(f"{kind.replace('_', ' ')} {rules_id} version {version} is stored with other "
                               "content; give the changed file a new version")
            return stored, False
        self.rules[(kind, rules_id, version)] = StoredRules(kind=kind, id=rules_id, version=version,
                                                            sha256=sha256, text=text, created_at=_now())
        return self.rules[(kind, rules_id, version)], True

    def get_rules(self, kind: RulesKind, rules_id: str, version: str | None = None) -> StoredRules:
        """Rules by id and version (None: the newest stored); NotFound when there are none."""
        found = [r for (k, i, _), r in self.rules.items() if k == kind and i == rules_id
                 and (version is None or r.version == version)]
        if not found:
            what = kind.replace("_", " ")
            raise NotFound(f"no {what} {rules_id!r}" + (f" version {version!r}" if version else ""))
        return max(found, key=lambda r: r.created_at)

    def list_rules(self, kind: RulesKind) -> list[StoredRules]:
        """Every stored version of every rubric (or policy pack)."""
        return [r for (k, _, _), r in self.rules.items() if k == kind]

    # -- rescore runs --------------------------------------------------------------------------

    def add_rescore_run(self, run: NewRescoreRun) -> StoredRescoreRun:
        """Store a queued run; RescoreOverlap while a storing run of the same rubric is under way."""
        other = None if run.dry_run else self.storing_rescore_run(run.rubric_id)
        if other is not None:
            raise RescoreOverlap(other)
        self.runs[run.id] = StoredRescoreRun(
            id=run.id, status="queued", rubric_id=run.rubric_id, rubric_version=run.rubric_version,
            policy_pack_id=run.policy_pack_id, policy_pack_version=run.policy_pack_version, since=run.since,
            until=run.until, dry_run=run.dry_run, requested_by_key_id=run.requested_by_key_id,
            requested_by_name=run.requested_by_name, created_at=_now(), started_at=None, finished_at=None,
            failure_reason=None)
        return self.runs[run.id]

    def storing_rescore_run(self, rubric_id: str) -> StoredRescoreRun | None:
        """The queued or running run of this rubric that stores new versions, if any."""
        return next((r for r in self.runs.values() if r.rubric_id == rubric_id and not r.dry_run
                     and r.status in ("queued", "running")), None)

    def get_rescore_run(self, run_id: str) -> StoredRescoreRun:
        """A run by id; NotFound when there is none."""
        found = self.runs.get(canonical_uuid(run_id) or run_id)
        if found is None:
            raise NotFound(f"no rescore run with id {run_id!r}")
        return found

    def list_rescore_runs(self, statuses: Iterable[str] | None = None,
                          after: tuple[datetime, str] | None = None,
                          limit: int = 50) -> list[StoredRescoreRun]:
        """Runs, newest first by (requested time, id), optionally in these statuses, from the one after
        the key `after` when given."""
        wanted = set(statuses) if statuses is not None else None
        runs = [r for r in self.runs.values() if (wanted is None or r.status in wanted)
                and (after is None or (r.created_at, r.id) < after)]
        return sorted(runs, key=lambda r: (r.created_at, r.id), reverse=True)[:limit]

    def _update_run(self, run_id: str, **values: Any) -> StoredRescoreRun:
        run = self.get_rescore_run(run_id)
        self.runs[run.id] = dataclasses.replace(run, **values)
        return self.runs[run.id]

    def start_rescore_run(self, run_id: str) -> StoredRescoreRun:
        """Mark a queued run running; Conflict when it is not queued."""
        if self.get_rescore_run(run_id).status != "queued":
            raise Conflict(f"rescore run {run_id} is not queued")
        return self._update_run(run_id, status="running", started_at=_now())

    def finish_rescore_run(self, run_id: str, summary: dict[str, Any]) -> StoredRescoreRun:
        """Mark a run done with its impact summary."""
        return self._update_run(run_id, status="done", finished_at=_now(), summary=summary)

    def fail_rescore_run(self, run_id: str, reason: str) -> StoredRescoreRun:
        """Mark a run failed with a reason."""
        return self._update_run(run_id, status="failed", finished_at=_now(), failure_reason=reason)

    # -- API keys ------------------------------------------------------------------------------

    def add_key(self, name: str, role: str, key_hash: str, prefix: str | None = None,
                scope: Scope | None = None) -> StoredKey:
        """Store a key's hash under a new id."""
        key = StoredKey(id=str(uuid.uuid4()), name=name, role=role, key_hash=key_hash,  # type: ignore[arg-type]
                        created_at=_now(), revoked=False, prefix=prefix, scope=scope)
        self.keys[key.id] = key
        return key

    def key_by_hash(self, key_hash: str, max_age_s: float = 0.0) -> StoredKey | None:
        """The key with this hash, revoked or not."""
        return next((k for k in self.keys.values() if k.key_hash == key_hash), None)

    def list_keys(self) -> list[StoredKey]:
        """Every key, oldest first."""
        return sorted(self.keys.values(), key=lambda k: k.created_at)

    def key_page(self, cursor: str | None = None, page_size: int = DEFAULT_PAGE_SIZE) -> Paged[StoredKey]:
        """One page of keys, newest first (then by id), after the key the cursor names."""
        return listings.KEYS.listed(self.keys.values(), cursor, page_size, descending=True)

    def revoke_key(self, key_id: str) -> StoredKey:
        """Revoke a key; NotFound when there is none."""
        key = self.keys.get(canonical_uuid(key_id) or key_id)
        if key is None:
            raise NotFound(f"no API key with id {key_id!r}")
        self.keys[key.id] = dataclasses.replace(key, revoked=True)
        return self.keys[key.id]

    # -- erasure ------------------------------------------------------------------------------

    def call_ids_of_agent(self, agent_id: str) -> list[str]:
        """The ids of every call of an agent, oldest first."""
        return [c.id for c in sorted(self.calls.values(), key=lambda c: (c.created_at, c.id))
                if c.agent_id == agent_id]

    def ended_calls_before(self, cutoff: datetime) -> list[str]:
        """The ids of done and failed calls received before this moment, oldest first."""
        return [c.id for c in sorted(self.calls.values(), key=lambda c: (c.created_at, c.id))
                if c.created_at < cutoff and c.status in ("done", "failed")]

    def drop_earlier_versions(self, cutoff: datetime) -> int:
        """Delete the scorecard versions made before this moment that are not their call's latest."""
        dropped = 0
        for call_id, versions in self.scorecards.items():
            kept = [v for i, v in enumerate(versions) if i == len(versions) - 1 or v.created_at >= cutoff]
            dropped += len(versions) - len(kept)
            self.scorecards[call_id] = kept
        return dropped

    def strip_transcripts(self, cutoff: datetime) -> int:
        """Remove the transcript text from the scorecards of calls received before this moment."""
        at = _now().isoformat(timespec="seconds")
        changed = 0
        for call_id, versions in self.scorecards.items():
            if call_id in self.calls and self.calls[call_id].created_at < cutoff:
                for i, v in enumerate(versions):
                    if has_transcript(v.data):
                        versions[i] = dataclasses.replace(v, data=without_transcript(v.data, at))
                        changed += 1
        return changed

    def merge_search_index(self) -> None:
        """Nothing: the memory twin keeps no search index."""

    def erase_calls(self, call_ids: Sequence[str], *, receipt: ErasureNote) -> dict[str, dict[str, int]]:
        """Delete the calls and all that names them; write one receipt row per call."""
        removed: dict[str, dict[str, int]] = {}
        senders: set[str] = set()  # the external ids of the erased calls, which request paths may name
        for call_id in (canonical_uuid(c) for c in call_ids):
            gone = self.calls.pop(call_id, None) if call_id is not None else None
            if call_id is None or gone is None:
                continue
            senders |= {gone.external_id} if gone.external_id else set()
            reviews = [r for r in self.reviews.rows if r.call_id == call_id]
            self.reviews.rows = [r for r in self.reviews.rows if r.call_id != call_id]
            self.disputes.rows = [d for d in self.disputes.rows if d.call_id != call_id]
            self.disputes.acks = [a for a in self.disputes.acks if a.call_id != call_id]
            self.reviewed = {k: v for k, v in self.reviewed.items() if k[0] != call_id}
            self.calibration.forget_call(call_id)
            removed[call_id] = {"calls": 1, "scorecard_versions": len(self.scorecards.pop(call_id, [])),
                                "reviews": len(reviews)}
        erased = set(removed)
        runs = 0
        for run_id, run in list(self.runs.items()):
            if run.summary is not None:
                kept = summary_without(run.summary, erased, receipt.agent_id)
                if kept != run.summary:
                    self.runs[run_id] = dataclasses.replace(run, summary=kept)
                    runs += 1
        moved = 0
        for i, row in enumerate(self.audit.rows):
            named = row.target_id in erased or (receipt.agent_id is not None and row.target_kind == "agent"
                                                and row.target_id == receipt.agent_id) \
                or (row.target_kind == "call" and row.target_id in senders)
            details = row.details
            for call_id in erased:
                details = details.replace(call_id, receipt.id) if details else details
            for sender in senders:
                details = details.replace(f"/calls/{sender}", f"/calls/{receipt.id}") if details else details
            if named or details != row.details:
                moved += 1
                self.audit.rows[i] = dataclasses.replace(
                    row, details=details, target_kind=RECEIPT_KIND if named else row.target_kind,
                    target_id=receipt.id if named else row.target_id)
        for call_id, counts in removed.items():
            counts.update(receipt.removed_elsewhere.get(call_id, {}))
            counts["rescore_runs_changed"], counts["audit_rows_repointed"] = runs, moved
            self.audit.record(RECEIPT_ACTION, key_id=receipt.key_id, key_name=receipt.key_name,
                              role=receipt.role, target_kind="call", target_id=call_id,
                              details=receipt_details(receipt.id, counts))
        return removed

    def ping(self) -> None:
        """Memory always answers."""


if TYPE_CHECKING:
    _checked: Repository = MemoryRepository()  # mypy checks that it keeps every protocol
