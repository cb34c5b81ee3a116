"""Retention: the sweep that deletes what is older than the QA_RETAIN_* settings allow.

Ages are counted from when the call was received. Past QA_RETAIN_SCORECARDS_DAYS a done or failed call
is erased as `services.erasure` erases one (its receipt rows name the sweep, not a key), and earlier
scorecard versions older than that go from every call. Past QA_RETAIN_TRANSCRIPTS_DAYS the scorecards
keep their verdicts, points, times, rule references and the aggregates' columns, but no transcript
text and no evidence quotes. Past QA_RETAIN_REDACTED_AUDIO_DAYS the redacted audio is deleted. Unset
settings keep things. The worker's maintenance pass runs the sweep about every SWEEP_S;
`qa-service sweep` runs it once.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from qa_service.errors import Conflict
from qa_service.services.erasure import Asker, erase_calls
from qa_service.settings import Settings
from qa_service.storage.objects import InputStore
from qa_service.storage.repository import Repository

log = logging.getLogger(__name__)

SWEEP_S = 3600
SWEEPER = Asker(key_id=None, name="retention", role=None)


def sweep(*, store: Repository, objects: InputStore, redis: Any, settings: Settings,
          now: datetime | None = None) -> dict[str, int]:
    """Delete what the retention settings no longer allow; returns how many of each kind went."""
    now = now or datetime.now(UTC)
    done = {"calls_erased": 0, "earlier_versions": 0, "transcripts_removed": 0, "redacted_audio": 0}
    if settings.retain_scorecards_days is not None:
        cutoff = now - timedelta(days=settings.retain_scorecards_days)
        try:
            for call_id in store.ended_calls_before(cutoff):
                try:
                    # One call at a time (a call being scored waits for the next sweep); the search
                    # index is merged once, after them all.
                    erase_calls(store=store, objects=objects, redis=redis, settings=settings,
                                calls=[store.get_call(call_id)], asker=SWEEPER, now=now, merge_search=False)
                    done["calls_erased"] += 1
                except Conflict:  # being scored again right now; the next sweep takes it
                    continue
        finally:
            if done["calls_erased"]:
                store.merge_search_index()
        done["earlier_versions"] = store.drop_earlier_versions(cutoff)
    if settings.retain_transcripts_days is not None:
        done["transcripts_removed"] = store.strip_transcripts(
            now - timedelta(days=settings.retain_transcripts_days))
    if settings.retain_redacted_audio_days is not None:
        cutoff = now - timedelta(days=settings.retain_redacted_audio_days)
        old = store.ended_calls_before(cutoff)
        done["redacted_audio"] = sum(objects.delete_redacted_audio(call_id) for call_id in old)
    if any(done.values()):
        log.info("retention sweep: %s", " ".join(f"{k}={v}" for k, v in done.items()))
    return done
