"""Erasure: remove a call everywhere and answer with a receipt the audit log keeps.

A call is found by its id, by the external id its sender gave it, or with every other call of its
agent. Erasing it removes, in this order:

1. its RQ jobs (waiting, scheduled, running, failed or finished: its own and its retries, and the
   webhook deliveries that name it) and every Redis key named after it (queueing.forget_calls);
2. everything the input store holds of it: input, sealed input, redacted audio, partial writes;
3. its rows (the call, every scorecard version, every review), its entries in rescore summaries,
   and the call's id in earlier audit rows, which then name the receipt (storage/erasure.py).

The database goes last, so a failure midway (Redis or the object store unreachable) leaves the call
findable, and erasing it again finishes the work. Redis is cleaned once more after the rows are
gone, in case a worker's recovery pass queued the call again in between. A call a live worker is
scoring right now is refused (Conflict): its worker would write its result back. The receipt names
internal ids, counts and the key that asked; the external id and the agent id appear only in the
answer to the caller, never in the audit log.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from qa_service.errors import Conflict, InputError, NotFound, TransientError
from qa_service.queueing import call_lease_key, forget_calls
from qa_service.settings import Settings
from qa_service.storage.objects import InputStore
from qa_service.storage.repository import ErasureNote, Repository, StoredCall


@dataclass(frozen=True)
class Asker:
    """Who asks for an erasure: an API key, or a user of the command line (no key id)."""

    key_id: str | None
    name: str
    role: str | None = "admin"


@dataclass(frozen=True)
class Receipt:
    """What an erasure removed, when, and at whose request (the audit log keeps one row per call)."""

    id: str
    erased_at: datetime
    key_id: str | None
    key_name: str
    calls: dict[str, dict[str, int]]  # call id -> kind -> how many were removed
    # What the caller named the calls by; in the answer only, never in the audit log.
    external_id: str | None = None
    agent_id: str | None = None
    removed: dict[str, int] = field(default_factory=dict)  # kind -> total

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (the answer to the caller)."""
        out: dict[str, Any] = {
            "receipt_id": self.id, "erased_at": self.erased_at.isoformat(), "key_id": self.key_id,
            "key_name": self.key_name, "call_ids": sorted(self.calls), "removed": self.removed,
            "calls": self.calls}
        if self.external_id is not None:
            out["external_id"] = self.external_id
        if self.agent_id is not None:
            out["agent_id"] = self.agent_id
        return out


def calls_to_erase(*, store: Repository, call_id: str | None = None, external_id: str | None = None,
                   agent_id: str | None = None) -> list[StoredCall]:
    """The calls one erasure names: by id, by external id, or all of an agent's; NotFound for none."""
    if sum(x is not None for x in (call_id, external_id, agent_id)) != 1:
        raise InputError("name the calls to erase by exactly one of: call id, external id, agent id")
    if call_id is not None:
        return [store.get_call(call_id)]
    if external_id is not None:
        found = store.find_call(external_id)
        if found is None:
            raise NotFound("no call with this external id")  # the id is not echoed: it may be personal
        return [found]
    assert agent_id is not None
    calls = [store.get_call(i) for i in store.call_ids_of_agent(agent_id)]
    if not calls:
        raise NotFound("this agent has no calls")
    return calls


def erase_calls(*, store: Repository, objects: InputStore, redis: Any, settings: Settings,
                calls: list[StoredCall], asker: Asker, external_id: str | None = None,
                agent_id: str | None = None, now: datetime | None = None,
                merge_search: bool = True) -> Receipt:
    """Erase these calls everywhere (jobs and keys in Redis, stored objects, rows) and return the receipt.

    `redis` is a client of QA_REDIS_URL. Conflict when a live worker is scoring one of them (nothing is
    erased then); TransientError when Redis or the object store does not answer (erasing again
    finishes the work). `merge_search` False leaves the erased words in the search index's pages until
    `store.merge_search_index()` (a sweep erasing many calls one by one merges once, at its end).
    """
    ids = [c.id for c in calls]
    try:
        busy = [i for i in ids if redis.exists(call_lease_key(i))]
    except Exception as exc:  # redis-py raises several types; all mean "Redis is away"
        raise TransientError(f"Redis does not answer ({type(exc).__name__}); nothing was erased") from None
    if busy:
        raise Conflict(f"{len(busy)} of the calls (first {busy[0]}) are being scored by a worker right now; "
                       "erase again in a minute, once it is done")
    queues = [settings.queue_name, f"{settings.queue_name}-notify"]
    elsewhere = forget_calls(redis, queues, ids)
    for call_id in ids:
        elsewhere[call_id]["stored_objects"] = len(objects.list_call(call_id))
        objects.delete_call(call_id)
        if objects.has_objects(call_id):
            raise TransientError(f"the input store still holds objects of call {call_id}; erase it again")
    receipt_id = str(uuid.uuid4())
    note = ErasureNote(id=receipt_id, key_id=asker.key_id, key_name=asker.name, role=asker.role,
                       removed_elsewhere=elsewhere, agent_id=agent_id, merge_search=merge_search)
    removed = store.erase_calls(ids, receipt=note)
    # A recovery pass may have queued a call again while its rows still stood.
    for call_id, again in forget_calls(redis, queues, ids).items():
        if call_id in removed:
            for kind, n in again.items():
                removed[call_id][kind] = removed[call_id].get(kind, 0) + n
    totals: dict[str, int] = {}
    for counts in removed.values():
        for kind, n in counts.items():
            if kind not in ("rescore_runs_changed", "audit_rows_repointed"):
                totals[kind] = totals.get(kind, 0) + n
    first = next(iter(removed.values()), {})
    for kind in ("rescore_runs_changed", "audit_rows_repointed"):
        totals[kind] = first.get(kind, 0)
    return Receipt(id=receipt_id, erased_at=now or datetime.now(UTC), key_id=asker.key_id,
                   key_name=asker.name, calls=removed, external_id=external_id, agent_id=agent_id,
                   removed=totals)
