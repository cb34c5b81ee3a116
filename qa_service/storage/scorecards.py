"""Scorecards in the SQL database: one version per scoring of a call; the latest per call counts."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa

from qa_service.errors import NotFound
from qa_service.review import outdated_count
from qa_service.storage import rollups, search
from qa_service.storage import tables as t
from qa_service.storage.calls import SqlCalls
from qa_service.storage.db import utc, utc_now, uuid_or_404
from qa_service.storage.repository import (
    AgentSummary,
    ScorecardText,
    StoredScorecard,
)

log = logging.getLogger(__name__)


class SqlScorecards(SqlCalls):
    """`ScorecardStore` over SQL (finishing a call stores its first scorecard)."""


    def finish_call(self, call_id: str, scorecard: dict[str, Any]) -> StoredScorecard:
        """Store a new scorecard version and mark the call done, in one transaction."""
        call = self.get_call(call_id)
        with self._write() as conn:
            last = conn.execute(
                sa.select(sa.func.max(t.scorecards.c.version)).where(t.scorecards.c.call_id == call.id)
            ).scalar()
            now = utc_now()
            values = _scorecard_row(call, (last or 0) + 1, scorecard, now)
            with rollups.kept(conn, [call.id]):
                conn.execute(t.scorecards.insert().values(**values))
                _demote_earlier(conn, [call.id])
            search.index_cards(conn, [(call.id, scorecard)])
            conn.execute(t.calls.update().where(t.calls.c.id == call.id).values(
                status="done", failure_reason=None, updated_at=now))
        return self.get_scorecard(call.id, values["version"])

    def get_scorecard(self, call_id: str, version: int | None = None) -> StoredScorecard:
        """A call's scorecard (latest version unless one is named), or NotFound."""
        call_id = uuid_or_404(call_id, "call")
        query = sa.select(t.scorecards).where(t.scorecards.c.call_id == call_id)
        if version is not None:
            query = query.where(t.scorecards.c.version == version)
        query = query.order_by(t.scorecards.c.version.desc()).limit(1)
        with self.engine.connect() as conn:
            row = conn.execute(query).mappings().first()
        if row is None:
            which = f"version {version} of the scorecard" if version is not None else "a scorecard"
            raise NotFound(f"call {call_id} has no {which}")
        return _scorecard(row, with_data=True)

    def scorecard_text(self, call_id: str, version: int | None = None) -> ScorecardText:
        """The call's status with its scorecard (latest unless a version is named) as JSON text, in one
        read; NotFound when there is no such call."""
        call_id = uuid_or_404(call_id, "call")
        c, sc = t.calls, t.scorecards
        which = sc.c.latest if version is None else sc.c.version == version
        # The stored text goes out as it is: no decoding into Python and encoding again per request.
        query = (sa.select(c.c.id, c.c.status, c.c.failure_reason, sc.c.version, sa.cast(sc.c.data, sa.Text))
                 .select_from(c.outerjoin(sc, sa.and_(sc.c.call_id == c.c.id, which)))
                 .where(c.c.id == call_id))
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"no call with id {call_id!r}")
        return ScorecardText(call_id=str(row[0]), status=row[1], failure_reason=row[2],
                             version=int(row[3]) if row[3] is not None else None, json=row[4])

    def agent_scorecards(self, agent_id: str, date_from: date | None = None, date_to: date | None = None,
                         limit: int = 100) -> tuple[list[StoredScorecard], AgentSummary]:
        """An agent's latest scorecard per call in a date range (newest first) and their aggregate."""
        sc = t.scorecards
        conds = [sc.c.agent_id == agent_id, sc.c.latest, *_date_range(date_from, date_to)]
        columns = [c for c in sc.c if c.name != "data"]
        rows_q = (sa.select(*columns).where(*conds)
                  .order_by(sc.c.call_date.desc(), sc.c.created_at.desc()).limit(limit))
        with self.engine.connect() as conn:
            rows = [_scorecard(r, with_data=False) for r in conn.execute(rows_q).mappings()]
        from qa_service.storage.views import Filters, Views  # the same aggregate as the agent page's

        # The reviewed verdicts (under dual review, only what two reviewers agreed on), from the rollup.
        views, f = Views(self.engine), Filters(agent_id=agent_id, date_from=date_from, date_to=date_to)
        totals = views.totals(f)
        summary = AgentSummary(
            count=totals.count, mean_score=totals.mean_score, pass_rate=totals.pass_rate,
            auto_fail_count=totals.auto_fail_count,
            response_times=tuple(views.response_rates(f)) if totals.count else (),
        )
        return rows, summary

    def latest_scorecards(self, date_from: date | None = None, date_to: date | None = None,
                          rubric_id: str | None = None, batch: int = 500) -> Iterator[StoredScorecard]:
        """Every call's latest scorecard in a date range (optionally for one rubric id), oldest first."""
        sc = t.scorecards
        query = (sa.select(sc).where(sc.c.latest, *_date_range(date_from, date_to))
                 .order_by(sc.c.call_date, sc.c.call_id))
        if rubric_id is not None:
            query = query.where(sc.c.rubric_id == rubric_id)
        with self.engine.connect() as conn:
            result = conn.execution_options(yield_per=batch).execute(query)
            for row in result.mappings():
                yield _scorecard(row, with_data=True)

    def add_scorecard_versions(self, items: Sequence[tuple[str, dict[str, Any]]]) -> int:
        """Store new scorecard versions for calls that are done (rescoring), in one transaction."""
        sc = t.scorecards
        if not items:
            return 0
        ids = [call_id for call_id, _ in items]
        now = utc_now()
        with self._write() as conn:
            last = dict(conn.execute(sa.select(sc.c.call_id, sa.func.max(sc.c.version))
                                     .where(sc.c.call_id.in_(ids)).group_by(sc.c.call_id)).all())
            calls = {r.id: r for r in conn.execute(sa.select(t.calls).where(t.calls.c.id.in_(ids)))}
            rows = []
            for call_id, card in items:
                if call_id not in calls:
                    raise NotFound(f"no call with id {call_id!r}")
                version = (last.get(call_id) or 0) + 1
                last[call_id] = version  # the same call twice in one batch gets two versions
                rows.append(_scorecard_row(calls[call_id], version, card, now))
            with rollups.kept(conn, ids):
                conn.execute(sc.insert(), rows)
                _demote_earlier(conn, list(dict.fromkeys(ids)))
            search.index_cards(conn, [(calls[call_id].id, card) for call_id, card in items])
        return len(rows)


def _scorecard_row(call: Any, version: int, card: dict[str, Any], now: datetime) -> dict[str, Any]:
    """The scorecards-table row for one version of a call's scorecard."""
    rubric = card.get("rubric") or {}
    return {
        "call_id": call.id, "version": version, "agent_id": call.agent_id, "call_date": call.call_date,
        "score": float(card["score"]), "passed": bool(card["passed"]),
        "auto_fail": bool(card.get("auto_fail", False)), "rubric_id": str(rubric.get("id", call.rubric_id)),
        "rubric_version": str(rubric.get("version", call.rubric_version)),
        "rubric_sha256": str(rubric.get("sha256", "")), "data": card, "created_at": now, "latest": True,
        "to_check": len(card.get("to_check") or []),
        "outdated": outdated_count(card),
        "provisional": bool(card.get("provisional", False)),
        "findings": len(card.get("findings") or []),
    }


def _demote_earlier(conn: Any, call_ids: list[str]) -> None:
    """Leave `latest` set only on the newest version of each of these calls (same transaction)."""
    sc = t.scorecards
    s2 = sc.alias("s2")
    newest = sa.select(sa.func.max(s2.c.version)).where(s2.c.call_id == sc.c.call_id).scalar_subquery()
    for k in range(0, len(call_ids), 500):
        conn.execute(sc.update().where(sc.c.call_id.in_(call_ids[k:k + 500]), sc.c.latest,
                                       sc.c.version < newest).values(latest=False))


def _date_range(date_from: date | None, date_to: date | None) -> list[Any]:
    sc = t.scorecards
    conds: list[Any] = []
    if date_from is not None:
        conds.append(sc.c.call_date >= date_from)
    if date_to is not None:
        conds.append(sc.c.call_date <= date_to)
    return conds


def _scorecard(row: Any, *, with_data: bool) -> StoredScorecard:
    return StoredScorecard(
        call_id=str(row["call_id"]), version=int(row["version"]), agent_id=row["agent_id"],
        call_date=row["call_date"], score=float(row["score"]), passed=bool(row["passed"]),
        auto_fail=bool(row["auto_fail"]), rubric_id=row["rubric_id"], rubric_version=row["rubric_version"],
        rubric_sha256=row["rubric_sha256"], created_at=utc(row["created_at"]),
        data=dict(row["data"]) if with_data else {},
    )
