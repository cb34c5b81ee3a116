"""Calibration sessions in the SQL database: the session, its pinned calls, its reviewers, their sheets.

A sheet is taken only while its session is open, checked in the transaction that stores it, so a
sheet sent while QA closes the session is either in before the close or refused.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import Engine

from qa_service.calibration import CalibrationSession, Reviewer, SessionCall, Sheet
from qa_service.errors import Conflict, NotFound
from qa_service.storage import paging
from qa_service.storage import tables as t
from qa_service.storage.db import utc, uuid_or_404, writing


class SessionClosed(Conflict):
    """The session is closed: its answers are revealed and no sheet changes any more (HTTP 409)."""


class SqlCalibration:
    """`CalibrationStore` over the SQL database."""

    def __init__(self, engine: Engine):
        self._engine = engine

    def add_session(self, session: CalibrationSession) -> CalibrationSession:
        """Store a new session with its calls and reviewers, in one transaction."""
        with writing(self._engine) as conn:
            conn.execute(t.calibration_sessions.insert().values(
                id=session.id, name=session.name, status=session.status,
                created_by_key_id=session.created_by_key_id, created_by_name=session.created_by_name,
                created_at=session.created_at))
            conn.execute(t.calibration_calls.insert(), [
                {"session_id": session.id, "call_id": c.call_id, "scorecard_version": c.scorecard_version,
                 "position": c.position} for c in session.calls])
            conn.execute(t.calibration_reviewers.insert(), [
                {"session_id": session.id, "key_id": r.key_id, "name": r.name, "position": n}
                for n, r in enumerate(session.reviewers)])
        return self.get_session(session.id)

    def get_session(self, session_id: str) -> CalibrationSession:
        """The session with this id, or NotFound."""
        session_id = uuid_or_404(session_id, "calibration session")
        s = t.calibration_sessions
        found = self._sessions(sa.select(s).where(s.c.id == session_id))
        if not found:
            raise NotFound(f"no calibration session with id {session_id!r}")
        return found[0]

    def list_sessions(self, after: tuple[datetime, str] | None = None,
                      limit: int = 100) -> list[CalibrationSession]:
        """Sessions, newest first by (created time, id), from the one after the key `after` when given."""
        s = t.calibration_sessions
        order = (s.c.created_at, s.c.id)
        query = sa.select(s)
        if after is not None:
            query = paging.after(query, order, after, descending=True)
        return self._sessions(query.order_by(*(col.desc() for col in order)).limit(limit))

    def _sessions(self, query: sa.Select) -> list[CalibrationSession]:
        """The sessions the query reads, in its order, with their calls and reviewers."""
        c, r = t.calibration_calls, t.calibration_reviewers
        with self._engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
            ids = [str(row["id"]) for row in rows]
            calls: dict[str, list[SessionCall]] = defaultdict(list)
            reviewers: dict[str, list[Reviewer]] = defaultdict(list)
            if ids:
                for row in conn.execute(sa.select(c).where(c.c.session_id.in_(ids))
                                        .order_by(c.c.position)).mappings():
                    calls[str(row["session_id"])].append(SessionCall(
                        call_id=str(row["call_id"]), scorecard_version=int(row["scorecard_version"]),
                        position=int(row["position"])))
                for row in conn.execute(sa.select(r).where(r.c.session_id.in_(ids))
                                        .order_by(r.c.position)).mappings():
                    reviewers[str(row["session_id"])].append(Reviewer(key_id=row["key_id"], name=row["name"]))
        return [CalibrationSession(
            id=str(row["id"]), name=row["name"], status=row["status"],
            created_by_key_id=row["created_by_key_id"], created_by_name=row["created_by_name"],
            created_at=utc(row["created_at"]), calls=tuple(calls[str(row["id"])]),
            reviewers=tuple(reviewers[str(row["id"])]),
            closed_at=utc(row["closed_at"]) if row["closed_at"] is not None else None,
            closed_by_name=row["closed_by_name"]) for row in rows]

    def put_sheet(self, sheet: Sheet) -> Sheet:
        """Store a reviewer's sheet for a call, replacing an earlier one; SessionClosed when the session
        is closed, NotFound when it does not exist."""
        sh, s = t.calibration_sheets, t.calibration_sessions
        answers = {"criteria": dict(sheet.criteria), "violations": dict(sheet.violations)}
        with writing(self._engine) as conn:
            status = conn.execute(sa.select(s.c.status).where(s.c.id == sheet.session_id)).scalar()
            if status is None:
                raise NotFound(f"no calibration session with id {sheet.session_id!r}")
            if status != "open":
                raise SessionClosed("the calibration session is closed: its answers are revealed")
            key = (sh.c.session_id == sheet.session_id, sh.c.call_id == sheet.call_id,
                   sh.c.reviewer_key_id == sheet.reviewer_key_id)
            conn.execute(sh.delete().where(*key))
            conn.execute(sh.insert().values(session_id=sheet.session_id, call_id=sheet.call_id,
                                            reviewer_key_id=sheet.reviewer_key_id, answers=answers,
                                            submitted_at=sheet.submitted_at))
        return sheet

    def sheets(self, session_id: str, reviewer_key_id: str | None = None) -> list[Sheet]:
        """The sheets of a session (one reviewer's only, when named), by call and reviewer."""
        sh = t.calibration_sheets
        query = (sa.select(sh).where(sh.c.session_id == session_id)
                 .order_by(sh.c.call_id, sh.c.reviewer_key_id))
        if reviewer_key_id is not None:
            query = query.where(sh.c.reviewer_key_id == reviewer_key_id)
        with self._engine.connect() as conn:
            return [Sheet(session_id=str(r["session_id"]), call_id=str(r["call_id"]),
                          reviewer_key_id=r["reviewer_key_id"],
                          criteria=dict(r["answers"].get("criteria") or {}),
                          violations=dict(r["answers"].get("violations") or {}),
                          submitted_at=utc(r["submitted_at"])) for r in conn.execute(query).mappings()]

    def close_session(self, session_id: str, by: str, at: datetime) -> CalibrationSession:
        """Close an open session (a closed one stays as it was closed); NotFound."""
        s = t.calibration_sessions
        session_id = uuid_or_404(session_id, "calibration session")
        with writing(self._engine) as conn:
            conn.execute(s.update().where(s.c.id == session_id, s.c.status == "open")
                         .values(status="closed", closed_at=at, closed_by_name=by))
        return self.get_session(session_id)
