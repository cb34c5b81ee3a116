"""Language routing: a call an English-only model is unsure of is heard by a multilingual model, and
transcribed again by it when it is not in English.

An English-only model writes any speech as English, so its words on a Mandarin call are guesses it
is unsure of. Such a call has its language detected on its first speech (about 1 s), and one not in
English is decoded again, every line, by the multilingual model. A call the English model is sure
of is not checked: most calls cost nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Protocol

import numpy as np

from qa_service.records import Channels, Heard, LanguageHeard, Segment, mean_word_probability
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


class LanguageModel(Transcriber, Protocol):
    """A multilingual transcriber that can also say which language it hears (WhisperTranscriber)."""

    def detect_language(self, samples: np.ndarray) -> LanguageHeard | None:
        """The language of the first speech in 16 kHz mono samples; None when there is none."""
        ...


def route_language(channels: Channels, heard: Heard, other_languages: LanguageModel | None, *,
                   vocabulary: Sequence[str] = (), vocabulary_language: str = "en") -> Heard:
    """The call as heard, or, when its English-only lines are unsure and `other_languages` hears
    another language than English, as that model hears it; the detection, when one was made, is kept
    on the record. The vocabulary goes to the second decode only when it is in the language heard."""
    english_only = [t.segments for t in heard.lines if not t.multilingual]
    if other_languages is None or not english_only or not maybe_not_english(english_only):
        return heard
    detected = other_languages.detect_language(mixed(channels))
    if detected is None or detected.english >= NOT_ENGLISH:
        return replace(heard, language_detection=detected)
    words = vocabulary if detected.language == vocabulary_language else ()
    again = transcribe_with(channels, [other_languages] * len(channels.lines), vocabulary=words,
                            vocabulary_language=vocabulary_language)
    return replace(again, language_detection=detected)


def maybe_not_english(lines: Sequence[Sequence[Segment]]) -> bool:
    """Whether an English-only model's words are unsure enough that the call may be in another language."""
    mean = mean_word_probability(s for segs in lines for s in segs)
    return mean is None or mean < UNSURE_ENGLISH
