"""Erasing calls in the SQL database: every row that names them goes, and the audit log keeps a receipt.

Rows removed: the call, every scorecard version, every review. Rescore runs keep their counts but
lose the entries that name an erased call (their `flipped_calls` and refresher lists), and the agent
when all of an agent's calls are erased. Earlier audit rows that name an erased call (reads, reviews,
the submission) stay, as who did what and when, but name the receipt instead of the call, so the
receipt rows are the only rows that still hold the call's id. Nothing is kept that the caller sent
about the call: no external id, no agent id.
"""

from __future__ import annotations

import copy
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from qa_service.storage import rollups, search
from qa_service.storage import tables as t
from qa_service.storage.db import SqlPart, utc_now
from qa_service.storage.repository import ErasureNote, canonical_uuid
from qa_service.storage.review import DETAILS_MAX

RECEIPT_ACTION = "erased_call"
RECEIPT_KIND = "erasure"


def receipt_details(receipt_id: str, counts: dict[str, int]) -> str:
    """The details of a receipt row: the receipt id and what was removed, by kind."""
    return (f"receipt={receipt_id} " + " ".join(f"{k}={v}" for k, v in sorted(counts.items())))[:DETAILS_MAX]


def summary_without(summary: dict[str, Any], call_ids: Collection[str],
                    agent_id: str | None = None) -> dict[str, Any]:
    """A rescore run's summary without the entries naming these calls (or, with `agent_id`, that agent)."""
    out = copy.deepcopy(summary)
    out["flipped_calls"] = [c for c in out.get("flipped_calls") or [] if c.get("call_id") not in call_ids
                            and (agent_id is None or c.get("agent_id") != agent_id)]
    refresher: dict[str, Any] = {}
    for agent, facts in (out.get("refresher") or {}).items():
        if agent_id is not None and agent == agent_id:
            continue
        kept = {fact: [c for c in calls if c.get("call_id") not in call_ids] for fact, calls in facts.items()}
        kept = {fact: calls for fact, calls in kept.items() if calls}
        if kept:
            refresher[agent] = kept
    if "refresher" in out:
        out["refresher"] = refresher
    if agent_id is not None and "agents_with_flips" in out:
        out["agents_with_flips"] = {a: n for a, n in out["agents_with_flips"].items() if a != agent_id}
    return out


def without_transcript(card: dict[str, Any], at: str) -> dict[str, Any]:
    """A scorecard without its redacted transcript and evidence quotes: the verdicts, points, times and
    rule references stay, and `transcript_removed_at` says when the text went."""
    out = copy.deepcopy(card)
    out["transcript"] = []
    for item in [*(out.get("violations") or []), *(out.get("to_check") or []),
                 *(e for c in out.get("criteria") or [] for e in c.get("evidence") or [])]:
        if isinstance(item, dict) and "text" in item:
            item["text"] = ""
    out["transcript_removed_at"] = at
    return out


def has_transcript(card: dict[str, Any]) -> bool:
    """Whether a scorecard still holds transcript text."""
    return "transcript_removed_at" not in card


class SqlErasure(SqlPart):
    """`ErasureStore` over SQL."""

    def call_ids_of_agent(self, agent_id: str) -> list[str]:
        """The ids of every call of an agent, oldest first."""
        c = t.calls
        with self.engine.connect() as conn:
            return [str(r) for r in conn.execute(
                sa.select(c.c.id).where(c.c.agent_id == agent_id).order_by(c.c.created_at, c.c.id)).scalars()]

    def ended_calls_before(self, cutoff: datetime) -> list[str]:
        """The ids of done and failed calls received before this moment, oldest first (retention)."""
        c = t.calls
        with self.engine.connect() as conn:
            return [str(r) for r in conn.execute(
                sa.select(c.c.id).where(c.c.created_at < cutoff, c.c.status.in_(("done", "failed")))
                .order_by(c.c.created_at, c.c.id)).scalars()]

    def drop_earlier_versions(self, cutoff: datetime) -> int:
        """Delete the scorecard versions made before this moment that are not their call's latest."""
        s = t.scorecards
        with self._write() as conn:
            earlier = s.delete().where(s.c.latest.is_(False), s.c.created_at < cutoff)
            return int(conn.execute(earlier).rowcount)

    def strip_transcripts(self, cutoff: datetime) -> int:
        """Remove the transcript text from the scorecards of calls received before this moment."""
        s, c = t.scorecards, t.calls
        at = utc_now().isoformat(timespec="seconds")
        changed = 0
        with self._write() as conn:
            old = sa.select(c.c.id).where(c.c.created_at < cutoff)
            stripped: list[str] = []
            for seq, call_id, data in conn.execute(sa.select(s.c.seq, s.c.call_id, s.c.data)
                                                   .where(s.c.call_id.in_(old))):
                if has_transcript(data):
                    conn.execute(s.update().where(s.c.seq == seq).values(data=without_transcript(data, at)))
                    stripped.append(str(call_id))
                    changed += 1
            search.unindex(conn, list(dict.fromkeys(stripped)))
        return changed

    def erase_calls(self, call_ids: Sequence[str], *, receipt: ErasureNote) -> dict[str, dict[str, int]]:
        """Delete the calls and all that names them in one transaction; write one receipt row per call."""
        ids = [i for i in (canonical_uuid(c) for c in call_ids) if i is not None]
        removed: dict[str, dict[str, int]] = {}
        senders: set[str] = set()  # the external ids of the erased calls, which request paths may name
        with self._write() as conn, rollups.kept(conn, ids):
            search.unindex(conn, ids, optimize=receipt.merge_search)
            for call_id in ids:
                named_as = sa.select(t.calls.c.external_id).where(t.calls.c.id == call_id)
                sender = conn.execute(named_as).scalar()
                reviews = conn.execute(t.reviews.delete().where(t.reviews.c.call_id == call_id)).rowcount
                cards = conn.execute(t.scorecards.delete().where(t.scorecards.c.call_id == call_id)).rowcount
                calls = conn.execute(t.calls.delete().where(t.calls.c.id == call_id)).rowcount
                if calls:
                    removed[call_id] = {"calls": calls, "scorecard_versions": cards, "reviews": reviews}
                    senders |= {sender} if sender else set()
            erased = set(removed)
            runs = self._scrub_rescore_runs(conn, erased, receipt.agent_id)
            audit_rows = self._repoint_audit(conn, erased, receipt, senders)
            at = utc_now()
            for call_id, counts in removed.items():
                counts.update(receipt.removed_elsewhere.get(call_id, {}))
                # Shared changes are counted on each call's receipt row (they happened in one step).
                counts["rescore_runs_changed"], counts["audit_rows_repointed"] = runs, audit_rows
                conn.execute(t.audit_log.insert().values(
                    at=at, key_id=receipt.key_id, key_name=receipt.key_name, role=receipt.role,
                    action=RECEIPT_ACTION, target_kind="call", target_id=call_id,
                    details=receipt_details(receipt.id, counts)))
        return removed

    def merge_search_index(self) -> None:
        """Rewrite the search index without what erasures took out of it (SQLite; nothing on PostgreSQL)."""
        with self._write() as conn:
            search.merge(conn)

    def _scrub_rescore_runs(self, conn: Any, erased: set[str], agent_id: str | None) -> int:
        if not erased:
            return 0
        r = t.rescore_runs
        changed = 0
        for run_id, summary in conn.execute(sa.select(r.c.id, r.c.summary).where(r.c.summary.is_not(None))):
            kept = summary_without(summary, erased, agent_id)
            if kept != summary:
                conn.execute(r.update().where(r.c.id == run_id).values(summary=kept))
                changed += 1
        return changed

    def _repoint_audit(self, conn: Any, erased: set[str], receipt: ErasureNote, senders: set[str]) -> int:
        a = t.audit_log
        moved = 0
        for sender in sorted(senders):  # a request that named the call by its sender's id
            moved += conn.execute(a.update().where(a.c.target_kind == "call", a.c.target_id == sender).values(
                target_kind=RECEIPT_KIND, target_id=receipt.id)).rowcount
            path = f"/calls/{sender}"
            moved += conn.execute(a.update().where(a.c.details.contains(path, autoescape=True)).values(
                details=sa.func.replace(a.c.details, path, f"/calls/{receipt.id}"))).rowcount
        for call_id in sorted(erased):
            moved += conn.execute(a.update().where(a.c.target_id == call_id).values(
                target_kind=RECEIPT_KIND, target_id=receipt.id)).rowcount
            # A refused request names what it tried in its details ("tried=GET /v1/calls/<id>/audio").
            moved += conn.execute(a.update().where(a.c.details.contains(call_id, autoescape=True)).values(
                details=sa.func.replace(a.c.details, call_id, receipt.id))).rowcount
        if receipt.agent_id is not None:
            agent = a.update().where(a.c.target_kind == "agent", a.c.target_id == receipt.agent_id)
            moved += conn.execute(agent.values(target_kind=RECEIPT_KIND, target_id=receipt.id)).rowcount
        return moved
