"""Prometheus metrics at /metrics, in the text exposition format (version 0.0.4), written by hand.

Counts only: no ids, names or transcript text appear in labels. Values are read at scrape time
from the database and Redis, so every API process reports the same numbers. Stage durations are
totals that workers keep in Redis (`qa_service.observe`).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse

from qa_service import __version__
from qa_service.observe import stage_totals
from qa_service.storage.repository import CALL_STATUSES

log = logging.getLogger(__name__)
router = APIRouter()

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Exposition:
    """Builds the text format: HELP and TYPE once per metric, then its samples."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def metric(self, name: str, kind: str, help_text: str,
               samples: list[tuple[dict[str, str], float]]) -> None:
        """Add one metric family with its samples (labels, value)."""
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} {kind}")
        for labels, value in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}{{{label_text}}} {_number(value)}" if label_text
                              else f"{name} {_number(value)}")

    def summary(self, name: str, help_text: str, samples: list[tuple[dict[str, str], float, int]]) -> None:
        """Add a summary without quantiles: `<name>_sum` and `<name>_count` per label set."""
        self.lines.append(f"# HELP {name} {help_text}")
        self.lines.append(f"# TYPE {name} summary")
        for labels, total, count in samples:
            label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items())
            self.lines.append(f"{name}_sum{{{label_text}}} {_number(total)}")
            self.lines.append(f"{name}_count{{{label_text}}} {_number(count)}")

    def text(self) -> str:
        """The whole exposition, newline-terminated."""
        return "\n".join(self.lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def collect(repo: Any, queue: Any) -> str:
    """Read the numbers and write them out; an unreachable database or queue is reported, not raised."""
    out = Exposition()
    out.metric("qa_service_info", "gauge", "Version of the service.", [({"version": __version__}, 1)])

    database_up = 1
    try:
        counts = repo.views.counts()
    except Exception as exc:  # a scrape must answer even when the database is away
        log.warning("metrics: database unreachable (%s)", type(exc).__name__)
        database_up, counts = 0, None
    out.metric("qa_database_up", "gauge", "Whether the database answered this scrape.", [({}, database_up)])
    if counts is not None:
        out.metric("qa_calls", "gauge", "Calls stored, by processing status.",
                   [({"status": s}, counts.calls_by_status.get(s, 0)) for s in CALL_STATUSES])
        out.metric("qa_scorecards_stored", "gauge", "Scorecard versions stored (rescoring adds versions).",
                   [({}, counts.scorecards)])
        out.metric("qa_scored_calls", "gauge", "Calls with at least one scorecard.",
                   [({}, counts.scored_calls)])

    queue_up = 1
    queue_samples: dict[str, int] = {}
    try:
        queue_samples["queued"] = int(queue.count)
        queue_samples["started"] = int(queue.started_job_registry.count)
        queue_samples["failed"] = int(queue.failed_job_registry.count)
    except Exception as exc:  # redis-py raises several types; all mean "no answer"
        log.warning("metrics: queue unreachable (%s)", type(exc).__name__)
        queue_up = 0
    out.metric("qa_queue_up", "gauge", "Whether Redis answered this scrape.", [({}, queue_up)])
    if queue_up:
        name = str(getattr(queue, "name", "calls"))
        out.metric("qa_queue_jobs", "gauge", "RQ jobs in the calls queue, by state.",
                   [({"queue": name, "state": state}, n) for state, n in queue_samples.items()])
        try:
            stages = stage_totals(queue.connection)
        except Exception as exc:  # Redis went away between the two reads
            log.warning("metrics: stage durations unreadable (%s)", type(exc).__name__)
            stages = {}
        if stages:
            out.summary("qa_stage_duration_seconds", "Time spent in each pipeline stage, over all calls.",
                        [({"stage": stage}, total, count) for stage, (total, count) in stages.items()])
    return out.text()


@router.get("/metrics", response_class=PlainTextResponse, tags=["service"],
            responses={200: {"content": {CONTENT_TYPE: {}}, "description": "Prometheus text format"}})
async def metrics(request: Request) -> PlainTextResponse:
    """Queue depth, calls by status and scorecards stored, for Prometheus."""
    text = await run_in_threadpool(collect, request.app.state.repo, request.app.state.queue)
    return PlainTextResponse(text, media_type=CONTENT_TYPE)
