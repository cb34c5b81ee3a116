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
from pydantic import BaseModel

from qa_service.access.keys import MANAGE_CERTIFICATIONS, READ_CERTIFICATIONS, requires
from qa_service.api.deps import RepoDep
from qa_service.api.schemas import Error, error_body
from qa_service.services import certification as certs
from qa_service.services import teams
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


class ExpiringList(BaseModel):
    on: date
    within_days: int
    count: int
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


class UntrainedList(BaseModel):
    pack_id: str
    version: str
    count: int
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


@router.get("/v1/certifications", response_model=list[CertificationOut], responses=_ERRORS)
def list_certifications(repo: RepoDep, key: ReadKey, agent_id: str | None = None) -> list[CertificationOut]:
    """Every certification (one agent's), by agent, name and issue date."""
    found = repo.certification.certifications(agent_id=agent_id)
    return [CertificationOut.of(c) for c in teams.visible(repo, key, found, lambda c: c.agent_id)]


@router.get("/v1/certifications/expiring", response_model=ExpiringList, responses=_ERRORS)
def expiring_certifications(
    repo: RepoDep, key: ReadKey,
    within_days: Annotated[int, Query(ge=0, le=3650)] = certs.DEFAULT_WITHIN_DAYS,
    on: Annotated[date | None, Query(description="Count from this day (default: today, UTC)")] = None,
) -> ExpiringList:
    """Certifications that expire within this many days, soonest first (renewed ones left out)."""
    day = on or _today()
    items = teams.visible(repo, key, certs.expiring(store=repo, today=day, within_days=within_days),
                          lambda i: i.certification.agent_id)
    return ExpiringList(on=day, within_days=within_days, count=len(items),
                        certifications=[ExpiringOut.of_item(i) for i in items])


@router.get("/v1/certifications/lapsed", response_model=list[ExpiringOut], responses=_ERRORS)
def lapsed_certifications(
    repo: RepoDep, key: ReadKey,
    on: Annotated[date | None, Query(description="As of this day (default: today, UTC)")] = None,
) -> list[ExpiringOut]:
    """Certifications that have expired and were not renewed, most recently lapsed first."""
    lapsed = certs.lapsed(store=repo, today=on or _today())
    shown = teams.visible(repo, key, lapsed, lambda i: i.certification.agent_id)
    return [ExpiringOut.of_item(i) for i in shown]


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


@router.get("/v1/training-records", response_model=list[TrainingOut], responses=_ERRORS)
def list_training(repo: RepoDep, key: ReadKey, agent_id: str | None = None, pack_id: str | None = None,
                  version: str | None = None) -> list[TrainingOut]:
    """Training records, filtered by agent, policy pack and version."""
    found = repo.certification.training(agent_id=agent_id, pack_id=pack_id, pack_version=version)
    return [TrainingOut.of(r) for r in teams.visible(repo, key, found, lambda r: r.agent_id)]


@router.get("/v1/policy-packs/{pack_id}/versions/{version}/untrained", response_model=UntrainedList,
            tags=["rules"], responses={**_ERRORS, 404: {"model": Error}})
def untrained_agents(pack_id: str, version: str, repo: RepoDep, key: ReadKey) -> UntrainedList:
    """Agents who took calls under this policy pack (any version) or hold a certification covering it,
    and have no training record for this version."""
    agents = teams.visible(repo, key, certs.untrained(store=repo, pack_id=pack_id, version=version),
                           lambda a: str(a["agent_id"]))
    return UntrainedList(pack_id=pack_id, version=version, count=len(agents),
                         agents=[UntrainedAgent(**a) for a in agents])
