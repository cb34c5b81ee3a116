"""Admin routes for API keys: list, create (the key is shown once), revoke.

Every call is written to the audit log by the audit trail (`access/audit.py`), naming the admin's key
and the key acted on. A key revoked here stops working at once in this process and within
`auth.KEY_CACHE_TTL_S` in the others.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from qa_service.api.deps import AdminKey, RepoDep
from qa_service.api.paging import DEFAULT_PAGE_SIZE, PAGED, CursorQ, PageSizeQ
from qa_service.api.schemas import Error
from qa_service.auth import find_key, issue_key, revoke_key
from qa_service.services.teams import make_scope
from qa_service.storage.repository import Role, StoredKey

router = APIRouter(tags=["keys"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": Error, "description": "No or bad API key"},
    403: {"model": Error, "description": "Only admin keys manage keys"},
}


class KeyOut(BaseModel):
    id: str
    name: str
    role: Role
    prefix: str | None = Field(description="The key's first characters, to recognise it by; "
                                           "none for keys made before they were kept")
    created_at: datetime
    revoked: bool
    teams: list[str] = Field(default_factory=list, description="The key reads only these teams' calls "
                                                               "(empty: any team)")
    vendors: list[str] = Field(default_factory=list, description="The key reads only these vendors' calls "
                                                                 "(empty: any vendor)")
    agent_id: str | None = Field(None, description="An agent key's agent: it reads that agent's own "
                                                   "calls only")

    @classmethod
    def of(cls, key: StoredKey) -> KeyOut:
        """The public face of a stored key (never its hash)."""
        scope = key.scope
        return cls(id=key.id, name=key.name, role=key.role, prefix=key.prefix, created_at=key.created_at,
                   revoked=key.revoked, teams=list(scope.teams) if scope else [],
                   vendors=list(scope.vendors) if scope else [], agent_id=scope.agent if scope else None)


class NewKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    name: str = Field(min_length=1, max_length=200, description="Who or what uses the key")
    teams: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100,
        description="Scope a supervisor or qa key to these teams: it reads only their agents' calls")
    vendors: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        default_factory=list, max_length=100,
        description="Scope a supervisor or qa key to these vendors (with teams: both must match)")
    agent_id: str | None = Field(None, min_length=1, max_length=100,
                                 description="For role agent (required): the agent whose own scorecards "
                                             "the key reads, acknowledges and disputes")


class NewKeyOut(KeyOut):
    key: str = Field(description="The key itself: shown this once, stored only as a hash")


class KeyList(BaseModel):
    keys: list[KeyOut]
    page_size: int
    next_cursor: str | None = Field(description="Pass as cursor= for the next page; null on the last")


@router.get("/v1/keys", response_model=KeyList, dependencies=PAGED,
            responses={**_ERRORS, 422: {"model": Error, "description": "A cursor this listing did not give"}})
def list_keys(repo: RepoDep, _key: AdminKey, cursor: CursorQ = None,
              page_size: PageSizeQ = DEFAULT_PAGE_SIZE) -> KeyList:
    """API keys, newest first (then by id), with their prefix and whether they are revoked, a page at a
    time (admin only)."""
    found = repo.key_page(cursor, page_size)
    return KeyList(keys=[KeyOut.of(k) for k in found.items], page_size=found.page_size,
                   next_cursor=found.next_cursor)


@router.post("/v1/keys", status_code=201, response_model=NewKeyOut,
             responses={**_ERRORS, 422: {"model": Error, "description": "Unknown role or empty name"}})
def create_key(body: NewKeyIn, repo: RepoDep, response: Response, _key: AdminKey) -> NewKeyOut:
    """Make a key with a role; the answer holds the key itself, which is not shown again (admin only)."""
    scope = make_scope(body.role, body.teams, body.vendors, body.agent_id)
    stored, key = issue_key(repo, body.role, body.name, scope)
    response.headers["Location"] = f"/v1/keys/{stored.id}"
    response.headers["Cache-Control"] = "no-store"
    return NewKeyOut(**KeyOut.of(stored).model_dump(), key=key)


@router.get("/v1/keys/{key_id}", response_model=KeyOut, responses={**_ERRORS, 404: {"model": Error}})
def get_key(key_id: str, repo: RepoDep, _key: AdminKey) -> KeyOut:
    """One key's record (admin only)."""
    return KeyOut.of(find_key(repo, key_id))


@router.post("/v1/keys/{key_id}/revoke", response_model=KeyOut, responses={**_ERRORS, 404: {"model": Error}})
def revoke(key_id: str, repo: RepoDep, _key: AdminKey) -> KeyOut:
    """Revoke a key: it stops working at once (admin only). Revoking a revoked key changes nothing."""
    return KeyOut.of(revoke_key(repo, key_id)[0])
