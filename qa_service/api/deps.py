"""Request dependencies: the repository, queue, input store and settings of the app, and the keys
routes accept."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Path, Request

from qa_service.access.keys import (
    MANAGE_KEYS,
    MANAGE_RULES,
    RAISE_DISPUTES,
    READ_CALL,
    READ_OWN_SCORES,
    READ_RESCORES,
    READ_RULES,
    READ_SCORES,
    RESOLVE_DISPUTES,
    RETRY,
    START_RESCORE,
    SUBMIT,
    requires,
)
from qa_service.services.reviews import REVIEW
from qa_service.settings import Settings
from qa_service.storage.objects import InputStore
from qa_service.storage.repository import Repository, StoredKey


# The app-state lookups are coroutines so that FastAPI runs them on the event loop: a plain function
# dependency costs a trip through the thread pool on every request.
async def get_settings(request: Request) -> Settings:
    """The app's settings."""
    return request.app.state.settings  # type: ignore[no-any-return]


async def get_repo(request: Request) -> Repository:
    """The app's repository."""
    return request.app.state.repo  # type: ignore[no-any-return]


async def get_queue(request: Request) -> Any:
    """The app's RQ queue."""
    return request.app.state.queue


async def get_inputs(request: Request) -> InputStore:
    """The app's input store."""
    return request.app.state.inputs  # type: ignore[no-any-return]


SettingsDep = Annotated[Settings, Depends(get_settings)]
# A call in a path: the service's id or the sender's (services.calls.call_by_id says how one is chosen).
CallIdPath = Annotated[str, Path(description="The service's id for the call (a UUID), or the id its sender "
                                             "gave it (external id)")]
RepoDep = Annotated[Repository, Depends(get_repo)]
QueueDep = Annotated[Any, Depends(get_queue)]
InputsDep = Annotated[InputStore, Depends(get_inputs)]

SubmitKey = Annotated[StoredKey, requires(*SUBMIT)]
ReadCallKey = Annotated[StoredKey, requires(*READ_CALL)]
ReadScoresKey = Annotated[StoredKey, requires(*READ_SCORES)]
ReadOwnScoresKey = Annotated[StoredKey, requires(*READ_OWN_SCORES)]
RaiseDisputeKey = Annotated[StoredKey, requires(*RAISE_DISPUTES)]
ResolveDisputeKey = Annotated[StoredKey, requires(*RESOLVE_DISPUTES)]
ManageRulesKey = Annotated[StoredKey, requires(*MANAGE_RULES)]
ReadRulesKey = Annotated[StoredKey, requires(*READ_RULES)]
RetryKey = Annotated[StoredKey, requires(*RETRY)]
StartRescoreKey = Annotated[StoredKey, requires(*START_RESCORE)]
ReadRescoresKey = Annotated[StoredKey, requires(*READ_RESCORES)]
ReviewKey = Annotated[StoredKey, requires(*REVIEW)]
AdminKey = Annotated[StoredKey, requires(*MANAGE_KEYS)]
