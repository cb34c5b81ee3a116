"""Certification and training routes: records in (a CSV file or JSON), the expiry and lapsed lists, and
the agents not yet trained on a policy pack version.

Admin and QA keys write records; supervisors read them. The use cases live in `services.certification`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from qa_service.access.keys import MANAGE_CERTIFICATIONS, READ_CERTIFICATIONS, requires
from qa_service.api.deps import RepoDep
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.api.schemas import Error, error_body
from qa_service.services import certification as certs
from qa_service.services.imports import CSV_MEDIA_TYPE, ImportRefused, body_records
from qa_service.storage.repository import Certification, ImportCounts, StoredKey, TrainingRecord

router = APIRouter(tags=["certification"])

ManageKey = Annotated[StoredKey, requires(*MANAGE_CERTIFICATIONS)]
ReadKey = Annotated[StoredKey, requires(*READ_CERTIFICATIONS)]

_CSV = CSV_MEDIA_TYPE
_ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": Error}, 403: {"model": Error}}


class CertificationOut(BaseModel):
    id: str
    agent_id: str
    name: str
    covers: list[str]
    issued: date
    expires: date

    @classmethod
    def of(cls, c: Certification) -> CertificationOut:
        """The response body of a stored certification."""
        return cls(id=c.id, agent_id=c.agent_id, name=c.name, covers=list(c.covers), issued=c.issued_on,
                   expires=c.expires_on)


class ExpiringOut(CertificationOut):
    days_left: int

    @classmethod
    def of_item(cls, item: certs.Expiring) -> ExpiringOut:
        """A certification with the days left before it lapses."""
        return cls(**CertificationOut.of(item.certification).model_dump(), days_left=item.days_left)


class PageOut(BaseModel):
    page_size: int
    next_cursor: str | None = Field(description="Pass as cursor= for the next page; null on the last")


class CertificationList(PageOut):
    certifications: list[CertificationOut]


class ExpiringList(PageOut):
    on: date
    within_days: int
    count: int = Field(description="Certifications on this page")
    certifications: list[ExpiringOut]


class LapsedList(PageOut):
    certifications: list[ExpiringOut]


class TrainingOut(BaseModel):
    agent_id: str
    pack_id: str
    version: str
    completed: date

    @classmethod
    def of(cls, r: TrainingRecord) -> TrainingOut:
        """The response body of a training record."""
        return cls(agent_id=r.agent_id, pack_id=r.pack_id, version=r.pack_version, completed=r.completed_on)


class TrainingList(PageOut):
    training_records: list[TrainingOut]


class ImportOut(BaseModel):
    added: int
    updated: int
    unchanged: int

    @classmethod
    def of(cls, counts: ImportCounts) -> ImportOut:
        """What an import changed."""
        return cls(added=counts.added, updated=counts.updated, unchanged=counts.unchanged)


class UntrainedAgent(BaseModel):
    agent_id: str
    took_calls: bool
    certified: bool


class UntrainedList(PageOut):
    pack_id: str
    version: str
    count: int = Field(description="Agents on this page")
    agents: list[UntrainedAgent]


def _today() -> date:
    return datetime.now(UTC).date()


async def records_in(request: Request) -> tuple[str | None, list[dict[str, str]] | None]:
    """The body as CSV text (Content-Type text/csv) or as a JSON list of records (objects of strings)."""
    body = await request.body()  # at most the app's body limit
    return body_records(body, request.headers.get("content-type", ""))


def refused(exc: ImportRefused) -> JSONResponse:
    """422 naming each bad line or item of an import, in the one error format."""
    return JSONResponse(status_code=422, content=error_body(
        str(exc), errors=[{exc.unit: n, "message": m} for n, m in exc.problems]))


_IMPORT = {
    "requestBody": {"required": True, "content": {
        _CSV: {"schema": {"type": "string"}},
        "application/json": {"schema": {"type": "array", "items": {"type": "object"}}}}},
}


@router.post("/v1/certifications", response_model=ImportOut, openapi_extra=_IMPORT,
             responses={**_ERRORS, 422: {"description": "Bad lines (each named); nothing was stored"}})
async def post_certifications(request: Request, repo: RepoDep, _key: ManageKey) -> Any:
    """Store certifications from a CSV file (agent_id,name,covers,issued,expires; covers separated by `;`)
    or a JSON list of such records: all of them, or none when a line is bad."""
    text, rows = await records_in(request)
    try:
        items = certs.read_certifications(text) if text is not None else \
            certs.check_items(repo, rows or [], "certifications")
    except ImportRefused as exc:
        return refused(exc)
    counts = await run_in_threadpool(lambda: certs.import_certifications(store=repo, items=items))
    return ImportOut.of(counts)


@router.get("/v1/certifications", response_model=CertificationList, dependencies=PAGED, responses=_ERRORS)
def list_certifications(repo: RepoDep, key: ReadKey, agent_id: str | None = None, cursor: CursorQ = None,
                        page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> CertificationList:
    """Certifications (one agent's), by agent, name and issue date, a page at a time; a scoped key sees
    those of the agents inside its scope."""
    found = repo.certification.certification_page(agent_id, key.scope, cursor, page_size)
    return CertificationList(certifications=[CertificationOut.of(c) for c in found.items],
                             page_size=found.page_size, next_cursor=found.next_cursor)


@router.get("/v1/certifications/expiring", response_model=ExpiringList, dependencies=PAGED,
            responses=_ERRORS)
def expiring_certifications(
    repo: RepoDep, key: ReadKey,
    within_days: Annotated[int, Query(ge=0, le=3650)] = certs.DEFAULT_WITHIN_DAYS,
    on: Annotated[date | None, Query(description="Count from this day (default: today, UTC)")] = None,
    cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE,
) -> ExpiringList:
    """Certifications that expire within this many days, soonest first (then by agent, name and issue
    date; renewed ones left out), a page at a time."""
    day = on or _today()
    found = certs.expiring(store=repo, today=day, within_days=within_days, scope=key.scope, cursor=cursor,
                           page_size=page_size)
    return ExpiringList(on=day, within_days=within_days, count=len(found.items),
                        certifications=[ExpiringOut.of_item(i) for i in found.items],
                        page_size=found.page_size, next_cursor=found.next_cursor)


@router.get("/v1/certifications/lapsed", response_model=LapsedList, dependencies=PAGED, responses=_ERRORS)
def lapsed_certifications(
    repo: RepoDep, key: ReadKey,
    on: Annotated[date | None, Query(description="As of this day (default: today, UTC)")] = None,
    cursor: CursorQ = None, page_size: PageSizeQ = DEFAULT_PAGE_SIZE,
) -> LapsedList:
    """Certifications that have expired and were not renewed, most recently lapsed first (then by agent,
    name and issue date, backwards), a page at a time."""
    found = certs.lapsed(store=repo, today=on or _today(), scope=key.scope, cursor=cursor,
                         page_size=page_size)
    return LapsedList(certifications=[ExpiringOut.of_item(i) for i in found.items], page_size=found.page_size,
                      next_cursor=found.next_cursor)


@router.post("/v1/training-records", response_model=ImportOut, openapi_extra=_IMPORT,
             responses={**_ERRORS, 422: {"description": "Bad lines (each named); nothing was stored"}})
async def post_training(request: Request, repo: RepoDep, _key: ManageKey) -> Any:
    """Store training records from a CSV file (agent_id,pack_id,version,completed) or a JSON list of such
    records: all of them, or none when a line is bad (a pack version must be stored)."""
    text, rows = await records_in(request)
    try:
        items = await run_in_threadpool(
            lambda: certs.read_training(repo, text) if text is not None else
            certs.check_items(repo, rows or [], "training"))
    except ImportRefused as exc:
        return refused(exc)
    counts = await run_in_threadpool(lambda: certs.import_training(store=repo, items=items))
    return ImportOut.of(counts)


@router.get("/v1/training-records", response_model=TrainingList, dependencies=PAGED, responses=_ERRORS)
def list_training(repo: RepoDep, key: ReadKey, agent_id: str | None = None, pack_id: str | None = None,
                  version: str | None = None, cursor: CursorQ = None,
                  page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> TrainingList:
    """Training records, filtered by agent, policy pack and version, by agent, pack and version, a page at
    a time; a scoped key sees those of the agents inside its scope."""
    found = repo.certification.training_page(agent_id, pack_id, version, key.scope, cursor, page_size)
    return TrainingList(training_records=[TrainingOut.of(r) for r in found.items], page_size=found.page_size,
                        next_cursor=found.next_cursor)


@router.get("/v1/policy-packs/{pack_id}/versions/{version}/untrained", response_model=UntrainedList,
            tags=["rules"], dependencies=PAGED, responses={**_ERRORS, 404: {"model": Error}})
def untrained_agents(pack_id: str, version: str, repo: RepoDep, key: ReadKey, cursor: CursorQ = None,
                     page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> UntrainedList:
    """Agents who took calls under this policy pack (any version) or hold a certification covering it,
    and have no training record for this version, by agent id, a page at a time."""
    found = certs.untrained(store=repo, pack_id=pack_id, version=version, scope=key.scope, cursor=cursor,
                            page_size=page_size)
    return UntrainedList(pack_id=pack_id, version=version, count=len(found.items),
                         agents=[UntrainedAgent(**a) for a in found.items], page_size=found.page_size,
                         next_cursor=found.next_cursor)
