"""Calls in the SQL database: registered, processed, failed, retried."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from qa_service.errors import Conflict, NotFound
from qa_service.storage import tables as t
from qa_service.storage.db import SqlPart, utc, utc_now, uuid_or_404
from qa_service.storage.repository import (
    NewCall,
    StoredCall,
    canonical_uuid,
)

log = logging.getLogger(__name__)


class SqlCalls(SqlPart):
    """`CallStore` over SQL."""


    def add_call(self, call: NewCall) -> tuple[StoredCall, bool]:
        """Store a new call; with a known external id return the existing call and False instead."""
        if call.external_id is not None:
            existing = self.find_call(call.external_id)
            if existing is not None:
                return existing, False
        now = utc_now()
        values = {
            "id": call.id, "external_id": call.external_id, "agent_id": call.agent_id,
            "call_date": call.call_date, "status": "queued", "failure_reason": None,
            "rubric_id": call.rubric_id, "rubric_version": call.rubric_version,
            "policy_pack_id": call.policy_pack_id, "policy_pack_version": call.policy_pack_version,
            "channels": call.channels, "source": call.source, "input_kind": call.input_kind,
            "input_path": call.input_path, "input_url": call.input_url, "attempts": 0,
            "created_at": now, "updated_at": now, "submitted_by_key_id": call.submitted_by_key_id,
            "channel": call.channel,
        }
        try:
            with self._write() as conn:
                conn.execute(t.calls.insert().values(**values))
        except IntegrityError:
            # Two requests with the same external id raced; the other one won.
            if call.external_id is not None:
                existing = self.find_call(call.external_id)
                if existing is not None:
                    return existing, False
            raise Conflict(f"call {call.id} already exists") from None
        return self.get_call(call.id), True

    def get_call(self, call_id: str) -> StoredCall:
        """The call with this id, or NotFound."""
        call_id = uuid_or_404(call_id, "call")
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(t.calls).where(t.calls.c.id == call_id)).mappings().first()
        if row is None:
            raise NotFound(f"no call with id {call_id!r}")
        return _call(row)

    def find_call(self, external_id: str) -> StoredCall | None:
        """The call registered under this external id, if any."""
        with self.engine.connect() as conn:
            query = sa.select(t.calls).where(t.calls.c.external_id == external_id)
            row = conn.execute(query).mappings().first()
        return _call(row) if row is not None else None

    def external_ids(self, call_ids: Iterable[str]) -> dict[str, str | None]:
        """The external id of each of these calls that exists (None: the sender gave none)."""
        ids = sorted({i for i in (canonical_uuid(c) for c in call_ids) if i is not None})
        found: dict[str, str | None] = {}
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):  # bounded IN lists
                query = sa.select(t.calls.c.id, t.calls.c.external_id).where(
                    t.calls.c.id.in_(ids[start:start + 500]))
                found.update((str(i), e) for i, e in conn.execute(query))
        return found

    def calls_with_status(self, statuses: Iterable[str]) -> list[StoredCall]:
        """Every call whose status is one of these, oldest first."""
        query = sa.select(t.calls).where(t.calls.c.status.in_(list(statuses))).order_by(t.calls.c.created_at)
        with self.engine.connect() as conn:
            return [_call(r) for r in conn.execute(query).mappings()]

    def calls_with_plain_input(self, statuses: Iterable[str]) -> list[StoredCall]:
        """Calls with one of these statuses whose input is stored unsealed, oldest first."""
        from qa_service.storage.inputs import SEALED_SUFFIX

        c = t.calls.c
        query = sa.select(t.calls).where(c.status.in_(list(statuses)), c.input_path.is_not(None),
                                         sa.not_(c.input_path.endswith(SEALED_SUFFIX))).order_by(c.created_at)
        with self.engine.connect() as conn:
            return [_call(r) for r in conn.execute(query).mappings()]

    def failed_calls_with_input(self, failed_before: datetime) -> list[StoredCall]:
        """Failed calls that failed before this moment and still have an input stored, oldest first."""
        c = t.calls.c
        # A failed call's row changes only when it fails and when its input is sealed at that moment
        # (a retry makes it queued again), so updated_at is when it failed.
        query = sa.select(t.calls).where(c.status == "failed", c.input_path.is_not(None),
                                         c.updated_at < utc(failed_before)).order_by(c.created_at)
        with self.engine.connect() as conn:
            return [_call(r) for r in conn.execute(query).mappings()]

    def _update_call(self, call_id: str, **values: Any) -> StoredCall:
        call_id = uuid_or_404(call_id, "call")
        with self._write() as conn:
            result = conn.execute(
                t.calls.update().where(t.calls.c.id == call_id).values(updated_at=utc_now(), **values))
            if result.rowcount == 0:
                raise NotFound(f"no call with id {call_id!r}")
        return self.get_call(call_id)

    def start_call(self, call_id: str) -> StoredCall:
        """Mark a call processing and count the attempt."""
        return self._update_call(call_id, status="processing", failure_reason=None,
                                 attempts=t.calls.c.attempts + 1)

    def requeue_call(self, call_id: str) -> StoredCall:
        """Put a call back to queued, clearing any failure reason."""
        return self._update_call(call_id, status="queued", failure_reason=None)

    def fail_call(self, call_id: str, reason: str) -> StoredCall:
        """Mark a call failed with a reason that is safe to show (no personal data)."""
        return self._update_call(call_id, status="failed", failure_reason=reason[:2000])

    def set_input_path(self, call_id: str, path: str | None) -> None:
        """Record where the call's input is stored (None once it has been deleted)."""
        self._update_call(call_id, input_path=path)

    def touch_call(self, call_id: str) -> None:
        """Note that a worker is still processing the call (its heartbeat: updated_at moves on)."""
        self._update_call(call_id)


def _call(row: Any) -> StoredCall:
    return StoredCall(
        id=str(row["id"]), external_id=row["external_id"], agent_id=row["agent_id"],
        call_date=row["call_date"],
        status=row["status"], failure_reason=row["failure_reason"], rubric_id=row["rubric_id"],
        rubric_version=row["rubric_version"], policy_pack_id=row["policy_pack_id"],
        policy_pack_version=row["policy_pack_version"], channels=row["channels"], source=row["source"],
        input_kind=row["input_kind"], input_path=row["input_path"], input_url=row["input_url"],
        attempts=int(row["attempts"]), created_at=utc(row["created_at"]), updated_at=utc(row["updated_at"]),
        submitted_by_key_id=row["submitted_by_key_id"], channel=row["channel"],
    )
