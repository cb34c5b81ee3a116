"""The stage calls in order: decode -> transcribe -> redact -> score -> scorecard.

Engines (speech model, redactor, spaCy pipeline) are loaded once by the caller and passed in;
nothing here reads settings or touches storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qa_service.records import CallMeta, Scorecard, Transcript


@dataclass
class Engines:
    """The loaded models a worker or the CLI keeps for its lifetime."""

    transcriber: Any  # stages.transcribe.Transcriber
    redactor: Any  # stages.redact.Redactor
    nlp: Any  # spacy.Language


def process_audio(path: Path, meta: CallMeta, rubric: Any, policies: Any, engines: Engines) -> Scorecard:
    """Run one recorded call through every stage and return its scorecard."""
    raise NotImplementedError  # filled in with the stages


def process_transcript(transcript: Transcript, meta: CallMeta, rubric: Any, policies: Any,
                       engines: Engines) -> Scorecard:
    """Score a call that is already text (chat, email, externally transcribed call)."""
    raise NotImplementedError  # filled in with the stages
