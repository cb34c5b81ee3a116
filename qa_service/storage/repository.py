"""What the service stores, as small protocols over plain records, one storage object holding them.

The services, the worker and the command line talk to storage only through `Repository`: calls,
scorecards, rules, rescore runs and keys as its methods, and reviews, the audit log, web sessions,
certifications and the read-side views as its parts (`repo.reviews`, `repo.audit`, `repo.sessions`,
`repo.certification`, `repo.views`).
One SQL implementation (`storage.sql`) serves SQLite and PostgreSQL, and one contract test suite
runs against both; its engine never leaves `storage/`. `storage.memory` keeps the same protocols
in memory for the services' unit tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol

from qa_service.errors import Conflict

if TYPE_CHECKING:
    from qa_service.calibration import CalibrationSession, Sheet
    from qa_service.review import Review
    from qa_service.storage.history import SqlHistory
    from qa_service.storage.paging import Paged
    from qa_service.storage.review import AuditEntry, QueueCandidate, QueueKey
    from qa_service.storage.search import SqlSearch
    from qa_service.storage.uploads import SqlUploads
    from qa_service.storage.views import ResponseRate, Views

CallStatus = Literal["queued", "processing", "done", "failed"]
CallSource = Literal["upload", "webhook", "cli"]
InputKind = Literal["audio", "transcript"]
RulesKind = Literal["rubric", "policy_pack"]
Role = Literal["admin", "qa", "telephony", "supervisor", "agent"]
RescoreStatus = Literal["queued", "running", "done", "failed"]

CALL_STATUSES: tuple[str, ...] = ("queued", "processing", "done", "failed")
RESCORE_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed")
ROLES: tuple[str, ...] = ("admin", "qa", "telephony", "supervisor", "agent")


def canonical_uuid(value: str) -> str | None:
    """The usual form of a UUID however it is written (no hyphens, capitals, braces, urn:uuid:), or None."""
    try:
        return str(uuid.UUID(str(value)))
    except ValueError:
        return None


@dataclass(frozen=True)
class NewCall:
    """A call as the API or command line registers it, before any processing."""

    id: str
    agent_id: str
    call_date: date
    rubric_id: str
    rubric_version: str
    policy_pack_id: str
    policy_pack_version: str
    channels: str = "auto"
    source: CallSource = "upload"
    input_kind: InputKind = "audio"
    input_path: str | None = None
    input_url: str | None = None
    external_id: str | None = None
    submitted_by_key_id: str | None = None
    channel: str | None = None  # call, chat, email, im as the sender said; None: as the input says


@dataclass(frozen=True)
class StoredCall:
    """A call row: what was sent, where it is in processing, and why it failed if it did."""

    id: str
    external_id: str | None
    agent_id: str
    call_date: date
    status: CallStatus
    failure_reason: str | None
    rubric_id: str
    rubric_version: str
    policy_pack_id: str
    policy_pack_version: str
    channels: str
    source: CallSource
    input_kind: InputKind
    input_path: str | None
    input_url: str | None
    attempts: int
    created_at: datetime
    updated_at: datetime
    submitted_by_key_id: str | None = None  # the API key that uploaded it; None: webhook or command line
    channel: str | None = None  # how the conversation was held, as the sender said (None: not said)


@dataclass(frozen=True)
class StoredScorecard:
    """One version of a call's scorecard; rescoring adds a version and keeps the earlier ones."""

    call_id: str
    version: int
    agent_id: str
    call_date: date
    score: float
    passed: bool
    auto_fail: bool
    rubric_id: str
    rubric_version: str
    rubric_sha256: str
    created_at: datetime
    data: dict[str, Any] = field(repr=False, default_factory=dict)


@dataclass(frozen=True)
class ScorecardText:
    """A call's status and one version of its scorecard as the stored JSON text (None when there is none)."""

    call_id: str
    status: CallStatus
    failure_reason: str | None
    version: int | None
    json: str | None = field(repr=False)


@dataclass(frozen=True)
class AgentSummary:
    """Aggregate over an agent's latest scorecards in a date range."""

    count: int
    mean_score: float | None
    pass_rate: float | None
    auto_fail_count: int
    response_times: tuple[ResponseRate, ...] = ()


@dataclass(frozen=True)
class StoredRules:
    """A rubric or policy pack as uploaded: identity, hash and the YAML text itself."""

    kind: RulesKind
    id: str
    version: str
    sha256: str
    text: str = field(repr=False)
    created_at: datetime


@dataclass(frozen=True)
class StoredKey:
    """An API key's record; the key itself is never stored, only its sha256."""

    id: str
    name: str
    role: Role
    key_hash: str = field(repr=False)
    created_at: datetime
    revoked: bool
    # The key's first characters, to recognise it by; None for keys made before they were kept.
    prefix: str | None = None
    # The teams and vendors whose calls the key reads (None: every call its role reads).
    scope: Scope | None = None


@dataclass(frozen=True)
class Scope:
    """Whose calls a key reads: the calls of agents who, on the call's date, were in one of `teams` (any
    team when empty) and with one of `vendors` (any vendor when empty). At least one of them is named;
    or, for an agent's key, `agent` alone: that agent's own calls, whatever team they were in."""

    teams: tuple[str, ...] = ()
    vendors: tuple[str, ...] = ()
    agent: str | None = None

    @property
    def by_membership(self) -> bool:
        """Whether the scope names teams or vendors (read against the memberships on the call's date)."""
        return bool(self.teams or self.vendors)

    def allows(self, team: str, vendor: str) -> bool:
        """Whether a membership of this team and vendor is inside the scope."""
        return (not self.teams or team in self.teams) and (not self.vendors or vendor in self.vendors)

    def describe(self) -> str:
        """The scope as `team=A,B vendor=V` or `agent=A` (for tables and audit rows)."""
        parts = [f"team={','.join(self.teams)}" if self.teams else "",
                 f"vendor={','.join(self.vendors)}" if self.vendors else "",
                 f"agent={self.agent}" if self.agent else ""]
        return " ".join(p for p in parts if p)


@dataclass(frozen=True)
class Membership:
    """An agent's team and vendor (an outsourcing company, or `in-house`) from `since` to `until`
    (inclusive; None: still there). A call counts for the membership in force on the call's date."""

    agent_id: str
    team: str
    vendor: str
    since: date
    until: date | None = None

    def on(self, day: date) -> bool:
        """Whether the membership was in force on this day."""
        return self.since <= day and (self.until is None or day <= self.until)


@dataclass(frozen=True)
class NewRescoreRun:
    """A request to rescore stored calls with stored rules, before a worker takes it.

    No policy pack (both fields None) means each call keeps the pack it was scored with.
    """

    id: str
    rubric_id: str
    rubric_version: str
    requested_by_name: str
    requested_by_key_id: str | None = None
    policy_pack_id: str | None = None
    policy_pack_version: str | None = None
    since: date | None = None
    until: date | None = None
    dry_run: bool = False


@dataclass(frozen=True)
class StoredRescoreRun:
    """A rescore run: what was asked, by whom, where it is, and the impact summary once it is done."""

    id: str
    status: RescoreStatus
    rubric_id: str
    rubric_version: str
    policy_pack_id: str | None
    policy_pack_version: str | None
    since: date | None
    until: date | None
    dry_run: bool
    requested_by_key_id: str | None
    requested_by_name: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str | None
    summary: dict[str, Any] | None = field(repr=False, default=None)


class RescoreOverlap(Conflict):
    """A storing rescore run of this rubric is already queued or running (`other`).

    Two storing runs of one rubric at once would leave each call with whichever finished last and
    make both impact reports wrong; dry runs store nothing and may run beside one.
    """

    def __init__(self, other: StoredRescoreRun) -> None:
        super().__init__(f"rescore run {other.id} of rubric {other.rubric_id!r} is {other.status}")
        self.other = other


class ReviewStore(Protocol):
    """Reviews of scorecards (they only ever grow) and the reviewed verdicts they leave."""

    def add(self, review: Review) -> Review:
        """Store a review; NotFound when its call does not exist."""
        ...

    def set_reviewed(self, call_id: str, version: int, review: dict[str, Any]) -> None:
        """Keep a scorecard version's reviewed verdict where the aggregates read it."""
        ...

    def for_call(self, call_id: str) -> list[Review]:
        """Every review of a call, oldest first."""
        ...

    def reviewed_call_ids(self, call_ids: list[str]) -> set[str]:
        """Which of these calls have at least one review."""
        ...

    def queue_candidates(self, agent_id: str | None = None, date_from: date | None = None,
                         date_to: date | None = None,
                         after: QueueKey | None = None) -> Iterator[QueueCandidate]:
        """The latest scorecard of each call waiting for review (one agent's, in a date range), oldest
        first by call date, time received and call id, strictly after the `after` key (None: from the
        start)."""
        ...


DisputeStatus = Literal["open", "upheld", "overturned"]
DISPUTE_STATUSES: tuple[str, ...] = ("open", "upheld", "overturned")
DISPUTE_TARGETS: tuple[str, ...] = ("criterion", "violation")


@dataclass(frozen=True)
class Dispute:
    """An agent's dispute of one criterion or violation of a scorecard version, and how QA resolved it.

    Rows are kept for good: a resolution is written once (open -> upheld | overturned), with who, when
    and why; an overturn names the review it stored (`review_id`), which changed the reviewed verdict."""

    call_id: str
    scorecard_version: int
    rubric_id: str
    agent_id: str
    call_date: date
    target_kind: str  # criterion | violation
    target_id: str
    reason: str
    raised_by_key_id: str
    raised_by_name: str
    created_at: datetime
    status: DisputeStatus = "open"
    resolution_reason: str | None = None
    resolved_by_key_id: str | None = None
    resolved_by_name: str | None = None
    resolved_at: datetime | None = None
    review_id: int | None = None
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        resolution = None if self.status == "open" else {
            "outcome": self.status, "reason": self.resolution_reason,
            "by": {"key_id": self.resolved_by_key_id, "name": self.resolved_by_name},
            "at": self.resolved_at.isoformat() if self.resolved_at else None, "review_id": self.review_id}
        return {"id": self.id, "call_id": self.call_id, "scorecard_version": self.scorecard_version,
                "rubric_id": self.rubric_id, "agent_id": self.agent_id,
                "call_date": self.call_date.isoformat(), "target": self.target_kind,
                "target_id": self.target_id, "reason": self.reason,
                "raised_by": {"key_id": self.raised_by_key_id, "name": self.raised_by_name},
                "created_at": self.created_at.isoformat(), "status": self.status, "resolution": resolution}


@dataclass(frozen=True)
class Acknowledgement:
    """An agent saw a scorecard version: who (the agent's key) and when; once per version."""

    call_id: str
    scorecard_version: int
    agent_id: str
    key_id: str
    key_name: str
    created_at: datetime

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"call_id": self.call_id, "scorecard_version": self.scorecard_version,
                "agent_id": self.agent_id, "by": {"key_id": self.key_id, "name": self.key_name},
                "acknowledged_at": self.created_at.isoformat()}


class DisputeOpen(Conflict):
    """The target already has an open dispute (HTTP 409)."""


class AlreadyResolved(Conflict):
    """The dispute was resolved already (HTTP 409)."""


class DisputeStore(Protocol):
    """Agents' acknowledgements and disputes of their scorecards (errors: NotFound, Conflict)."""

    def acknowledge(self, ack: Acknowledgement) -> tuple[Acknowledgement, bool]:
        """Store an acknowledgement of a scorecard version; the stored one and False when there is one."""
        ...

    def acknowledgements(self, call_id: str) -> list[Acknowledgement]:
        """A call's acknowledgements, oldest version first."""
        ...

    def add(self, dispute: Dispute) -> Dispute:
        """Store an open dispute; Conflict when the target already has one open."""
        ...

    def get(self, dispute_id: int) -> Dispute:
        """The dispute with this id, or NotFound."""
        ...

    def resolve(self, dispute_id: int, *, outcome: DisputeStatus, reason: str, key_id: str, key_name: str,
                at: datetime, review: Review | None = None) -> Dispute:
        """Resolve an open dispute, storing the overturn's review in the same transaction; Conflict when
        it is no longer open."""
        ...

    def for_call(self, call_id: str) -> list[Dispute]:
        """A call's disputes, oldest first."""
        ...

    def listing(self, *, status: str | None = None, agent_id: str | None = None, scope: Scope | None = None,
                after: tuple[datetime, int] | None = None, limit: int = 500) -> list[Dispute]:
        """Disputes (with a status, of one agent, inside a scope: an agent's own, or its agents' on the
        call's date), oldest first by (created time, id), from the one after the key `after` when given."""
        ...


class AuditLog(Protocol):
    """Who did what to which target, when; rows are appended, never changed."""

    def record(self, action: str, *, key_id: str | None = None, key_name: str | None = None,
               role: str | None = None, target_kind: str | None = None, target_id: str | None = None,
               details: str | None = None, at: datetime | None = None) -> None:
        """Append one row (never pass personal data)."""
        ...

    def entries(self, *, target_id: str | None = None, key_id: str | None = None, action: str | None = None,
                since: datetime | None = None, until: datetime | None = None,
                after: tuple[datetime, int] | None = None, limit: int = 1000) -> list[AuditEntry]:
        """Rows, newest first by (time, id), filtered by target, key, action and time range, from the row
        after the key `after` when given."""
        ...


class SessionStore(Protocol):
    """The web sessions the server keeps (stored by a hash of their id)."""

    def start(self, session_id: str, key_id: str, max_age_s: int, now: datetime | None = None) -> None:
        """Keep a new session of this key for `max_age_s` seconds (from `now`, default: now)."""
        ...

    def is_live(self, session_id: str, key_id: str, now: datetime | None = None) -> bool:
        """Whether this session of this key was started, has not expired and was not ended."""
        ...

    def end(self, session_id: str) -> None:
        """Forget a session (signing out)."""
        ...


class CallStore(Protocol):
    """Calls: registered, processed, failed, retried (errors: NotFound)."""

    def add_call(self, call: NewCall) -> tuple[StoredCall, bool]:
        """Store a new call; with a known external id return the existing call and False instead."""
        ...

    def get_call(self, call_id: str) -> StoredCall:
        """The call with this id, or NotFound."""
        ...

    def find_call(self, external_id: str) -> StoredCall | None:
        """The call registered under this external id, if any."""
        ...

    def external_ids(self, call_ids: Iterable[str]) -> dict[str, str | None]:
        """The external id of each of these calls that exists (None: the sender gave none)."""
        ...

    def calls_with_status(self, statuses: Iterable[str]) -> list[StoredCall]:
        """Every call whose status is one of these, oldest first."""
        ...

    def calls_with_plain_input(self, statuses: Iterable[str]) -> list[StoredCall]:
        """Calls with one of these statuses whose input is stored unsealed, oldest first (for done and failed
        calls: a worker stopped between ending the call and deleting or sealing its input)."""
        ...

    def failed_calls_with_input(self, failed_before: datetime) -> list[StoredCall]:
        """Failed calls that failed before this moment and still have an input stored, sealed or not,
        oldest first."""
        ...

    def start_call(self, call_id: str) -> StoredCall:
        """Mark a call processing and count the attempt."""
        ...

    def requeue_call(self, call_id: str) -> StoredCall:
        """Put a call back to queued, clearing any failure reason."""
        ...

    def fail_call(self, call_id: str, reason: str) -> StoredCall:
        """Mark a call failed with a reason that is safe to show (no personal data)."""
        ...

    def set_input_path(self, call_id: str, path: str | None) -> None:
        """Record where the call's input is stored (None once it has been deleted)."""
        ...

    def touch_call(self, call_id: str) -> None:
        """Note that a worker is still processing the call (its heartbeat: updated_at moves on)."""
        ...


class ScorecardStore(Protocol):
    """Scorecards: one version per scoring of a call; the latest per call counts."""

    def finish_call(self, call_id: str, scorecard: dict[str, Any]) -> StoredScorecard:
        """Store a new scorecard version and mark the call done, in one transaction."""
        ...

    def get_scorecard(self, call_id: str, version: int | None = None) -> StoredScorecard:
        """A call's scorecard (latest version unless one is named), or NotFound."""
        ...

    def scorecard_text(self, call_id: str, version: int | None = None) -> ScorecardText:
        """The call's status with its scorecard (latest unless a version is named) as JSON text, in one
        read; NotFound when there is no such call."""
        ...

    def agent_scorecards(self, agent_id: str, date_from: date | None = None, date_to: date | None = None,
                         limit: int = 100) -> tuple[list[StoredScorecard], AgentSummary]:
        """An agent's latest scorecard per call in a date range (newest first) and their aggregate."""
        ...

    def latest_scorecards(self, date_from: date | None = None, date_to: date | None = None,
                          rubric_id: str | None = None, batch: int = 500) -> Iterator[StoredScorecard]:
        """Every call's latest scorecard in a date range (optionally for one rubric id), oldest first."""
        ...

    def add_scorecard_versions(self, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Store new scorecard versions for calls that are done (rescoring), in one transaction."""
        ...


class RulesStore(Protocol):
    """Rubrics and policy packs as uploaded, by id and version (errors: NotFound, Conflict)."""

    def put_rules(self, kind: RulesKind, rules_id: str, version: str, sha256: str, text: str) -> tuple[
            StoredRules, bool]:
        """Store a rubric or policy pack; the same content again is a no-op, other content is a Conflict."""
        ...

    def get_rules(self, kind: RulesKind, rules_id: str, version: str | None = None) -> StoredRules:
        """A stored rubric or policy pack (latest stored version unless one is named), or NotFound."""
        ...

    def list_rules(self, kind: RulesKind) -> list[StoredRules]:
        """Every stored version of every rubric or policy pack."""
        ...


class RescoreRunStore(Protocol):
    """Rescore runs: requested, running, done or failed with the impact summary."""

    def add_rescore_run(self, run: NewRescoreRun) -> StoredRescoreRun:
        """Store a new rescore run, queued; RescoreOverlap when it would store beside another run."""
        ...

    def storing_rescore_run(self, rubric_id: str) -> StoredRescoreRun | None:
        """The queued or running rescore run that stores scorecards of this rubric, if there is one."""
        ...

    def get_rescore_run(self, run_id: str) -> StoredRescoreRun:
        """The rescore run with this id, or NotFound."""
        ...

    def list_rescore_runs(self, statuses: Iterable[str] | None = None,
                          after: tuple[datetime, str] | None = None,
                          limit: int = 50) -> list[StoredRescoreRun]:
        """Rescore runs, newest first by (requested time, id) (optionally only those with one of these
        statuses), from the one after the key `after` when given."""
        ...

    def start_rescore_run(self, run_id: str) -> StoredRescoreRun:
        """Mark a queued run running; Conflict when it is not queued (another job took it), NotFound."""
        ...

    def finish_rescore_run(self, run_id: str, summary: dict[str, Any]) -> StoredRescoreRun:
        """Mark a run done with its impact summary."""
        ...

    def fail_rescore_run(self, run_id: str, reason: str) -> StoredRescoreRun:
        """Mark a run failed with a reason that is safe to show (no personal data); a done run stays done."""
        ...


class KeyStore(Protocol):
    """API keys, stored by their hash only."""

    def add_key(self, name: str, role: str, key_hash: str, prefix: str | None = None,
                scope: Scope | None = None) -> StoredKey:
        """Store a new API key's hash (and its first characters, to recognise it by) with its scope."""
        ...

    def key_by_hash(self, key_hash: str, max_age_s: float = 0.0) -> StoredKey | None:
        """The key with this hash, revoked or not; with max_age_s, possibly as read up to that long ago
        (revoking through this same repository is seen at once)."""
        ...

    def list_keys(self) -> list[StoredKey]:
        """Every key, oldest first."""
        ...

    def key_page(self, cursor: str | None = None, page_size: int = 50) -> Paged[StoredKey]:
        """One page of keys, newest first (then by id), after the key the cursor names (InputError for a
        cursor this listing did not give)."""
        ...

    def revoke_key(self, key_id: str) -> StoredKey:
        """Mark a key revoked, or NotFound."""
        ...


class ErasureStore(Protocol):
    """Erasing calls for good, with the receipt the audit log keeps (errors: NotFound)."""

    def call_ids_of_agent(self, agent_id: str) -> list[str]:
        """The ids of every call of an agent, oldest first."""
        ...

    def ended_calls_before(self, cutoff: datetime) -> list[str]:
        """The ids of done and failed calls received before this moment, oldest first (retention)."""
        ...

    def drop_earlier_versions(self, cutoff: datetime) -> int:
        """Delete the scorecard versions made before this moment that are not their call's latest."""
        ...

    def strip_transcripts(self, cutoff: datetime) -> int:
        """Remove the redacted transcript and evidence quotes from the scorecards of calls received
        before this moment; returns how many scorecard versions changed."""
        ...

    def erase_calls(self, call_ids: Sequence[str], *, receipt: ErasureNote) -> dict[str, dict[str, int]]:
        """Delete the calls, every scorecard version and review of them, take them out of rescore
        summaries, point earlier audit rows naming them at the receipt, and append one receipt row per
        call, all in one transaction; returns the rows removed per call and kind."""
        ...

    def merge_search_index(self) -> None:
        """Rewrite the search index without what erasures and retention took out of it (SQLite's FTS5
        keeps deleted words in its pages until a merge; PostgreSQL needs nothing)."""
        ...


@dataclass(frozen=True)
class ErasureNote:
    """What the receipt rows of an erasure say besides the rows the database removes: who asked (no
    external id, no agent id: the audit log keeps no personal data) and what was removed elsewhere."""

    id: str
    key_id: str | None
    key_name: str | None
    role: str | None
    removed_elsewhere: dict[str, dict[str, int]] = field(default_factory=dict)  # per call id: kind -> count
    # An agent whose calls are all erased: audit rows naming the agent are pointed at the receipt too.
    agent_id: str | None = field(default=None, repr=False)
    # Merge the search index in the same transaction, so the erased words leave its pages at once (SQLite;
    # a sweep erasing many calls one by one leaves it to `merge_search_index` at its end).
    merge_search: bool = True


@dataclass(frozen=True)
class Certification:
    """An agent's certification: its name, the rubric and policy pack ids it covers, and the days it is
    valid (issued and expires inclusive). `id` is given by storage; `notified_expiry` is the expiry date a
    `certification.expiring` notice was sent for (None: none yet)."""

    agent_id: str
    name: str
    covers: tuple[str, ...]
    issued_on: date
    expires_on: date
    id: str = ""
    notified_expiry: date | None = None

    def valid_on(self, day: date) -> bool:
        """Whether the certification was in force on this day."""
        return self.issued_on <= day <= self.expires_on


@dataclass(frozen=True)
class TrainingRecord:
    """An agent completed the refresher for one policy pack version on a day."""

    agent_id: str
    pack_id: str
    pack_version: str
    completed_on: date


@dataclass(frozen=True)
class ImportCounts:
    """What an import changed: rows added, rows whose values changed, rows already stored as they are."""

    added: int = 0
    updated: int = 0
    unchanged: int = 0


class CertificationStore(Protocol):
    """Certifications and training records of agents (errors: Conflict)."""

    def import_certifications(self, items: Sequence[Certification]) -> ImportCounts:
        """Store certifications in one transaction: one row per agent, name and issue date; the same key
        again with other covers or expiry replaces them (a correction)."""
        ...

    def certifications(self, agent_id: str | None = None, expires_from: date | None = None,
                       expires_to: date | None = None) -> list[Certification]:
        """Certifications (one agent's, expiring in a date range), by agent, name and issue date."""
        ...

    def claim_expiry_notice(self, certification_id: str, expires_on: date) -> bool:
        """Mark the notice for this expiry date sent; False when it already was (another worker took it)."""
        ...

    def release_expiry_notice(self, certification_id: str) -> None:
        """Forget a claimed notice that could not be queued, so the next check sends it."""
        ...

    def import_training(self, items: Sequence[TrainingRecord]) -> ImportCounts:
        """Store training records in one transaction: one per agent and pack version (the first
        completion date stays)."""
        ...

    def training(self, agent_id: str | None = None, pack_id: str | None = None,
                 pack_version: str | None = None) -> list[TrainingRecord]:
        """Training records, by agent, pack, version."""
        ...

    def pack_agents(self, pack_id: str) -> set[str]:
        """The agents of every stored call scored under any version of this policy pack."""
        ...

    def certification_page(self, agent_id: str | None = None, scope: Scope | None = None,
                           cursor: str | None = None,
                           page_size: int = 50) -> Paged[Certification]:
        """One page of certifications (one agent's; of the agents a scope reaches), by agent, name and
        issue date, after the one the cursor names."""
        ...

    def unrenewed_page(self, expires_from: date | None = None, expires_to: date | None = None,
                       scope: Scope | None = None, cursor: str | None = None,
                       page_size: int = 50, *, latest_first: bool = False) -> Paged[Certification]:
        """One page of the certifications expiring in a date range that were not renewed (the agent holds
        none of the same name expiring later), soonest expiry first (`listings.EXPIRING`), or most recent
        first with latest_first (`listings.LAPSED`)."""
        ...

    def training_page(self, agent_id: str | None = None, pack_id: str | None = None,
                      pack_version: str | None = None, scope: Scope | None = None, cursor: str | None = None,
                      page_size: int = 50) -> Paged[TrainingRecord]:
        """One page of training records (filtered; of the agents a scope reaches), by agent, pack and
        version, after the one the cursor names."""
        ...


class TeamStore(Protocol):
    """Agents' teams and vendors by date (errors: Conflict)."""

    def put_memberships(self, items: Sequence[Membership]) -> ImportCounts:
        """Store memberships in one transaction: one row per agent and start date; the same agent and
        start date again with another team, vendor or end replaces it (a correction)."""
        ...

    def memberships(self, agent_id: str | None = None, scope: Scope | None = None) -> list[Membership]:
        """Memberships (one agent's, those inside a scope), by agent and start date."""
        ...

    def membership_page(self, agent_id: str | None = None, scope: Scope | None = None,
                        cursor: str | None = None, page_size: int = 50) -> Paged[Membership]:
        """One page of memberships (one agent's, those inside a scope), by agent and start date, after the
        one the cursor names."""
        ...

    def teams_and_vendors(self) -> tuple[list[str], list[str]]:
        """Every team and every vendor named by a membership, sorted."""
        ...


class CalibrationStore(Protocol):
    """Calibration sessions, their pinned calls, reviewers and answer sheets (errors: NotFound, Conflict)."""

    def add_session(self, session: CalibrationSession) -> CalibrationSession:
        """Store a new session with its calls and reviewers, in one transaction."""
        ...

    def get_session(self, session_id: str) -> CalibrationSession:
        """The session with this id, or NotFound."""
        ...

    def list_sessions(self, after: tuple[datetime, str] | None = None,
                      limit: int = 100) -> list[CalibrationSession]:
        """Sessions, newest first by (created time, id), from the one after the key `after` when given."""
        ...

    def put_sheet(self, sheet: Sheet) -> Sheet:
        """Store a reviewer's sheet for a call, replacing an earlier one; Conflict when the session is
        closed."""
        ...

    def sheets(self, session_id: str, reviewer_key_id: str | None = None) -> list[Sheet]:
        """The sheets of a session (one reviewer's only, when named), by call and reviewer."""
        ...

    def close_session(self, session_id: str, by: str, at: datetime) -> CalibrationSession:
        """Close an open session (a closed one stays as it was closed); NotFound."""
        ...


class Repository(CallStore, ScorecardStore, RulesStore, RescoreRunStore, KeyStore, ErasureStore, Protocol):
    """The one storage object: calls, scorecards, rules, rescore runs and API keys as its methods (by
    aggregate above), with reviews, the audit log, web sessions, certifications and the read-side views
    as its parts."""

    @property
    def certification(self) -> CertificationStore:
        """Agents' certifications and training records."""
        ...

    @property
    def teams(self) -> TeamStore:
        """Agents' teams and vendors by date."""
        ...

    @property
    def calibration(self) -> CalibrationStore:
        """Calibration sessions."""
        ...

    @property
    def reviews(self) -> ReviewStore:
        """Reviews of scorecards."""
        ...

    @property
    def disputes(self) -> DisputeStore:
        """Agents' acknowledgements and disputes of their scorecards."""
        ...

    @property
    def audit(self) -> AuditLog:
        """The audit log."""
        ...

    @property
    def sessions(self) -> SessionStore:
        """Web sessions."""
        ...

    @property
    def views(self) -> Views:
        """Read-side views over the latest scorecards (supervisor reports, call lists, exports)."""
        ...

    @property
    def history(self) -> SqlHistory:
        """Every stored version of a call's scorecard."""
        ...

    @property
    def uploads(self) -> SqlUploads:
        """The calls each API key uploaded."""
        ...

    @property
    def search(self) -> SqlSearch:
        """Full-text search over the calls' redacted transcripts, and calls' external ids by id."""
        ...

    def ping(self) -> None:
        """Raise TransientError when the database cannot be reached."""
        ...
