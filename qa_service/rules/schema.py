"""Schemas of the rule files: rubric v1 (what a call must and must not contain) and policy pack v1.

Every model forbids unknown keys, so a typo in a rule file ("auto_fial") is an error rather than a rule
that silently never fires. spaCy token patterns are checked with `Matcher(validate=True)`.
Extensions beyond v1 (all optional, v1 files stay valid): `applies_when` on a criterion; `unit_aliases`
on a number fact; `language` on a rubric; `response_time` on a criterion (written conversations);
`outdated` (what an outdated mention costs) on a policy pack
and on each of its facts; a number fact's values written in words or Chinese numerals ("六百四十",
"两万四千五百"); `requires_certification` on a rubric or policy pack.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    StringConstraints,
    field_validator,
    model_validator,
)

from qa_service.spoken import read_number

Ident = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                         pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")]
Phrase = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=300)]
RuleSpeaker = Literal["agent", "customer", "any"]
# The name of a certification a rubric or policy pack requires (as the certification records spell it).
CertificationName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100,
                                                     pattern=r"^[^\x00-\x1f]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Pattern = Annotated[list[dict[str, Any]], AfterValidator(lambda p: check_pattern(p))]


@lru_cache(maxsize=1)
def _validation_matcher() -> Any:
    import spacy
    from spacy.matcher import Matcher

    return Matcher(spacy.blank("en").vocab, validate=True)


def check_pattern(pattern: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Raise ValueError when spaCy's Matcher rejects a token pattern."""
    if not pattern:
        raise ValueError("a pattern needs at least one token")
    matcher = _validation_matcher()
    try:
        matcher.add("check", [pattern])
    except Exception as exc:  # spaCy raises MatchPatternError (a ValueError) or others for odd input
        raise ValueError(f"invalid spaCy token pattern: {_short(str(exc))}") from None
    finally:
        if "check" in matcher:
            matcher.remove("check")
    return pattern


def _short(message: str) -> str:
    # spaCy: "... Pattern 0:\n- [pattern -> 0 -> LOWR] Extra inputs are not permitted" -> the useful part.
    found = re.findall(r"\[pattern -> (\d+)(?: -> ([^\]]+))?\] ([^\n]+)", message)
    if found:
        parts = [f"token {tok}{' ' + key if key else ''}: {what.strip()}" for tok, key, what in found]
        return "; ".join(parts)[:300]
    lines = [ln.strip() for ln in message.splitlines() if ln.strip()]
    return " ".join(lines[-2:])[:300]


def _as_version(value: Any) -> Any:
    # YAML reads `version: 2026-11-01` as a date and `version: 3` as an int; both are meant as text.
    if isinstance(value, dt.date | int | float) and not isinstance(value, bool):
        return value.isoformat() if isinstance(value, dt.date) else str(value)
    return value


def _sayable(phrase: str) -> str:
    if not any(c.isalnum() for c in phrase):
        raise ValueError("a phrase needs at least one word or number")
    return phrase


class _Says(_Strict):
    """Something said: phrases and/or spaCy token patterns, by a speaker."""

    phrases: list[Annotated[Phrase, AfterValidator(_sayable)]] = Field(default_factory=list)
    patterns: list[Pattern] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something_to_match(self) -> _Says:
        if not self.phrases and not self.patterns:
            raise ValueError("give at least one of `phrases` or `patterns`")
        return self


class AppliesWhen(_Says):
    """A criterion applies only when this comes up in the call (by the given speaker)."""

    speaker: RuleSpeaker = "any"


ConversationChannel = Literal["call", "chat", "email", "im"]
_LIMIT_FORM = ("`max_seconds` is a number of seconds (more than 0) for every channel, or one per channel: "
               "{chat: 300, email: 86400, im: 3600} (channels: call, chat, email, im)")


class ResponseTime(_Strict):
    """How soon the agent must answer the customer, measured on the times of the conversation's turns.

    A wait runs from a customer message that has no answer yet (the first of several in a row) to the
    agent's next turn. `measure: longest` takes the longest wait of the conversation, `first` the
    first one (the first customer message to the agent's first reply after it). `max_seconds` is one
    limit, or one per channel (a conversation on a channel without a limit is not measured: the
    criterion does not apply). Customer messages after the agent's last turn have no reply to time:
    `unanswered: ignore` leaves them out, `fail` fails the criterion.
    """

    max_seconds: float | dict[ConversationChannel, float]
    measure: Literal["longest", "first"] = "longest"
    unanswered: Literal["ignore", "fail"] = "ignore"

    @field_validator("max_seconds", mode="before")
    @classmethod
    def _limit(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if not value:
                raise ValueError(f"{_LIMIT_FORM}; got an empty map")
            for channel, seconds in value.items():
                if channel not in ("call", "chat", "email", "im"):
                    raise ValueError(f"{_LIMIT_FORM}; got a limit for {channel!r}, which is no channel")
                if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
                    raise ValueError(f"{_LIMIT_FORM}; got {channel}: {seconds!r}")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ValueError(f"{_LIMIT_FORM}; got {value!r}")
        return value

    def limit(self, channel: str) -> float | None:
        """The limit in seconds for a conversation on this channel; None when it has none."""
        if isinstance(self.max_seconds, dict):
            return self.max_seconds.get(channel)  # type: ignore[call-overload,no-any-return]
        return self.max_seconds


class Criterion(_Says):
    """Something the call must contain (phrases or patterns), or a response time it must keep."""

    id: Ident
    title: Phrase
    section: Phrase = "general"
    speaker: RuleSpeaker
    points: float = Field(ge=0)
    within_seconds: float | None = Field(default=None, gt=0)
    after: Ident | None = None
    auto_fail: bool = False
    applies_when: AppliesWhen | None = None
    response_time: ResponseTime | None = None

    @model_validator(mode="after")
    def _something_to_match(self) -> Criterion:
        if self.response_time is None:
            if not self.phrases and not self.patterns:
                raise ValueError("give at least one of `phrases` or `patterns` (or a `response_time`)")
            return self
        # A response time is measured on the turns' times, not on words: nothing else may decide it.
        extra = [name for name in ("phrases", "patterns", "within_seconds", "after")
                 if getattr(self, name)]
        if extra:
            raise ValueError(f"a `response_time` criterion is measured on the times of the turns, not on "
                             f"what is said: remove {', '.join(f'`{n}`' for n in extra)}")
        if self.speaker != "agent":
            raise ValueError("a `response_time` criterion times the agent's replies: its speaker is `agent`")
        return self


class Prohibited(_Says):
    """Something the call must not contain (unless negated: "nobody can guarantee approval")."""

    id: Ident
    title: Phrase
    speaker: RuleSpeaker
    auto_fail: bool = False


class _Hashed(_Strict):
    _sha256: str = PrivateAttr(default="")
    _text: str = PrivateAttr(default="")
    _source: str = PrivateAttr(default="")

    @property
    def sha256(self) -> str:
        """sha256 of the file text it was loaded from (of its canonical JSON when built in code)."""
        if not self._sha256:
            self._sha256 = hashlib.sha256(self.model_dump_json().encode()).hexdigest()
        return self._sha256

    @property
    def text(self) -> str:
        """The file text it was loaded from ("" when built in code)."""
        return self._text

    @property
    def source(self) -> str:
        """Name of the file it was loaded from."""
        return self._source

    def with_source(self, text: str, source: str) -> Any:
        """Attach the original text, its hash and the file name (used by the loader)."""
        self._text = text
        self._source = source
        self._sha256 = hashlib.sha256(text.encode()).hexdigest()
        return self


class Rubric(_Hashed):
    """Rubric format v1: criteria with points, prohibited items, a pass mark in percent."""

    id: Ident
    version: str
    title: Phrase = ""
    description: str = ""
    pass_mark: float = Field(ge=0, le=100)
    # The language its phrases are written in (ISO 639-1); a call in another language is flagged.
    language: Annotated[str, StringConstraints(pattern=r"^[a-z]{2,3}$")] = "en"
    criteria: list[Criterion] = Field(min_length=1)
    prohibited: list[Prohibited] = Field(default_factory=list)
    # An agent taking calls under this rubric needs a certification of this name covering it, valid on
    # the call's date; a call without one gets a `certification_lapsed` finding. None: none is needed.
    requires_certification: CertificationName | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _as_version(value)

    @model_validator(mode="after")
    def _consistent(self) -> Rubric:
        ids = [c.id for c in self.criteria]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"criterion ids must be unique; repeated: {', '.join(dupes)}")
        pids = [p.id for p in self.prohibited]
        dupes = sorted({i for i in pids if pids.count(i) > 1})
        if dupes:
            raise ValueError(f"prohibited ids must be unique; repeated: {', '.join(dupes)}")
        known = set(ids)
        for c in self.criteria:
            if c.after is not None and c.after not in known:
                raise ValueError(f"criterion {c.id!r}: `after` names unknown criterion {c.after!r}")
            if c.after == c.id:
                raise ValueError(f"criterion {c.id!r}: `after` cannot name itself")
            if c.after is not None and next(o for o in self.criteria if o.id == c.after).response_time:
                raise ValueError(f"criterion {c.id!r}: `after` names {c.after!r}, a response time, which "
                                 "is not said at a moment")
        by_id = {c.id: c for c in self.criteria}
        for c in self.criteria:
            seen = {c.id}
            nxt = c.after
            while nxt is not None:
                if nxt in seen:
                    raise ValueError(f"criterion {c.id!r}: `after` chain loops back to {nxt!r}")
                seen.add(nxt)
                nxt = by_id[nxt].after
        if sum(c.points for c in self.criteria) <= 0:
            raise ValueError("criteria must carry some points (all are 0)")
        return self


CONSEQUENCES = ("note", "deduct", "auto_fail")
_CONSEQUENCE_FORM = ("`outdated` must be `note`, `auto_fail` or `{deduct: POINTS}` (percentage points taken "
                     "off the call's score, more than 0 and at most 100)")


class Consequence(_Strict):
    """What an outdated mention of a policy fact costs the call.

    `note`: listed and sent to review, score and verdict unchanged (v1's behaviour); `deduct`:
    `points` percentage points off the call's score, once per fact however often it is said;
    `auto_fail`: the call fails whatever its score.
    """

    kind: Literal["note", "deduct", "auto_fail"] = "note"
    points: float = Field(default=0.0, ge=0, le=100)

    @model_validator(mode="before")
    @classmethod
    def _written(cls, value: Any) -> Any:
        # The YAML forms: `note`, `auto_fail`, `{deduct: 10}`. The model's own form (kind, points)
        # is accepted too, so a pack built in code and dumped reads back.
        if isinstance(value, str):
            if value.strip() in ("note", "auto_fail"):
                return {"kind": value.strip()}
            raise ValueError(f"{_CONSEQUENCE_FORM}; got {value!r}")
        if isinstance(value, dict) and set(value) == {"deduct"}:
            points = value["deduct"]
            if isinstance(points, bool) or not isinstance(points, int | float) or not 0 < points <= 100:
                raise ValueError(f"{_CONSEQUENCE_FORM}; got deduct: {points!r}")
            return {"kind": "deduct", "points": float(points)}
        if isinstance(value, dict) and "kind" in value:
            return value
        raise ValueError(f"{_CONSEQUENCE_FORM}; got {value!r}")

    @model_validator(mode="after")
    def _points_fit(self) -> Consequence:
        if (self.kind == "deduct") != (self.points > 0):
            raise ValueError(f"{_CONSEQUENCE_FORM}; points go with `deduct` only")
        return self


NOTE = Consequence(kind="note")


def _numeral(value: Any) -> Any:
    """A value written as a number, or in words or Chinese numerals ("六百四十", "两万四千五百")."""
    if not isinstance(value, str):
        return value
    read = read_number(value.strip())
    if read is None:
        raise ValueError(f"{value!r} is not one number (write it in digits, words or Chinese numerals)")
    return read[0]


class Value(_Strict):
    """The value of a number fact in force since a date."""

    value: float
    since: dt.date

    _read = field_validator("value", mode="before")(_numeral)


class OldValue(_Strict):
    """A value of a number fact that stopped applying after `until`."""

    value: float
    until: dt.date

    _read = field_validator("value", mode="before")(_numeral)


class NumberFact(_Strict):
    """A number that changes over time (a fee, a pass mark), stated near one of its topic phrases."""

    id: Ident
    title: Phrase
    kind: Literal["number"]
    topic: list[Phrase] = Field(min_length=1)
    unit: Phrase | None = None
    unit_aliases: list[Phrase] = Field(default_factory=list)
    window: int = Field(default=8, ge=1, le=60)
    current: Value
    superseded: list[OldValue] = Field(default_factory=list)
    outdated: Consequence | None = None  # None: the pack's `outdated`

    @field_validator("topic", mode="before")
    @classmethod
    def _one_topic(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _dates_in_order(self) -> NumberFact:
        for i, old in enumerate(self.superseded):
            if old.until >= self.current.since:
                raise ValueError(f"superseded[{i}].until ({old.until}) must be before current.since "
                                 f"({self.current.since})")
            if old.value == self.current.value:
                raise ValueError(f"superseded[{i}].value equals the current value")
        return self


class TermFact(_Strict):
    """Something that stopped being true on `since` (a withdrawn form, a closed office)."""

    id: Ident
    title: Phrase
    kind: Literal["term"]
    obsolete_phrases: list[Phrase] = Field(min_length=1)
    since: dt.date
    replacement: Phrase | None = None
    outdated: Consequence | None = None  # None: the pack's `outdated`


Fact = Annotated[NumberFact | TermFact, Field(discriminator="kind")]


class PolicyPack(_Hashed):
    """Policy pack format v1: facts that change over time, checked against the call's date."""

    id: Ident
    version: str
    title: Phrase = ""
    jurisdiction: Phrase | None = None
    # What an outdated mention costs, for every fact that does not say (default: note, v1's behaviour).
    outdated: Consequence = NOTE
    facts: list[Fact] = Field(default_factory=list)
    # As on a rubric: a certification of this name covering this pack, valid on the call's date.
    requires_certification: CertificationName | None = None

    @field_validator("version", mode="before")
    @classmethod
    def _version_text(cls, value: Any) -> Any:
        return _as_version(value)

    @model_validator(mode="after")
    def _unique(self) -> PolicyPack:
        ids = [f.id for f in self.facts]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise ValueError(f"fact ids must be unique; repeated: {', '.join(dupes)}")
        return self

    def consequence(self, fact_id: str) -> Consequence:
        """What an outdated mention of this fact costs: the fact's own `outdated`, else the pack's."""
        fact = next((f for f in self.facts if f.id == fact_id), None)
        return fact.outdated if fact is not None and fact.outdated is not None else self.outdated
