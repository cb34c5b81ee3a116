"""Erasure routes (admin): a call by id or external id, or every call of an agent; the answer is the
receipt (services/erasure.py). The audit log keeps the receipt rows the erasure writes, which hold
no external id and no agent id."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from qa_service.api.deps import AdminKey, InputsDep, QueueDep, RepoDep, SettingsDep
from qa_service.api.schemas import Error
from qa_service.services.erasure import Asker, calls_to_erase, erase_calls
from qa_service.settings import Settings
from qa_service.storage.objects import InputStore
from qa_service.storage.repository import Repository, StoredKey

router = APIRouter(tags=["erasure"])

_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The receipt: what was removed, when, at whose request"},
    401: {"model": Error, "description": "No or bad API key"},
    403: {"model": Error, "description": "Only an admin key may erase"},
    404: {"model": Error, "description": "No such call (or the agent has none)"},
    409: {"model": Error, "description": "A worker is scoring the call right now; erase again in a minute"},
    503: {"model": Error, "description": "Redis or the object store did not answer; erase again"},
}


def _erase(repo: Repository, settings: Settings, inputs: InputStore, queue: Any, key: StoredKey,
           **named: str) -> dict[str, Any]:
    calls = calls_to_erase(store=repo, **named)
    receipt = erase_calls(store=repo, objects=inputs, redis=queue.connection,
                          settings=settings, calls=calls,
                          asker=Asker(key_id=key.id, name=key.name, role=key.role),
                          external_id=named.get("external_id"), agent_id=named.get("agent_id"))
    return receipt.to_dict()


@router.delete("/v1/calls/{call_id}", responses=_RESPONSES)
def erase_call(call_id: str, repo: RepoDep, settings: SettingsDep, inputs: InputsDep, queue: QueueDep,
               key: AdminKey) -> Any:
    """Erase a call everywhere: rows, every scorecard version, reviews, stored objects, queued jobs."""
    return _erase(repo, settings, inputs, queue, key, call_id=call_id)


@router.delete("/v1/calls", responses=_RESPONSES)
def erase_call_by_external_id(
        repo: RepoDep, settings: SettingsDep, inputs: InputsDep, queue: QueueDep, key: AdminKey,
        external_id: Annotated[str, Query(min_length=1, max_length=200,
                                          description="The call id its sender gave it")]) -> Any:
    """Erase the call its sender knows by this external id, as DELETE /v1/calls/{call_id} does."""
    return _erase(repo, settings, inputs, queue, key, external_id=external_id)


@router.delete("/v1/agents/{agent_id}/calls", responses=_RESPONSES)
def erase_agent_calls(agent_id: str, repo: RepoDep, settings: SettingsDep, inputs: InputsDep, queue: QueueDep,
                      key: AdminKey) -> Any:
    """Erase every call of an agent, as DELETE /v1/calls/{call_id} erases one."""
    return _erase(repo, settings, inputs, queue, key, agent_id=agent_id)
