"""Language routing: a call an English-only model is unsure of is heard by a multilingual model, and
transcribed again by it when it is not in English.

An English-only model writes any speech as English, so its words on a Mandarin call are guesses it
is unsure of. Such a call has its language detected on its first speech (about 1 s), and one not in
English is decoded again, every line, by the multilingual model. A call the English model is sure
of is not checked: most calls cost nothing here.

A call may open in English and go on in another language: the English model is sure of the opening,
so the call as a whole looks English, and the rest comes out as English-sounding guesses ("go on,
don't shoot for the time" for Mandarin). So each stretch of a line the English model was unsure of
(SWITCH_MIN_S or longer) is heard on its own, and one in another language is decoded again by the
multilingual model (`switched_stretches`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from qa_service.records import (
    SAMPLE_RATE,
    Channels,
    Heard,
    LanguageHeard,
    LanguageSwitch,
    Segment,
    mean_word_probability,
)
from qa_service.stages.channels import mixed
from qa_service.stages.transcribe import Transcriber, transcribe_with

# Below this mean word probability, an English-only model's transcript may be of another language,
# and the multilingual model is asked. tiny.en's mean on four real Mandarin recordings: 0.46-0.59; on
# English, 13 real recordings 0.84-0.96, 48 synthetic calls 0.65-0.90 (16 kHz and noisy 8 kHz).
UNSURE_ENGLISH = 0.7
# A call goes to the multilingual model when that model gives English less than this probability on
# the call's first speech. Measured with base on the first 30 s of speech: four real Mandarin
# recordings, English 0.00-0.01; English, 14 real calls and recordings (8 kHz mu-law and 8-bit among
# them) 0.93-1.00 and 16 noisy 8 kHz synthetic calls 0.69-0.98. espeak-ng's robotic Mandarin gets
# 0.41-0.58: it is not a test of this. Asking costs about 1 s a call, hence only unsure calls ask.
NOT_ENGLISH = 0.5
# A stretch of consecutive segments with a mean word probability below UNSURE_ENGLISH, at least this
# long, is heard on its own (about 0.3 s with base); segments closer than SWITCH_JOIN_S join a stretch.
# tiny.en on real Mandarin after an English opening (weather_16k + chinese_16k): 0.56-0.57 per
# segment, the English ones 0.88-0.98 (docs/decisions/0012-chinese-numbers-and-switches.md).
SWITCH_MIN_S = 1.5
SWITCH_JOIN_S = 2.0
# Audio either side of a stretch that goes with it, and the most stretches heard in one call.
SWITCH_PAD_S = 0.3
MAX_SWITCH_CHECKS = 8


class LanguageModel(Transcriber, Protocol):
    """A multilingual transcriber that can also say which language it hears (WhisperTranscriber)."""

    def detect_language(self, samples: np.ndarray) -> LanguageHeard | None:
        """The language of the first speech in 16 kHz mono samples; None when there is none."""
        ...


def route_language(channels: Channels, heard: Heard, other_languages: LanguageModel | None, *,
                   vocabulary: Sequence[str] = (), vocabulary_language: str = "en") -> Heard:
    """The call as heard, or, when its English-only lines are unsure and `other_languages` hears
    another language than English, as that model hears it; the detection, when one was made, is kept
    on the record. A call kept with the English model has its unsure stretches heard on their own
    (`switched_stretches`). The vocabulary goes to a second decode only when it is in the language
    heard."""
    english_only = [t.segments for t in heard.lines if not t.multilingual]
    if other_languages is None or not english_only:
        return heard
    if not maybe_not_english(english_only):
        return switched_stretches(channels, heard, other_languages, vocabulary=vocabulary,
                                  vocabulary_language=vocabulary_language)
    detected = other_languages.detect_language(mixed(channels))
    if detected is None or detected.english >= NOT_ENGLISH:
        return switched_stretches(channels, replace(heard, language_detection=detected), other_languages,
                                  vocabulary=vocabulary, vocabulary_language=vocabulary_language)
    words = vocabulary if detected.language == vocabulary_language else ()
    again = transcribe_with(channels, [other_languages] * len(channels.lines), vocabulary=words,
                            vocabulary_language=vocabulary_language)
    return replace(again, language_detection=detected)


def maybe_not_english(lines: Sequence[Sequence[Segment]]) -> bool:
    """Whether an English-only model's words are unsure enough that the call may be in another language."""
    mean = mean_word_probability(s for segs in lines for s in segs)
    return mean is None or mean < UNSURE_ENGLISH


def unsure_stretches(segments: Sequence[Segment]) -> list[tuple[float, float]]:
    """(start, end) of the runs of segments an English-only model was unsure of (mean word probability
    below UNSURE_ENGLISH), joined across gaps shorter than SWITCH_JOIN_S, SWITCH_MIN_S or longer."""
    runs: list[list[float]] = []
    for seg in sorted(segments, key=lambda s: s.start):
        mean = mean_word_probability([seg])
        if mean is None or mean >= UNSURE_ENGLISH:
            continue
        if runs and seg.start - runs[-1][1] < SWITCH_JOIN_S:
            runs[-1][1] = max(runs[-1][1], seg.end)
        else:
            runs.append([seg.start, seg.end])
    return [(a, b) for a, b in runs if b - a >= SWITCH_MIN_S]


def switched_stretches(channels: Channels, heard: Heard, other_languages: LanguageModel, *,
                       vocabulary: Sequence[str] = (), vocabulary_language: str = "en") -> Heard:
    """The call with each unsure stretch of an English-only line (`unsure_stretches`) that the
    multilingual model hears in another language decoded again by that model, in place of the English
    model's guesses there; the stretches are recorded as `switches`."""
    lines = list(heard.lines)
    switches: list[LanguageSwitch] = []
    checks = 0
    for n, (line, text) in enumerate(zip(channels.lines, heard.lines, strict=True)):
        if text.multilingual:
            continue
        kept = list(text.segments)
        for start, end in unsure_stretches(text.segments):
            if checks >= MAX_SWITCH_CHECKS:
                break
            checks += 1
            a = max(0, int((start - SWITCH_PAD_S) * SAMPLE_RATE))
            b = min(line.samples.size, int((end + SWITCH_PAD_S) * SAMPLE_RATE))
            detected = other_languages.detect_language(line.samples[a:b])
            if detected is None or detected.english >= NOT_ENGLISH:
                continue
            words = vocabulary if detected.language == vocabulary_language else ()
            again = other_languages.transcribe(line.samples[a:b], words,
                                               one_party=channels.layout == "stereo")
            offset = a / SAMPLE_RATE
            kept = [s for s in kept if not start <= (s.start + s.end) / 2 <= end]
            kept += [_shifted(s, offset) for s in again.segments]
            switches.append(LanguageSwitch(n, round(start, 2), round(end, 2), detected.language,
                                           detected.english, detected.model))
        if len(kept) != len(text.segments) or any(s.line == n for s in switches):
            lines[n] = replace(text, segments=tuple(sorted(kept, key=lambda s: (s.start, s.end))))
    if not switches:
        return heard
    return replace(heard, lines=tuple(lines), switches=tuple(switches))


def _shifted(segment: Segment, offset: float) -> Segment:
    """A segment decoded from a stretch, on the line's clock."""
    words = tuple(replace(w, start=w.start + offset, end=w.end + offset) for w in segment.words)
    return replace(segment, start=segment.start + offset, end=segment.end + offset, words=words)
