"""The schema of recogniser rule files (rules/recognizers.yaml and a deployment's own), read and combined.

A file is checked on load: unknown keys are errors that name the file and the field. Number words are
not part of it: they are defined once, in `qa_service.spoken`, for redaction and scoring alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qa_service.errors import ConfigError

# Keys that rule files no longer take, and why: a file that still has one is an error that says so.
REMOVED_VOCABULARY = ("digits", "teens", "tens", "repeaters")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Vocabulary(_Strict):
    spelling_alphabet: dict[str, str] = Field(default_factory=dict)
    months: list[str] = Field(default_factory=list)
    ordinals: dict[str, int] = Field(default_factory=dict)
    units: list[str] = Field(default_factory=list)
    # A number said as a quantity ("twenty four thousand five hundred") next to one of these is money.
    amount_cues: list[str] = Field(default_factory=list)
    currency_symbols: list[str] = Field(default_factory=list)
    street_types: list[str] = Field(default_factory=list)
    common_words: list[str] = Field(default_factory=list)


class SequenceRule(_Strict):
    entity: str
    digits: tuple[int, int] = (0, 0)
    letters: tuple[int, int] = (0, 0)
    min_symbols: int = 0
    luhn: bool = False
    compact_regex: str | None = None
    context: list[str] = Field(default_factory=list)
    # Only digits read one by one ("four four two one", "4 4 2 1"), not an amount ("fifteen hundred").
    one_by_one: bool = False
    score: float = Field(ge=0.0, le=1.0)


class PatternRule(_Strict):
    name: str
    entity: str
    regex: str
    score: float = Field(ge=0.0, le=1.0)
    case_sensitive: bool = False
    context: list[str] = Field(default_factory=list)


class NameCues(_Strict):
    strong: list[str] = Field(default_factory=list)
    weak: list[str] = Field(default_factory=list)
    # A one-word place the NER found right after one of these stays a place ("flying to Jordan").
    places: list[str] = Field(default_factory=list)
    # Words that make a capitalised run a company's name, not a person's ("Xignite Inc").
    organisation_words: list[str] = Field(default_factory=list)


class EmailRule(_Strict):
    at_words: list[str] = Field(default_factory=list)
    dot_words: list[str] = Field(default_factory=list)
    joiners: list[str] = Field(default_factory=list)
    score: float = 0.9


class PromptRule(_Strict):
    entity: str
    kind: Literal["number", "date", "name", "address", "email"]
    phrases: list[str]


class DateTimeRule(_Strict):
    relative_words: list[str] = Field(default_factory=list)


class RulesFile(_Strict):
    version: int = 1
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)
    sequences: list[SequenceRule] = Field(default_factory=list)
    context_window: int | None = None
    patterns: list[PatternRule] = Field(default_factory=list)
    name_cues: NameCues = Field(default_factory=NameCues)
    email: EmailRule | None = None
    prompts: list[PromptRule] = Field(default_factory=list)
    request_cues: list[str] = Field(default_factory=list)
    answer_window_s: float | None = None
    answer_segments: int | None = None
    date_time: DateTimeRule = Field(default_factory=DateTimeRule)


def read_rules_file(path: Path) -> RulesFile:
    """Read and validate one rule file; a broken one is a ConfigError naming the file and the field."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read recogniser rules {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"recogniser rules {path} are not valid YAML: {exc}") from None
    _refuse_removed_keys(path, data)
    try:
        return RulesFile.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"recogniser rules {path} do not validate: {where}") from None


def _refuse_removed_keys(path: Path, data: Any) -> None:
    vocabulary = data.get("vocabulary") if isinstance(data, dict) else None
    removed = [k for k in REMOVED_VOCABULARY if isinstance(vocabulary, dict) and k in vocabulary]
    if removed:
        keys = ", ".join(f"vocabulary.{k}" for k in removed)
        raise ConfigError(
            f"recogniser rules {path}: {keys} are no longer read: number words are defined once, in "
            "qa_service/spoken.py, for redaction and scoring alike; remove the key from the file"
        )


def combine(files: Sequence[RulesFile]) -> RulesFile:
    """Later files add to earlier ones: lists and maps are extended, single values overridden."""
    out = RulesFile()
    for f in files:
        voc = out.vocabulary.model_dump()
        for key, value in f.vocabulary.model_dump().items():
            voc[key] = {**voc[key], **value} if isinstance(value, dict) else [*voc[key], *value]
        out = out.model_copy(
            update={
                "vocabulary": Vocabulary.model_validate(voc),
                "sequences": [*out.sequences, *f.sequences],
                "context_window": f.context_window if f.context_window is not None else out.context_window,
                "patterns": [*out.patterns, *f.patterns],
                "name_cues": NameCues(
                    strong=[*out.name_cues.strong, *f.name_cues.strong],
                    weak=[*out.name_cues.weak, *f.name_cues.weak],
                    places=[*out.name_cues.places, *f.name_cues.places],
                    organisation_words=[*out.name_cues.organisation_words, *f.name_cues.organisation_words],
                ),
                "email": f.email or out.email,
                "prompts": [*out.prompts, *f.prompts],
                "request_cues": [*out.request_cues, *f.request_cues],
                "answer_window_s": f.answer_window_s
                if f.answer_window_s is not None
                else out.answer_window_s,
                "answer_segments": f.answer_segments
                if f.answer_segments is not None
                else out.answer_segments,
                "date_time": DateTimeRule(
                    relative_words=[*out.date_time.relative_words, *f.date_time.relative_words]
                ),
            }
        )
    return out
