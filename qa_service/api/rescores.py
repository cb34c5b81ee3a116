"""Rescore runs: rescore stored calls with stored rules from the API, and read the impact.

A run is stored and its id enqueued; a worker rescores the stored (redacted) transcripts with the
spaCy pipeline it already holds and stores the impact summary on the run (`worker.jobs.rescore_run`).
The API process never scores anything: it checks that the rules are stored, stores, enqueues,
and reads runs back.
"""

from __future__ import annotations

import copy
import logging
from datetime import date, datetime
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from qa_service.api.deps import QueueDep, ReadRescoresKey, RepoDep, SettingsDep, StartRescoreKey
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.api.policy import OutdatedMention
from qa_service.api.schemas import Error, RulesRefOut
from qa_service.services import rescores
from qa_service.services.calls import with_external_ids
from qa_service.services.teams import unscoped_only
from qa_service.storage.repository import StoredRescoreRun

log = logging.getLogger(__name__)
router = APIRouter(tags=["rescores"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No or bad API key"},
    403: {"model": Error, "description": "The key's role may not do this"},
}


class RescoreIn(BaseModel):
    """What to rescore: the calls scored with this rubric id, under this stored rubric version."""

    model_config = ConfigDict(extra="forbid")

    rubric_id: str = Field(min_length=1, max_length=100, description="A rubric stored with POST /v1/rubrics")
    rubric_version: str = Field(min_length=1, max_length=50)
    policy_pack_id: str | None = Field(
        None, min_length=1, max_length=100,
        description="A policy pack stored with POST /v1/policy-packs, with its version; "
                    "leave both out and each call keeps the pack it was scored with")
    policy_pack_version: str | None = Field(None, min_length=1, max_length=50)
    since: date | None = Field(None, description="First call date, inclusive")
    until: date | None = Field(None, description="Last call date, inclusive")
    dry_run: bool = Field(False, description="Report the impact without storing new scorecard versions")

    @model_validator(mode="after")
    def _consistent(self) -> RescoreIn:
        if (self.policy_pack_id is None) != (self.policy_pack_version is None):
            raise ValueError("give policy_pack_id and policy_pack_version together, or neither "
                             "(each call then keeps the policy pack it was scored with)")
        if self.since and self.until and self.since > self.until:
            raise ValueError("'since' is after 'until'")
        return self


class RescoreAccepted(BaseModel):
    id: str = Field(description="The run's id (a UUID)")
    status: Literal["queued", "running", "done", "failed"]


class Requester(BaseModel):
    key_id: str | None = Field(description="The API key that started the run")
    name: str


class Totals(BaseModel):
    calls: int
    score_changed: int
    flipped_to_fail: int
    flipped_to_pass: int


class FlippedCall(BaseModel):
    call_id: str
    external_id: str | None = None
    agent_id: str
    call_date: str
    old_score: float
    new_score: float
    old_passed: bool
    new_passed: bool
    new_violations: list[str]
    vanished_violations: list[str]


class CallRef(BaseModel):
    call_id: str
    external_id: str | None = None
    agent_id: str
    call_date: str


class RescanParts(BaseModel):
    count: int
    by_other_workers: int


class ImpactSummary(BaseModel):
    """What the run changed (or, for a dry run, would change)."""

    calls: int = Field(description="Calls rescored")
    score_changed: int
    mean_score_change: float
    flipped_to_fail: int
    flipped_to_pass: int
    agents_with_flips: dict[str, dict[str, int]] = Field(description="Per agent: to_fail / to_pass counts")
    new_violations: dict[str, int] = Field(description="kind:id -> calls where it is new")
    vanished_violations: dict[str, int] = Field(description="kind:id -> calls where it is gone")
    flipped_calls: list[FlippedCall]
    refresher: dict[str, dict[str, list[OutdatedMention]]] = Field(
        description="Per agent and policy fact, the calls in which the agent stated outdated policy")
    now_outdated: dict[str, list[CallRef]] = Field(
        default_factory=dict,
        description="Per policy fact, the calls that now state it outdated and did not before")
    effective_from: dict[str, str | None] | None = Field(
        None, description="A rescan on publish: per earlier version of the pack, the first call date "
                          "the new version changes (None: it changes none)")
    parts: RescanParts | None = Field(
        default=None, description="A rescan of a published pack: the spans of dates it was cut into, one "
                                  "per worker on the queue, and how many other workers did")


class RescoreRunOut(BaseModel):
    id: str
    status: Literal["queued", "running", "done", "failed"]
    rubric: RulesRefOut
    policies: RulesRefOut | None = Field(description="None: each call kept the pack it was scored with")
    since: date | None
    until: date | None
    dry_run: bool
    requested_by: Requester
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    failure_reason: str | None
    totals: Totals | None = Field(description="Headline counts, once the run is done")
    url: str


class RescoreRunPage(BaseModel):
    runs: list[RescoreRunOut] = Field(description="Newest requested first")
    page_size: int
    next_cursor: str | None = Field(description="Pass back as cursor= for the next page; None: the last page")


class RescoreRunDetail(RescoreRunOut):
    summary: ImpactSummary | None = Field(description="The impact report, once the run is done")


def _fields(run: StoredRescoreRun) -> dict[str, Any]:
    """The fields of a run's response body that the list and the detail view share."""
    policies = None
    if run.policy_pack_id is not None and run.policy_pack_version is not None:
        policies = RulesRefOut(id=run.policy_pack_id, version=run.policy_pack_version)
    totals = None
    if run.summary is not None:
        totals = Totals(**{k: int(run.summary.get(k, 0)) for k in Totals.model_fields})
    return dict(
        id=run.id, status=run.status, rubric=RulesRefOut(id=run.rubric_id, version=run.rubric_version),
        policies=policies, since=run.since, until=run.until, dry_run=run.dry_run,
        requested_by=Requester(key_id=run.requested_by_key_id, name=run.requested_by_name),
        created_at=run.created_at, started_at=run.started_at, finished_at=run.finished_at,
        failure_reason=run.failure_reason, totals=totals, url=f"/v1/rescores/{run.id}",
    )


@router.post(
    "/v1/rescores", status_code=202, response_model=RescoreAccepted,
    responses={**_ERRORS, 422: {"model": Error, "description": "Invalid body, or the rules are not stored"},
               409: {"model": Error, "description": "A run storing this rubric's scorecards is under way"},
               503: {"model": Error, "description": "Queue unavailable; the run is stored and queued later"}},
)
def start_rescore(body: RescoreIn, repo: RepoDep, queue: QueueDep, settings: SettingsDep, response: Response,
                  key: StartRescoreKey) -> RescoreAccepted:
    """Queue a rescore of the stored calls scored with this rubric id, with the stored rules named.

    Nothing is transcribed again; each call gets a new scorecard version (unless `dry_run`), and
    `GET /v1/rescores/{id}` reports the impact when the run is done.
    """
    run = rescores.start_rescore(store=repo, settings=settings, queue=queue, key=key,
                                 rubric_id=body.rubric_id,
                                 rubric_version=body.rubric_version, policy_pack_id=body.policy_pack_id,
                                 policy_pack_version=body.policy_pack_version, since=body.since,
                                 until=body.until, dry_run=body.dry_run)
    response.headers["Location"] = f"/v1/rescores/{run.id}"
    return RescoreAccepted(id=run.id, status=run.status)


@router.get("/v1/rescores/{run_id}", response_model=RescoreRunDetail,
            responses={**_ERRORS, 404: {"model": Error}})
def get_rescore(run_id: str, repo: RepoDep, key: ReadRescoresKey) -> RescoreRunDetail:
    """A run's status (queued, running, done, failed + reason) and, when done, its impact summary."""
    unscoped_only(key, "a rescore run")
    run = repo.get_rescore_run(run_id)
    summary = None
    if run.summary is not None:  # the calls it names, by both ids (a run stores the service's)
        summary = ImpactSummary.model_validate(with_external_ids(repo, copy.deepcopy(run.summary)))
    return RescoreRunDetail(**_fields(run), summary=summary)


@router.get("/v1/rescores", response_model=RescoreRunPage, responses=_ERRORS, dependencies=PAGED)
def list_rescores(repo: RepoDep, key: ReadRescoresKey,
                  status: Literal["queued", "running", "done", "failed"] | None = None,
                  cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> RescoreRunPage:
    """Runs, newest first, a page at a time, with headline counts (the full impact is on each run's own
    URL)."""
    unscoped_only(key, "a rescore run")
    page = rescores.list_runs(store=repo, status=status, cursor=cursor, page_size=page_size)
    return RescoreRunPage(runs=[RescoreRunOut(**_fields(r)) for r in page.items], page_size=page.page_size,
                          next_cursor=page.next_cursor)
