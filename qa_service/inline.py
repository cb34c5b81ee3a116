"""Scoring calls in this process, without the queue: `qa-service process` and the demo without Redis.

The engines are loaded once for a batch; each scorecard is registered through `submit_call` like
any other call (source "cli", external id = the call id) and stored as a worker stores one.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from qa_service.errors import InputError, QAServiceError
from qa_service.intake import call_date_from, conversation_channel
from qa_service.records import CallMeta
from qa_service.report import format_scorecard, format_table
from qa_service.services.calls import store_scored_call
from qa_service.services.certification import CertificationCheck
from qa_service.settings import Settings


@dataclass(frozen=True)
class Job:
    """One call to process inline: audio or a text transcript, and its metadata."""

    meta: CallMeta
    audio: Path | None
    transcript: Path | None
    rubric: Path
    policies: Path


def read_manifest(manifest: Path, *, rubric: Path, policies: Path, call_date: date,
                  channels: str, channel: str | None = None) -> Iterator[Job]:
    """The calls of a JSONL manifest (audio or transcript, call_id, agent_id, call_date[, channels,
    channel, rubric, policies]); paths are relative to the manifest's folder, else to the working
    directory."""
    base = manifest.parent
    for n, line in enumerate(manifest.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            meta = CallMeta(str(row["call_id"]), str(row.get("agent_id", "unknown")),
                            call_date_from(str(row.get("call_date", call_date))),
                            row.get("channels", channels),
                            conversation_channel(row["channel"]) if row.get("channel")
                            else conversation_channel(channel) if channel else None)
        except (ValueError, KeyError, InputError) as exc:
            raise QAServiceError(f"{manifest}:{n}: bad manifest line: {exc}") from exc
        audio = _resolve(row.get("audio"), base)
        transcript = _resolve(row.get("transcript"), base)
        if not audio and not transcript:
            raise QAServiceError(f"{manifest}:{n}: needs 'audio' or 'transcript'")
        yield Job(meta, audio, transcript, _resolve(row.get("rubric"), base) or rubric,
                  _resolve(row.get("policies"), base) or policies)


def _resolve(value: str | None, base: Path) -> Path | None:
    if not value:
        return None
    path = Path(value)
    return base / path if not path.is_absolute() and (base / path).exists() else path


def process_jobs(settings: Settings, jobs: list[Job], *, store: bool = True, out: Path | None = None,
                 quiet: bool = False) -> int:
    """Score the calls, store and print their scorecards; returns the exit code (1 if any failed)."""
    from tqdm import tqdm

    from qa_service.intake import read_transcript
    from qa_service.pipeline import load_engines, process_audio, process_transcript
    from qa_service.rules.load import load_policy_pack, load_rubric

    if not jobs:
        raise QAServiceError("nothing to process: give audio files, --manifest or --transcript")
    needs_speech = any(j.audio for j in jobs)
    print(f"loading models ({settings.asr_model if needs_speech else 'text only'})...", file=sys.stderr)
    engines = load_engines(settings, speech=needs_speech)
    repo = None
    if store:
        from qa_service.storage import open_repository

        repo = open_repository(settings.database_url)
    rules: dict[Path, Any] = {}

    def rules_for(path: Path, loader: Any) -> Any:
        if path not in rules:
            rules[path] = loader(path)
        return rules[path]

    cards, failures = [], 0
    for job in tqdm(jobs, desc="calls", unit="call", disable=len(jobs) < 2, file=sys.stderr):
        rubric, policies = rules_for(job.rubric, load_rubric), rules_for(job.policies, load_policy_pack)
        try:
            source = job.audio or job.transcript
            if source is None or not source.is_file():
                raise InputError(f"no such file: {source}")
            if job.audio:
                card = process_audio(job.audio, job.meta, rubric, policies, engines)
            else:
                assert job.transcript is not None
                transcript = read_transcript(job.transcript, max_bytes=settings.max_transcript_bytes)
                card = process_transcript(transcript, job.meta, rubric, policies, engines)
        except QAServiceError as exc:
            failures += 1
            tqdm.write(f"{job.meta.call_id}: failed: {exc}", file=sys.stderr)
            continue
        data = card.to_dict()
        if repo is not None:
            data = CertificationCheck(repo).annotate(data, rubric, policies)
            store_scored_call(store=repo, settings=settings, meta=job.meta, card=data, rubric=rubric,
                              policies=policies, input_kind="audio" if job.audio else "transcript")
        if out:
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{card.call_id}.scorecard.json").write_text(json.dumps(data, indent=2))
        cards.append(data)
        if not quiet and len(jobs) == 1:
            print(format_scorecard(data))
    if len(jobs) > 1 or quiet:
        print(format_table(cards))
    return 1 if failures else 0
