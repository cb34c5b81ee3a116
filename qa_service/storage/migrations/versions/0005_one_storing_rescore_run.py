"""At most one queued or running storing rescore run per rubric (`uq_rescore_runs_one_storing`).

Two API requests at the same moment could both find no run under way and both be stored. Runs
that already overlap are resolved before the index is made: per rubric the oldest stays, the
others fail with a reason that says so (they changed nothing yet, or stop when a worker takes
them: a worker only starts queued runs).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

STORING_RUN = "status IN ('queued', 'running') AND NOT dry_run"
REASON = ("another storing rescore run of this rubric was already under way; "
          "start this one again when that one is done")


def upgrade() -> None:
    conn = op.get_bind()
    runs = sa.table("rescore_runs", sa.column("id"), sa.column("rubric_id"), sa.column("created_at"),
                    sa.column("status"), sa.column("failure_reason"), sa.column("finished_at"))
    rows = conn.execute(sa.select(runs.c.id, runs.c.rubric_id).where(sa.text(STORING_RUN))
                        .order_by(runs.c.rubric_id, runs.c.created_at, runs.c.id)).all()
    seen: set[str] = set()
    for run_id, rubric_id in rows:
        if rubric_id in seen:
            conn.execute(runs.update().where(runs.c.id == run_id).values(
                status="failed", failure_reason=REASON, finished_at=datetime.now(UTC)))
        seen.add(rubric_id)
    op.create_index("uq_rescore_runs_one_storing", "rescore_runs", ["rubric_id"], unique=True,
                    sqlite_where=sa.text(STORING_RUN), postgresql_where=sa.text(STORING_RUN))


def downgrade() -> None:
    op.drop_index("uq_rescore_runs_one_storing", table_name="rescore_runs")
