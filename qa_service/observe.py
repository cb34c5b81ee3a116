"""Stage durations for Prometheus: workers add each call's stage times to two Redis hashes, and
/metrics reads them (a summary: `_sum` and `_count` per stage), so every API process reports the
same totals across all workers.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)

SECONDS_KEY = "qa:stage_seconds_sum"
COUNT_KEY = "qa:stage_count"


def record_stage_seconds(connection: Any, timings: dict[str, float]) -> None:
    """Add one call's stage durations to the totals; a Redis hiccup loses a sample, never the call."""
    from redis.exceptions import RedisError

    if connection is None or not timings:
        return
    try:
        pipe = connection.pipeline()
        for stage, seconds in timings.items():
            pipe.hincrbyfloat(SECONDS_KEY, stage, float(seconds))
            pipe.hincrby(COUNT_KEY, stage, 1)
        pipe.execute()
    except RedisError as exc:
        log.warning("stage durations not recorded (%s)", type(exc).__name__)


def stage_totals(connection: Any) -> dict[str, tuple[float, int]]:
    """Per stage, (seconds, calls) summed over every call processed since Redis started."""
    seconds = connection.hgetall(SECONDS_KEY)
    counts = connection.hgetall(COUNT_KEY)
    out = {}
    for stage, total in seconds.items():
        name = stage.decode() if isinstance(stage, bytes) else str(stage)
        out[name] = (float(total), int(counts.get(stage, 0)))
    return dict(sorted(out.items()))
