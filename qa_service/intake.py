"""Calls that arrive as text (chats, emails, calls transcribed elsewhere) parsed into a Transcript.

Two shapes are accepted:

* JSON: a list of turns, or an object with a "turns" list and optionally a `channel` (call, chat,
  email, im); a turn has `speaker` and `text` (also `role` / `content`) and optional times: `start`
  (or `time` / `timestamp`) and `end`, each in seconds from the start or "mm:ss", or a date and time
  in ISO 8601 ("2026-10-14T09:03:12Z") as chat, e-mail and messaging exports write them.
* Plain text: lines starting with a speaker label ("Agent: ...", "Customer: ...", optionally
  after a "[mm:ss]" or "[2026-10-14T09:03:12Z]" time); other lines continue the previous turn.

Times are given on every turn or on none, all as seconds or all as dates and times (with a time zone
on all or on none), and never go backwards from one turn to the next. Dates and times become seconds
from the first turn, which the transcript keeps as `started_at`; they may span days (an e-mail
thread), nothing limits them to a call's length.

Speaker labels accept common synonyms (rep, adviser, caller, client, ...). Without times, they
are estimated from word counts at a speaking rate of 150 words a minute, and the transcript's
`model` says so. Errors name the turn or line and never quote its words (they may be personal).

Parsing takes time in proportion to the text: a transcript is parsed at upload and again by the
worker, so a slow parser would be paid twice. JSON nested deeper than MAX_JSON_DEPTH is refused
before it is parsed (the parser recurses), and `read_transcript` refuses a file over its byte limit
before reading it.

A call's date (`call_date_from`) is read as strictly as its transcript: YYYY-MM-DD, within
EARLIEST_CALL_DATE and tomorrow.
"""

from __future__ import annotations

import json
import re
import sys
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta
from itertools import accumulate
from pathlib import Path
from typing import Any

from qa_service.errors import InputError, TranscriptError
from qa_service.records import CONVERSATIONS, Conversation, Segment, Speaker, Transcript

WORDS_PER_MINUTE = 150
TURN_GAP_S = 0.3
MIN_TURN_S = 1.0

AGENT_LABELS = frozenset({
    "agent", "rep", "representative", "sales rep", "adviser", "advisor", "operator", "staff", "support",
    "consultant", "csr", "employee", "associate", "assistant", "specialist", "caseworker", "case worker",
})
CUSTOMER_LABELS = frozenset({
    "customer", "caller", "client", "applicant", "member", "visitor", "user", "consumer", "prospect",
    "patient", "guest",
})

# A label neither starts nor ends with a space and the runs of spaces around it are matched possessively
# (`\s*+`): otherwise "Agent" followed by a long run of spaces and no colon makes the regex engine try
# every way to share the run between the label and the spaces after it.
_LINE = re.compile(
    r"^\s*+(?:\[(?P<ts>\d{1,2}(?::\d{1,2}){1,2}(?:\.\d+)?|\d+(?:\.\d+)?|"
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)\]\s*+)?"
    r"(?P<label>[A-Za-z](?:[A-Za-z ._-]{0,29}[A-Za-z._-])?)\s*+(?:\([^)]{0,40}\)\s*+)?:\s?(?P<text>.*)$"
)
_CLOCK = re.compile(r"^\d{1,2}(?::\d{1,2}){1,2}(?:\.\d+)?$")
# A date with a time of day: what fromisoformat is then asked to read (a bare date has no time to time).
_DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
# Characters a time may be quoted with in an error: digits and ISO 8601 punctuation, never words.
_QUOTABLE = re.compile(r"^[0-9TZ:+.,\- ]{1,40}$")
_TIME_FORMS = 'seconds from the start, mm:ss, or a date and time in ISO 8601 (e.g. "2026-10-14T09:03:12Z")'


# Transcripts are a list of turns, or an object holding one: 3 levels. Python's JSON parser recurses
# once per level and ends in a RecursionError a thousand levels down, so depth is checked first.
MAX_JSON_DEPTH = 32
# Before this day no call is scored; the upper bound is tomorrow, for callers a time zone ahead.
EARLIEST_CALL_DATE = date(2000, 1, 1)
_ISO_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


Moment = float | datetime  # seconds from the start, or a date and time


@dataclass
class _Turn:
    speaker: Speaker
    text: str
    start: Moment | None = None
    end: Moment | None = None
    # Lines that continue the turn, joined once at the end: joining on every line is quadratic.
    more: list[str] = field(default_factory=list)


def speaker_of(label: str) -> Speaker | None:
    """Map a speaker label or synonym to agent/customer; None when it is neither."""
    norm = re.sub(r"[\s._-]+", " ", label.strip().lower())
    if norm in AGENT_LABELS:
        return "agent"
    if norm in CUSTOMER_LABELS:
        return "customer"
    return None


def call_date_from(text: str) -> date:
    """A call date given as YYYY-MM-DD between EARLIEST_CALL_DATE and tomorrow; InputError otherwise."""
    if not _ISO_DAY.fullmatch(text):
        raise InputError("call dates are written YYYY-MM-DD, e.g. 2026-10-14")
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise InputError("that day is not in the calendar (YYYY-MM-DD)") from None
    return check_call_date(day)


def check_call_date(day: date) -> date:
    """The day itself when a call can have happened then (EARLIEST_CALL_DATE to tomorrow), else InputError."""
    latest = date.today() + timedelta(days=1)
    if not EARLIEST_CALL_DATE <= day <= latest:
        raise InputError(f"a call date must be between {EARLIEST_CALL_DATE.isoformat()} and "
                         f"{latest.isoformat()}")
    return day


def read_transcript(path: Path, *, max_bytes: int) -> Transcript:
    """Parse a transcript file, refusing one larger than max_bytes before reading it."""
    size = path.stat().st_size
    if size > max_bytes:
        raise TranscriptError(f"the transcript has {size} bytes, more than the limit of {max_bytes} "
                              "(QA_MAX_TRANSCRIPT_BYTES)")
    return parse_transcript(path.read_bytes(), filename=path.name)


def parse_transcript(data: bytes | str, *, filename: str | None = None) -> Transcript:
    """Parse a JSON or plain-text conversation into a Transcript (source "text"); TranscriptError if junk."""
    text = _as_text(data)
    if not text.strip():
        raise TranscriptError("the transcript is empty")
    channel: Conversation | None = None
    if _looks_json(text, filename):
        turns, channel = _from_json(text)
    else:
        turns = _from_lines(text)
    turns = [t for t in turns if t.text]
    if not turns:
        raise TranscriptError("the transcript has no turns with text")
    return replace(_build(turns), channel=channel)


def settle_channel(transcript: Transcript, stated: str | None) -> Transcript:
    """The transcript with its channel settled: the sender's (`stated`), else the input's own, else a
    call for audio and a chat for text. TranscriptError when the two disagree or audio is not a call."""
    said = conversation_channel(stated) if stated is not None else None
    if said is not None and transcript.channel is not None and said != transcript.channel:
        raise TranscriptError(f"the channel field says {said} but the transcript says {transcript.channel}: "
                              "send one, or the same in both")
    if transcript.source == "audio":
        if said not in (None, "call"):
            raise TranscriptError(f"a recording is a call, not {said}: send written conversations as a "
                                  "transcript")
        return replace(transcript, channel="call")
    return replace(transcript, channel=said or transcript.channel or "chat")


def conversation_channel(value: Any) -> Conversation:
    """A conversation's channel as written (call, chat, email, im; "e-mail" too); TranscriptError else."""
    if isinstance(value, str):
        norm = value.strip().lower().replace("-", "")
        if norm in CONVERSATIONS:
            return norm  # type: ignore[return-value]
    raise TranscriptError(f"channel must be one of: {', '.join(CONVERSATIONS)}")


def _looks_json(text: str, filename: str | None) -> bool:
    if (filename or "").lower().endswith(".json"):
        return True
    head = text.lstrip()
    if head[:1] == "{":
        return True
    if head[:1] != "[":
        return False
    # "[00:03] Agent: ..." starts with a bracket too.
    m = _LINE.match(head.splitlines()[0])
    return not (m and m.group("ts") and speaker_of(m.group("label")))


def _as_text(data: bytes | str) -> str:
    if isinstance(data, str):
        return data
    if b"\x00" in data[:4096]:
        raise TranscriptError("the transcript is binary data, not text (was audio sent as the transcript?)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise TranscriptError(f"the transcript is not UTF-8 text (bad byte at offset {exc.start})") from None


# A string runs to its closing quote or, unclosed, to the end of the text: a match that could fail
# would be tried again from every later quote (quadratic on text full of escaped quotes).
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+(?:"|\\?\Z)', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^][{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth(text: str) -> int:
    """How deeply the arrays and objects of JSON text nest, counted without parsing it."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)


def _from_json(text: str) -> tuple[list[_Turn], Conversation | None]:
    if json_depth(text) > MAX_JSON_DEPTH:
        raise TranscriptError(f"the transcript is not valid JSON: nested more than {MAX_JSON_DEPTH} levels "
                              "deep (a transcript is a list of turns)")
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TranscriptError(
            f"the transcript is not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError:  # the only other ValueError json raises: an integer too long to convert
        raise TranscriptError(f"the transcript is not valid JSON: it holds a number of more than "
                              f"{sys.get_int_max_str_digits()} digits") from None
    shape = 'a JSON transcript must be a list of turns or an object with a "turns" list'
    channel = None
    if isinstance(doc, dict):
        if doc.get("channel") is not None:
            channel = conversation_channel(doc["channel"])
        for key in ("turns", "segments", "messages", "transcript"):
            if isinstance(doc.get(key), list):
                doc = doc[key]
                break
        else:
            raise TranscriptError(shape)
    if not isinstance(doc, list):
        raise TranscriptError(shape)
    turns = []
    for n, item in enumerate(doc, start=1):
        if not isinstance(item, dict):
            raise TranscriptError(f"turn {n}: expected an object with speaker and text")
        label = item.get("speaker", item.get("role"))
        if not isinstance(label, str):
            raise TranscriptError(f"turn {n}: missing speaker (agent or customer)")
        speaker = speaker_of(label)
        if speaker is None:
            raise TranscriptError(f"turn {n}: speaker must be agent or customer (or a synonym such as rep, "
                                  "adviser, caller, client)")
        body = item.get("text", item.get("content"))
        if not isinstance(body, str):
            raise TranscriptError(f"turn {n}: missing text")
        given = [key for key in ("start", "time", "timestamp") if item.get(key) is not None]
        if len(given) > 1:
            raise TranscriptError(f"turn {n}: give one of {' / '.join(given)}, not both")
        start = _time(item[given[0]], n, given[0]) if given else None
        turns.append(_Turn(speaker, _clean(body), start, _time(item.get("end"), n, "end")))
    return turns, channel


def _from_lines(text: str) -> list[_Turn]:
    turns: list[_Turn] = []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        m = _LINE.match(line)
        speaker = speaker_of(m.group("label")) if m else None
        if m and speaker is not None:
            start = _time(m.group("ts"), n, "time", where="line") if m.group("ts") else None
            turns.append(_Turn(speaker, m.group("text"), start))
        elif turns:
            turns[-1].more.append(line)
        else:
            raise TranscriptError(f"line {n}: expected a turn starting with 'Agent:' or 'Customer:' "
                                  "(or JSON turns with speaker and text)")
    for turn in turns:
        turn.text = _clean(" ".join([turn.text, *turn.more]))
    return turns


def _time(value: Any, n: int, name: str, *, where: str = "turn") -> Moment | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise TranscriptError(f"{where} {n}: {name} must be {_TIME_FORMS}")
    if isinstance(value, str) and _DATE_TIME.match(value.strip()):
        return _date_time(value.strip(), n, name, where)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and _CLOCK.match(value.strip()):
        seconds = 0.0
        for part in value.strip().split(":"):
            seconds = seconds * 60 + float(part)
    else:
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            raise TranscriptError(f"{where} {n}: {name} must be {_TIME_FORMS}") from None
    if not seconds >= 0 or seconds == float("inf"):
        raise TranscriptError(f"{where} {n}: {name} must be a time from the start of the call, >= 0")
    return seconds


def _date_time(value: str, n: int, name: str, where: str) -> datetime:
    try:
        return datetime.fromisoformat(value.replace(",", "."))
    except ValueError:
        shown = f" ({value})" if _QUOTABLE.match(value) else ""
        raise TranscriptError(f"{where} {n}: {name}{shown} is not a date and time that exists; write it in "
                              'ISO 8601, e.g. "2026-10-14T09:03:12Z"') from None


def _clean(text: str) -> str:
    return " ".join(text.split())


def _spoken_length(text: str) -> float:
    return max(MIN_TURN_S, len(text.split()) * 60.0 / WORDS_PER_MINUTE)


def _seconds_from_start(turns: list[_Turn]) -> datetime | None:
    """Turn dates and times into seconds from the first turn's (returned); refuse turns that mix kinds
    of time or go backwards. None when the times were seconds already."""
    moments = [(i, m) for i, t in enumerate(turns, start=1) for m in (t.start, t.end) if m is not None]
    dated = [(i, m) for i, m in moments if isinstance(m, datetime)]
    if dated and len(dated) != len(moments):
        i = next(i for i, m in moments if not isinstance(m, datetime))
        raise TranscriptError(f"turn {i}: its time is in seconds but other turns give a date and time: "
                              "write every time the same way")
    zoned = [m.tzinfo is not None for _, m in dated]
    if any(zoned) and not all(zoned):
        i = dated[zoned.index(not zoned[0])][0]
        raise TranscriptError(f"turn {i}: some times have a time zone (Z, +02:00) and some have none: give "
                              "one on every time or on none")
    for prev, (i, turn) in zip(turns, enumerate(turns[1:], start=2), strict=False):
        if prev.start is not None and turn.start is not None and turn.start < prev.start:  # type: ignore[operator]
            raise TranscriptError(f"turn {i}: its time is before turn {i - 1}'s: turns go in the order they "
                                  "were written, and times do not go backwards (check dates and time zones)")
    if not dated:
        return None
    origin = min(m for _, m in dated)  # type: ignore[type-var]
    assert isinstance(origin, datetime)
    for turn in turns:
        if isinstance(turn.start, datetime):
            turn.start = (turn.start - origin).total_seconds()
        if isinstance(turn.end, datetime):
            turn.end = (turn.end - origin).total_seconds()
    return origin


def _build(turns: list[_Turn]) -> Transcript:
    timed = [t.start is not None for t in turns]
    if any(timed) and not all(timed):
        missing = [str(i) for i, has in enumerate(timed, start=1) if not has]
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise TranscriptError(f"turns {shown} have no start time: give times on every turn or on none")
    given = all(timed)
    started_at = _seconds_from_start(turns)
    segments = []
    clock = 0.0
    for i, turn in enumerate(turns):
        if given:
            assert isinstance(turn.start, float)
            start = turn.start
            if turn.end is not None:
                assert isinstance(turn.end, float)
                end = turn.end
            else:
                # Until the next turn starts, but no longer than the words would take to say.
                nxt = turns[i + 1].start if i + 1 < len(turns) else None
                assert nxt is None or isinstance(nxt, float)
                end = start + _spoken_length(turn.text)
                if nxt is not None and nxt > start:
                    end = min(end, nxt)
            if end < start:
                raise TranscriptError(f"turn {i + 1}: end is before start")
        else:
            start = clock
            end = start + _spoken_length(turn.text)
            clock = end + TURN_GAP_S
        segments.append(Segment(speaker=turn.speaker, start=round(start, 3), end=round(end, 3),
                                text=turn.text))
    duration = max(s.end for s in segments)
    model: dict[str, Any] = {"name": "text", "timing": "given" if given else "estimated"}
    if not given:
        model["words_per_minute"] = WORDS_PER_MINUTE
    return Transcript(segments=tuple(segments), duration_s=round(duration, 3), language="en", source="text",
                      model=model, started_at=started_at)
