"""What the call page shows, built from a stored scorecard: transcript lines marked with the
criteria and violations they are evidence for, criteria by section, violations, and talk-time bars.

Evidence in a scorecard names its transcript segments; older scorecards give only a time span and
a speaker (format v1), which is matched back to the lines it overlaps. The page then marks those
lines without any script.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from markupsafe import Markup, escape

from qa_service.web.charts import Part, stacked_bar

# Redaction placeholders as the redact stage writes them, e.g. <PERSON>, <ID_NUMBER>.
PLACEHOLDER = re.compile(r"&lt;([A-Z][A-Z0-9_]{1,40})&gt;")
# Rounding of stored times (2 decimals) and ASR word times: spans this close still touch.
TOLERANCE_S = 0.05


@dataclass
class Line:
    """One transcript segment as shown: speaker lane, times, text and what it is evidence for."""

    index: int
    speaker: str
    start: float
    end: float
    text: str
    criteria: list[str] = field(default_factory=list)
    violations: list[int] = field(default_factory=list)

    @property
    def anchor(self) -> str:
        """Element id of the line on the page."""
        return f"seg-{self.index}"


@dataclass(frozen=True)
class CriterionView:
    id: str
    title: str
    section: str
    passed: bool
    applicable: bool
    points: float
    max_points: float
    reason: str
    lines: tuple[int, ...]
    confidence: float | None = None  # the recogniser's, in the deciding words
    doubt: str = ""

    @property
    def state(self) -> str:
        """pass, fail or na (not applicable): the CSS class and the badge text."""
        return "na" if not self.applicable else "pass" if self.passed else "fail"


@dataclass(frozen=True)
class ViolationView:
    index: int
    id: str
    kind: str
    title: str
    detail: str
    auto_fail: bool
    speaker: str
    start: float
    end: float
    text: str
    lines: tuple[int, ...]
    confidence: float | None = None
    consequence: str | None = None  # outdated-policy mentions: note, deduct or auto_fail
    deducted_points: float = 0.0


@dataclass(frozen=True)
class CallView:
    lines: list[Line]
    sections: list[tuple[str, list[CriterionView]]]
    violations: list[ViolationView]
    metrics: list[tuple[str, str]]
    talk_bar: Markup | None
    # Phrases and figures nearly heard: for a person to check, counted once confirmed.
    to_check: list[ViolationView] = field(default_factory=list)
    provisional_reasons: list[str] = field(default_factory=list)


def redacted_html(text: str) -> Markup:
    """Escape transcript text and show each <ENTITY> placeholder as a marked chip."""
    escaped = str(escape(text))
    return Markup(PLACEHOLDER.sub(
        lambda m: f'<span class="pii" title="Removed: {m.group(1)}">{m.group(1).replace("_", " ")}</span>',
        escaped))


def clock(seconds: Any) -> str:
    """Seconds as m:ss (or h:mm:ss for long calls)."""
    try:
        total = max(0, int(float(seconds)))
    except (TypeError, ValueError):
        return "-"
    h, rest = divmod(total, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


def _num(value: Any, default: float = 0.0) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


def evidence_lines(lines: list[Line], evidence: dict[str, Any] | str) -> tuple[int, ...]:
    """Indexes of the transcript lines an evidence item covers: the segments it names, else the
    lines of the same speaker whose times overlap it, else the lines that contain its words."""
    if isinstance(evidence, str):  # early scorecards kept evidence as bare text
        evidence = {"text": evidence, "start": -1.0, "end": -1.0}
    named = evidence.get("segments")
    if isinstance(named, list) and named and all(isinstance(i, int) and 0 <= i < len(lines) for i in named):
        return tuple(sorted(set(named)))
    start, end = _num(evidence.get("start")), _num(evidence.get("end"))
    speaker = evidence.get("speaker")
    found = tuple(ln.index for ln in lines
                  if (speaker in (None, "unknown", "any") or ln.speaker == speaker)
                  and ln.start < end + TOLERANCE_S and ln.end > start - TOLERANCE_S)
    if found:
        return found
    # Times that do not line up (an older scorecard, a transcript without times): match the words.
    text = str(evidence.get("text") or "").strip().lower()
    return tuple(ln.index for ln in lines if text and (text in ln.text.lower() or ln.text.lower() in text))


def build(scorecard: dict[str, Any]) -> CallView:
    """The call page's content for one scorecard (format v1)."""
    lines = [Line(index=i, speaker=str(s.get("speaker") or "unknown"), start=_num(s.get("start")),
                  end=_num(s.get("end")), text=str(s.get("text") or ""))
             for i, s in enumerate(scorecard.get("transcript") or [])]

    sections: dict[str, list[CriterionView]] = {}
    for c in scorecard.get("criteria") or []:
        marked: list[int] = []
        for ev in c.get("evidence") or []:
            marked.extend(i for i in evidence_lines(lines, ev) if i not in marked)
        view = CriterionView(
            id=str(c.get("id")), title=str(c.get("title") or c.get("id")),
            section=str(c.get("section") or ""),
            passed=bool(c.get("passed")), applicable=bool(c.get("applicable", True)),
            points=_num(c.get("points")), max_points=_num(c.get("max_points")),
            reason=str(c.get("reason") or ""), lines=tuple(marked), confidence=_maybe(c.get("confidence")),
            doubt=str(c.get("doubt") or ""))
        for i in marked:
            lines[i].criteria.append(view.id)
        sections.setdefault(view.section, []).append(view)

    violations = [_violation_view(n, v, lines) for n, v in enumerate(scorecard.get("violations") or [])]
    for v in violations:
        for i in v.lines:
            lines[i].violations.append(v.index)
    to_check = [_violation_view(n, v, lines) for n, v in enumerate(scorecard.get("to_check") or [])]

    metrics, talk_bar = _metrics(scorecard.get("metrics") or {}, _num(scorecard.get("duration_s")))
    metrics += _recording((scorecard.get("models") or {}).get("asr") or {})
    return CallView(lines=lines, sections=list(sections.items()), violations=violations, metrics=metrics,
                    talk_bar=talk_bar, to_check=to_check,
                    provisional_reasons=[str(r) for r in scorecard.get("provisional_reasons") or []])


def _violation_view(n: int, v: dict[str, Any], lines: list[Line]) -> ViolationView:
    return ViolationView(
        index=n, id=str(v.get("id")), kind=str(v.get("kind") or ""), title=str(v.get("title") or v.get("id")),
        detail=str(v.get("detail") or ""), auto_fail=bool(v.get("auto_fail")),
        speaker=str(v.get("speaker") or "unknown"), start=_num(v.get("start")), end=_num(v.get("end")),
        text=str(v.get("text") or ""), lines=evidence_lines(lines, v), confidence=_maybe(v.get("confidence")),
        consequence=str(v["consequence"]) if v.get("consequence") else None,
        deducted_points=_num(v.get("deducted_points") or 0.0))


def _maybe(value: Any) -> float | None:
    return None if value is None else _num(value)


def _recording(asr: dict[str, Any]) -> list[tuple[str, str]]:
    """What the transcript was made from and how sure the recogniser was: a reviewer reads a
    transcript of an 8 kHz line, or one the recogniser was unsure of, with more care."""
    rows: list[tuple[str, str]] = []
    audio = asr.get("audio") or {}
    if audio.get("sample_rate"):
        channels = int(_num(audio.get("channels")))
        rows.append(("Recording", f"{_num(audio['sample_rate']) / 1000:g} kHz, {channels} channel"
                                  f"{'' if channels == 1 else 's'} ({audio.get('format')})"))
    lines = {role: line for role, line in (asr.get("lines") or {}).items() if isinstance(line, dict)}
    if lines:
        # Telephone-band lines may be decoded by another model than wideband ones (QA_ASR_MODEL_NARROWBAND).
        said = [(role, f"{line.get('model')} ({line.get('band')} band)") for role, line in lines.items()]
        rows.append(("Speech model", said[0][1] if len(said) == 1 else
                     ", ".join(f"{role} {text}" for role, text in said)))
    heard = asr.get("language_detection") or {}
    if heard.get("language"):
        rows.append(("Language", f"{heard['language']} ({_num(heard.get('probability')) * 100:.0f}% likely), "
                                 f"transcribed by {asr.get('name')}"))
    hints = asr.get("vocabulary") or {}
    if hints.get("channels"):
        biased_on = ", ".join(map(str, hints["channels"]))
        rows.append(("Recogniser hints", f"told to expect the rubric's {int(_num(hints.get('phrases')))} "
                                         f"phrases and policy topics ({biased_on})"))
    if "mean_word_confidence" in asr:
        confidence = _num(asr["mean_word_confidence"]) * 100
        rows.append(("Recogniser confidence", f"{confidence:.0f}% per word on average"))
    return rows


def _metrics(m: dict[str, Any], duration: float) -> tuple[list[tuple[str, str]], Markup | None]:
    talk = m.get("talk_time_s") or {}
    agent, customer = _num(talk.get("agent")), _num(talk.get("customer"))
    silence, overtalk = _num(m.get("silence_s")), _num(m.get("overtalk_s"))
    rows: list[tuple[str, str]] = []
    if talk:
        rows.append(("Agent talk", f"{agent:.0f} s"))
        rows.append(("Customer talk", f"{customer:.0f} s"))
    if "agent_talk_ratio" in m:
        rows.append(("Agent share of talk", f"{_num(m['agent_talk_ratio']) * 100:.0f}%"))
    if "silence_s" in m:
        rows.append(("Silence", f"{silence:.1f} s (longest {_num(m.get('longest_silence_s')):.1f} s)"))
    if "overtalk_s" in m:
        rows.append(("Overtalk", f"{overtalk:.1f} s"))
    wpm = m.get("words_per_minute") or {}
    if wpm:
        rows.append(("Pace (words/min)", f"agent {_num(wpm.get('agent')):.0f}, customer "
                                         f"{_num(wpm.get('customer')):.0f}"))
    interruptions = m.get("interruptions") or {}
    if interruptions:
        rows.append(("Interruptions", f"by agent {int(_num(interruptions.get('agent')))}, by customer "
                                      f"{int(_num(interruptions.get('customer')))}"))
    if not talk:
        return rows, None
    # Overtalk is counted in both speakers' talk time; the bar shows it once, as its own colour.
    whole = max(duration, agent + customer - overtalk + silence)
    bar = stacked_bar([
        Part(max(agent - overtalk / 2, 0), "agent", f"agent {agent:.0f} s"),
        Part(overtalk, "overtalk", f"overtalk {overtalk:.1f} s"),
        Part(max(customer - overtalk / 2, 0), "customer", f"customer {customer:.0f} s"),
        Part(silence, "silence", f"silence {silence:.0f} s"),
    ], total=whole)
    return rows, bar
