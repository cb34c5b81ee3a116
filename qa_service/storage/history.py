"""Every stored version of a call's scorecard, oldest first: what each said and under which rules.

The call page shows them as the call's history ("was 87.5 PASS under rubric visa-intake 2026.10").
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from qa_service.storage import tables as t
from qa_service.storage.db import SqlPart, utc, uuid_or_404

MAX_VERSIONS = 100  # a call rescored more often than this shows its newest ones


@dataclass(frozen=True)
class Version:
    """One scorecard version: its verdict (and the verdict after reviews, when a reviewer changed it),
    the rules it was scored under and, for a version made by rescoring, what it was scored from."""

    version: int
    created_at: datetime
    score: float
    passed: bool
    auto_fail: bool
    rubric: dict[str, Any]
    policies: dict[str, Any]
    rescored: bool
    reviewed_score: float | None
    reviewed_passed: bool | None
    latest: bool


class SqlHistory(SqlPart):
    """Scorecard versions over SQL."""

    def __init__(self, engine: sa.Engine):
        self.engine = engine

    def versions(self, call_id: str) -> list[Version]:
        """The call's scorecard versions, oldest first (none for a call not scored or not stored)."""
        sc = t.scorecards
        query = (sa.select(sc.c.version, sc.c.created_at, sc.c.score, sc.c.passed, sc.c.auto_fail, sc.c.data,
                           sc.c.reviewed_score, sc.c.reviewed_passed, sc.c.latest)
                 .where(sc.c.call_id == uuid_or_404(call_id, "call"))
                 .order_by(sc.c.version.desc()).limit(MAX_VERSIONS))
        with self.engine.connect() as conn:
            rows = conn.execute(query).all()
        return [Version(version=r.version, created_at=utc(r.created_at), score=float(r.score),
                        passed=bool(r.passed), auto_fail=bool(r.auto_fail),
                        rubric=dict(r.data.get("rubric") or {}), policies=dict(r.data.get("policies") or {}),
                        rescored="rescored_from" in r.data,
                        reviewed_score=r.reviewed_score, reviewed_passed=r.reviewed_passed,
                        latest=bool(r.latest))
                for r in reversed(rows)]
