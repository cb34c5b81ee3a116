"""Speech to text, line by line: faster-whisper on each line that stages.channels laid out.

Each line is decoded by the model for its band (a telephone-band line by the narrowband model when
there is one) and comes back as a Transcription record: its segments (speaker "unknown"), the
language, whether the caller's vocabulary was used, and the model and options behind it. Naming
who spoke is the speakers stage's work, checking the language the language stage's.
Segment times come from word timestamps (not Whisper's 30 s windows) and a segment is split
at long pauses, because reviewers compare segment times with who spoke when.
"""

from __future__ import annotations

import bisect
import logging
import os
import re
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from functools import lru_cache
from itertools import groupby
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from qa_service.errors import ConfigError, NoSpeech
from qa_service.records import (
    SAMPLE_RATE,
    Channels,
    Heard,
    LanguageHeard,
    Segment,
    Transcript,
    Transcription,
    Word,
)
from qa_service.stages.bandfill import band_edge, fill_missing_band
from qa_service.stages.channels import SILENCE_RMS, rms, telephone_band
from qa_service.stages.denoise import reduce_noise

# Before faster_whisper (and huggingface_hub) are imported anywhere: a model must never be fetched.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

log = logging.getLogger(__name__)

# Seed of CTranslate2's random generators, for a decode that samples (the defaults do not: DecodeOptions).
SAMPLING_SEED = 0
# The voice detector reads a channel in blocks of about this many seconds (bounded memory however long
# the call); the speech it finds is decoded in clips (CLIP_S).
BLOCK_S = 300.0
# The language is heard in the first speech of this much of the call: the voice detector runs on
# this part only, so a long call costs no more than a short one.
LANGUAGE_WINDOW_S = 120.0
# A recording holds speech to score when the recogniser is sure (probability SURE_WORD or more) of at
# least MIN_SURE_WORDS words and its words are not mostly guesses (mean probability at least
# MIN_SPEECH_CONFIDENCE): on noise, music and reversed speech it hears nothing, a few invented words
# or many unsure ones. Margins measured in docs/decisions/0002-no-speech.md.
SURE_WORD = 0.5
MIN_SURE_WORDS = 2
MIN_SPEECH_CONFIDENCE = 0.35


class Transcriber(Protocol):
    """Turns 16 kHz mono float32 samples into a Transcription: time-stamped segments (speaker
    "unknown") and how they were made. It keeps nothing of a call, so one can serve several at once.

    A transcriber may also say whether it knows languages other than English (`multilingual`); one
    that does not say is taken for English-only (`knows_languages`).
    """

    def transcribe(self, samples: np.ndarray, vocabulary: Sequence[str] = (), *,
                   one_party: bool = False) -> Transcription:
        """Transcribe one channel; `one_party` when it holds one party of a stereo call."""
        ...


@dataclass(frozen=True)
class DecodeOptions:
    """faster-whisper decoding settings; kept on every transcript so a result can be reproduced.

    Chosen on 8 kHz noisy two-channel calls; the figures behind each default, and the commands that
    measure them again, are in docs/decisions/0009-measured-options.md.
    """

    # Greedy decoding (beam 1) loses words and speaker accuracy on noisy telephone calls.
    beam_size: int = 5
    # No sampling at higher temperatures: its draws depend on what the process decoded before, so the
    # same audio could give other words in a long-lived worker (docs/decisions/0004-clips.md).
    temperature: tuple[float, ...] = (0.0,)
    compression_ratio_threshold: float = 2.4
    log_prob_threshold: float = -1.0
    no_speech_threshold: float = 0.6
    # Conditioning on earlier text lets one bad window poison the rest of a long call.
    condition_on_previous_text: bool = False
    # A repetition penalty keeps a few more words but costs speaker accuracy.
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0
    hallucination_silence_threshold: float | None = None
    # Shorter silences and pads than faster-whisper's VAD defaults (2 s, 400 ms) keep more words.
    vad_min_silence_ms: int = 500
    vad_speech_pad_ms: int = 200
    vad_threshold: float = 0.5
    # How to use the caller's vocabulary (the rubric's phrases and policy topics): "none", "hotwords",
    # "prompt" (first window only, since earlier text is not carried over), "telephone": hotwords on
    # telephone-band channels (bandfill.band_edge finds their missing top), none on the others, or
    # "auto": hotwords on telephone-band channels and on each party's channel of a stereo call, none on
    # a wideband recording of both parties on one channel, where it makes Whisper skip whole turns
    # (docs/decisions/0009-measured-options.md).
    vocabulary_mode: Literal["none", "hotwords", "prompt", "telephone", "auto"] = "auto"
    # Split a segment where the gap between two words is at least this long.
    pause_split_s: float = 1.0
    # Subtract steady line noise before recognition (stages/denoise.py; no-op on clean audio). Off by
    # default: more words come through, but weak consonants of key phrases go with the noise (0009).
    denoise: bool = False
    # Clips decoded at once by faster-whisper's batched pipeline (docs/decisions/0004-clips.md).
    batch_size: int = 4
    # Write numbers as they are spoken ("six hundred and forty dollars", "four one one one") by keeping
    # Whisper from choosing any token with a digit, $ or %. Whisper's own digits are a guess at the
    # format that goes wrong on poor lines ("$600 and $40" for "six hundred and forty dollars") and
    # loops on spoken card numbers ("1, 1, 1, 1, ..."); the scorer reads numbers in words and digits
    # alike, and the redactor finds spoken digit runs (measured in docs/decisions/0009).
    numbers_as_words: bool = True
    # Whisper sometimes ends a clip's decode after a few words: the speech it left without words is
    # decoded again, each lost part on its own, and what it is sure of there is added
    # (docs/decisions/0004-clips.md).
    recover_lost_speech: bool = True
    # Telephone audio has nothing above its band (4 kHz at 8 kHz sampling), which Whisper's small
    # models mishear more on; when the recording has a line noise floor, the recogniser hears it
    # continued above the band (stages/bandfill.py): words kept and verdicts rise on average on 8 kHz
    # calls (docs/decisions/0009); 16 kHz calls are left alone.
    fill_missing_band: bool = True


# Seconds of detected speech with no recognised word near it that make a channel worth decoding again
# where it lost them (a clip's decode can end before the clip does).
LOST_SPEECH_S = 1.5
# Inside speech the recogniser wrote words in, a gap without words this long is speech it lost.
LOST_GAP_S = 1.5
# No word is spoken for longer than this: a longer one covers speech the recogniser lost.
LONGEST_WORD_S = 2.0
# A lost part is decoded again with this much of the audio either side of it.
LOST_PAD_S = 0.5


# Speech is decoded in clips of at most this many seconds of speech (Whisper's window; the pauses
# between the detector's chunks are left out), CLIPS_AT_ONCE of them at a time (bounded memory: about
# 1 MB of features a clip).
CLIP_S = 30.0
CLIPS_AT_ONCE = 16
# A clip is not cut shorter than this where a pause leaves the choice (Whisper hears a sentence better
# with its neighbours); a pause of SEPARATE_S or more always ends one.
MIN_CLIP_S = 8.0
SEPARATE_S = 8.0
# A chunk of speech runs from EDGE_PAD_S before its first loud sample (EDGE_LEVEL of its loud level,
# found within EDGE_SEARCH_S of the detector's edge) to EDGE_PAD_S after its last.
EDGE_PAD_S = 0.2
EDGE_LEVEL = 0.05
EDGE_SEARCH_S = 0.5
# faster-whisper's options that its batched pipeline ignores here (the clips are the detector's speech).
_SEQUENTIAL_ONLY = frozenset({"vad_filter", "vad_parameters"})


@dataclass
class Decoded:
    """Words of one clip after they were checked against a second decode (a Whisper segment's shape)."""

    words: list[Any]


def clip_groups(chunks: Sequence[dict[str, int]], max_s: float = CLIP_S,
                min_s: float = MIN_CLIP_S) -> list[list[dict[str, int]]]:
    """Speech chunks grouped into clips of at most `max_s` seconds of speech: cut at every pause of
    SEPARATE_S or more, then, where a stretch holds more speech, at the longest pause that leaves at
    least `min_s` of speech on both sides (any pause when none does). The cuts depend on the pauses
    inside a stretch of speech, not on where it starts: the same conversation falls into the same
    clips wherever it sits in a recording."""
    out: list[list[dict[str, int]]] = []
    todo: list[list[dict[str, int]]] = []
    for chunk in chunks:
        if todo and chunk["start"] - todo[-1][-1]["end"] < SEPARATE_S * SAMPLE_RATE:
            todo[-1].append(chunk)
        else:
            todo.append([chunk])
    todo.reverse()  # taken from the end: the earliest first
    while todo:
        part = todo.pop()
        sizes = np.array([c["end"] - c["start"] for c in part]) / SAMPLE_RATE
        if len(part) == 1 or sizes.sum() <= max_s:
            out.append(part)
            continue
        before = np.cumsum(sizes)[:-1]
        gaps = np.array([b["start"] - a["end"] for a, b in zip(part, part[1:], strict=False)], float)
        balanced = (before >= min_s) & (sizes.sum() - before >= min_s)
        cut = int(np.argmax(np.where(balanced, gaps, -1.0))) if balanced.any() else int(np.argmax(gaps))
        todo += [part[cut + 1:], part[:cut + 1]]  # the earlier half is taken first
    return out


def refine_chunks(samples: np.ndarray, chunks: Sequence[dict[str, int]]) -> list[dict[str, int]]:
    """Each chunk of speech from its first loud sample to its last (clip_edges), none overlapping the
    one before it: the same speech gives the same chunk wherever it sits in a recording."""
    out: list[dict[str, int]] = []
    for chunk in chunks:
        start, end = clip_edges(samples, [chunk])
        start = max(start, out[-1]["end"]) if out else start
        out.append({"start": start, "end": max(end, start + 1)})
    return out


def clip_edges(samples: np.ndarray, group: Sequence[dict[str, int]]) -> tuple[int, int]:
    """Where speech chunks start and end: EDGE_PAD_S before the first sample and after the last one
    that reaches a twentieth of their loud level, searched near the detector's edges. The detector
    decides in steps of 32 ms, and Whisper may hear speech that starts a few milliseconds later
    differently: this makes a chunk start at the same place in the same speech."""
    a, b = group[0]["start"], group[-1]["end"]
    level = np.abs(samples[a:b])
    loud = level >= EDGE_LEVEL * float(np.percentile(level, 99)) if level.size else level
    near = int(EDGE_SEARCH_S * SAMPLE_RATE)
    pad = int(EDGE_PAD_S * SAMPLE_RATE)
    head, tail = np.flatnonzero(loud[:near]), np.flatnonzero(loud[-near:])
    start = a + int(head[0]) - pad if head.size else a
    end = b - min(near, loud.size) + int(tail[-1]) + 1 + pad if tail.size else b
    return max(0, start), min(samples.size, max(end, start + 1))


# Words written faster than this (three or more) make a decode with the vocabulary doubtful (`doubtful`):
# what it invents it writes at 25-30 words a second, people speak 2-6.
MAX_WORDS_PER_S = 15.0


def squeezed(words: Sequence[Any]) -> bool:
    """Whether three or more words come faster than anyone speaks (MAX_WORDS_PER_S): what a biased
    decode invents it writes into a fraction of a second ("good morning, good morning, good morning"
    in 0.34 s)."""
    return len(words) >= 3 and len(words) > MAX_WORDS_PER_S * max(0.0, words[-1].end - words[0].start)


def doubtful(clip: Sequence[Any]) -> bool:
    """Whether a decode told the vocabulary wrote a run of words faster than speech."""
    words = [w for seg in clip for w in seg.words or ()]
    return any(squeezed(words[i:i + 3]) for i in range(len(words) - 2))


def confirm_words(told: Sequence[Any], plain: Sequence[Any]) -> list[Any]:
    """One clip's words from a decode told the vocabulary, checked against a decode without it: where
    they differ, the told decode's words stay unless it wrote them faster than speech, and then the
    plain decode's words are taken. Unsure words are not dropped for being unsure: on a poor line the
    vocabulary's words are mostly right and mostly unsure (docs/decisions/0004-clips.md)."""
    import difflib

    a, b = [_norm(w.word) for w in told], [_norm(w.word) for w in plain]
    out: list[Any] = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        mine, theirs = told[i1:i2], plain[j1:j2]
        out += mine if op == "equal" or (mine and not squeezed(mine)) else theirs
    return out


@dataclass
class WhisperTranscriber:
    """Transcriber over a loaded faster-whisper model; `describe()` says what made the text."""

    model: Any  # faster_whisper.WhisperModel
    name: str
    path: Path
    device: str = "cpu"
    compute_type: str = "int8"
    threads: int = 0
    options: DecodeOptions = field(default_factory=DecodeOptions)
    block_s: float = BLOCK_S

    def transcribe(self, samples: np.ndarray, vocabulary: Sequence[str] = (), *,
                   one_party: bool = False) -> Transcription:
        """Transcribe one 16 kHz channel into segments whose times hug the spoken words.

        The voice detector finds the speech; its stretches are grouped into clips of at most CLIP_S
        seconds of speech, cut at the longest pauses, and the clips are decoded in batches, each in
        its own time frame. A clip's words depend on that clip alone: not on what came before it in
        the recording, on the calls the process decoded earlier, or on a random draw.
        """
        samples = np.ascontiguousarray(samples, dtype=np.float32)
        if samples.size < SAMPLE_RATE // 10 or rms(samples) < SILENCE_RMS:
            return self._made((), voice_s=0.0)
        o = self.options
        if o.denoise:
            samples = reduce_noise(samples)
        edge = band_edge(samples)
        if o.fill_missing_band and edge is not None:
            samples = fill_missing_band(samples, edge)
        vocabulary = vocabulary if self.biased(telephone=edge is not None, one_party=one_party) else ()
        chunks = self.speech_chunks(samples)
        voice_s = sum(c["end"] - c["start"] for c in chunks) / SAMPLE_RATE
        if not chunks:
            return self._made((), voice_s=voice_s, vocabulary=vocabulary)
        groups = clip_groups(chunks)
        decoded, language, probability = self._decode_groups(samples, groups,
                                                             self.whisper_options(None, vocabulary))
        if vocabulary:
            decoded = self._confirm_vocabulary(samples, groups, decoded, language)
        # A loop ("-one -one -one ...") is cut before it can pass for the speech it was stretched over.
        raw = [Decoded(words=_drop_repeats(list(seg.words))) for clip in decoded for seg in clip]
        if o.recover_lost_speech:
            raw = self._recover_lost_speech(samples, self.whisper_options(language, vocabulary), raw, chunks)
        silences = [(a["end"] / SAMPLE_RATE, b["start"] / SAMPLE_RATE)
                    for a, b in zip(chunks, chunks[1:], strict=False)
                    if b["start"] - a["end"] >= o.pause_split_s * SAMPLE_RATE]
        segments = split_at(words_to_segments(raw, pause_split_s=o.pause_split_s), silences)
        return self._made(tuple(segments), voice_s=voice_s, vocabulary=vocabulary, language=language,
                          probability=probability)

    def _made(self, segments: tuple[Segment, ...], *, voice_s: float, vocabulary: Sequence[str] = (),
              language: str | None = None, probability: float | None = None) -> Transcription:
        """The record of one line's decode: its segments and what they were made with."""
        return Transcription(
            segments=segments, language=language, language_probability=probability,
            biased=bool(vocabulary), vocabulary=tuple(vocabulary_phrases(vocabulary)) if vocabulary else (),
            voice_s=voice_s, multilingual=self.multilingual, model=self.describe(),
        )

    def speech_chunks(self, samples: np.ndarray) -> list[dict[str, int]]:
        """The voice detector's speech as sample ranges (refine_chunks), none longer than CLIP_S. It runs
        on blocks of about BLOCK_S cut in the quietest moment near each boundary, which keeps its memory
        bounded."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        options = VadOptions(**self.vad_parameters(), max_speech_duration_s=CLIP_S - 4 * EDGE_PAD_S)
        chunks: list[dict[str, int]] = []
        for start, stop in block_bounds(samples, self.block_s):
            chunks += [{"start": c["start"] + start, "end": c["end"] + start}
                       for c in get_speech_timestamps(samples[start:stop], options)]
        return refine_chunks(samples, chunks)

    def _decode_groups(self, samples: np.ndarray, groups: Sequence[Sequence[dict[str, int]]],
                       kwargs: dict[str, Any]) -> tuple[list[list[Any]], str, float | None]:
        """Decode each group of speech chunks as one clip (its chunks joined without the pauses between
        them), `batch_size` clips at a time; returns each clip's Whisper segments on the channel's
        clock, the language (detected on the first clips when `kwargs` names none) and its probability
        (1.0 when it was named; None when there was nothing to decode)."""
        from faster_whisper import BatchedInferencePipeline
        from faster_whisper.transcribe import restore_speech_timestamps

        o = self.options
        language = kwargs.get("language")
        probability: float | None = None
        batched = {k: v for k, v in kwargs.items() if k not in _SEQUENTIAL_ONLY}
        frame = 1 / self.model.frames_per_second
        out: list[list[Any]] = []
        for first in range(0, len(groups), CLIPS_AT_ONCE):
            part = groups[first:first + CLIPS_AT_ONCE]
            chunks = [c for group in part for c in group]
            audio = np.concatenate([samples[c["start"]:c["end"]] for c in chunks])
            starts, at = [], 0
            for group in part:
                starts.append(at)
                at += sum(c["end"] - c["start"] for c in group)
            ends = [*starts[1:], at]
            segments, info = BatchedInferencePipeline(self.model).transcribe(
                audio, **{**batched, "language": language}, batch_size=max(1, o.batch_size),
                clip_timestamps=[{"start": a / SAMPLE_RATE, "end": b / SAMPLE_RATE}
                                 for a, b in zip(starts, ends, strict=True)],
                without_timestamps=False)
            segments = [seg for seg in segments if seg.words]
            # A segment's `seek` is its clip's start in frames, cut down to a whole frame.
            seconds = [a / SAMPLE_RATE for a in starts]
            which = [max(0, bisect.bisect_right(seconds, seg.seek * frame + frame) - 1) for seg in segments]
            clips: list[list[Any]] = [[] for _ in part]
            for i, seg in zip(which, restore_speech_timestamps(segments, chunks, SAMPLE_RATE), strict=True):
                clips[i].append(seg)
            out += clips
            if probability is None:
                probability = float(info.language_probability)
            language = language or info.language
        return out, language or "en", probability

    def _confirm_vocabulary(self, samples: np.ndarray, groups: Sequence[Sequence[dict[str, int]]],
                            decoded: list[list[Any]], language: str) -> list[list[Any]]:
        """Clips whose decode with the vocabulary is doubtful are decoded again without it, and its
        words checked against that decode (confirm_words)."""
        unsure = [i for i, clip in enumerate(decoded) if doubtful(clip)]
        if not unsure:
            return decoded
        plain = self._decode_groups(samples, [groups[i] for i in unsure], self.whisper_options(language))[0]
        out = list(decoded)
        for i, again in zip(unsure, plain, strict=True):
            kept = confirm_words([w for seg in decoded[i] for w in seg.words],
                                 [w for seg in again for w in seg.words])
            # Whisper's segment breaks (sentence ends, mostly) stay where the first decode put them.
            breaks = [seg.words[0].start for seg in decoded[i][1:]]
            out[i] = [Decoded(words=list(run))
                      for _, run in groupby(kept, key=lambda w: bisect.bisect_right(breaks, w.start))]
        log.info("doubtful decodes with the vocabulary: %d of %d clips decoded again without it",
                 len(unsure), len(decoded))
        return out

    def biased(self, telephone: bool, one_party: bool = False) -> bool:
        """Whether the caller's vocabulary goes to Whisper for a channel of telephone-band audio or not,
        holding one party of a stereo call or both."""
        mode = self.options.vocabulary_mode
        return mode in ("hotwords", "prompt") or (mode == "telephone" and telephone) \
            or (mode == "auto" and (telephone or one_party))

    @property
    def multilingual(self) -> bool:
        return bool(getattr(self.model.model, "is_multilingual", False))

    def detect_language(self, samples: np.ndarray) -> LanguageHeard | None:
        """The language of the first speech in `samples` (16 kHz mono) with its probability and
        English's; None when there is no speech to hear."""
        from faster_whisper.vad import VadOptions, get_speech_timestamps

        head = np.ascontiguousarray(samples[: int(LANGUAGE_WINDOW_S * SAMPLE_RATE)], dtype=np.float32)
        if not self.multilingual or rms(head) < SILENCE_RMS:
            return None
        chunks = get_speech_timestamps(head, VadOptions(**self.vad_parameters()))
        speech = [head[c["start"]:c["end"]] for c in chunks]
        if sum(c.size for c in speech) < SAMPLE_RATE // 2:
            return None
        language, probability, ranked = self.model.detect_language(np.concatenate(speech))
        return LanguageHeard(language=language, probability=round(float(probability), 3),
                             english=round(float(dict(ranked).get("en", 0.0)), 3), model=self.name)

    def _recover_lost_speech(self, samples: np.ndarray, kwargs: dict[str, Any], raw: list[Any],
                             chunks: list[dict[str, int]]) -> list[Any]:
        """Whisper's segments, with the speech they left without words (a clip's decode can end early)
        decoded again on its own, each lost part a clip, when that hears more."""
        speech = [(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in chunks]
        lost_parts = unheard(speech, raw)
        lost = sum(b - a for a, b in lost_parts)
        if lost < LOST_SPEECH_S:
            return raw
        pad = int(LOST_PAD_S * SAMPLE_RATE)
        parts: list[dict[str, int]] = []
        for a, b in lost_parts:
            start = max(0, round(a * SAMPLE_RATE) - pad, parts[-1]["end"] if parts else 0)
            end = min(samples.size, round(b * SAMPLE_RATE) + pad)
            parts.append({"start": start, "end": max(start + 1, end)})
        decoded = self._decode_groups(samples, [[p] for p in parts], kwargs)[0]
        # What it hears there counts when it is sure of it: a lost part may be noise the detector took
        # for speech, and Whisper invents words in noise.
        again = [Decoded(words=[w for w in seg.words if _inside((w.start + w.end) / 2, lost_parts, 0.0)])
                 for clip in decoded for seg in clip
                 if np.mean([w.probability for w in seg.words]) >= SURE_WORD]
        merged = sorted((seg for seg in [*raw, *again] if seg.words), key=lambda seg: seg.words[0].start)
        lost_again = unheard_s(speech, merged)
        log.info("speech without words: %.1f s; decoded again on its own: %.1f s", lost, lost_again)
        return merged if lost_again < lost else raw

    def whisper_options(self, language: str | None = None, vocabulary: Sequence[str] = ()) -> dict[str, Any]:
        """The keyword arguments for faster-whisper's `transcribe` (also what `make bench` gives bare
        faster-whisper, so both decode alike); `language` None lets a multilingual model detect it."""
        o = self.options
        kwargs: dict[str, Any] = {}
        if vocabulary and o.vocabulary_mode != "none":
            key = "initial_prompt" if o.vocabulary_mode == "prompt" else "hotwords"
            kwargs[key] = vocabulary_text(vocabulary)
        if o.numbers_as_words:
            kwargs["suppress_tokens"] = [-1, *_digit_tokens(self.model)]
        return dict(
            language=language if self.multilingual else "en",
            beam_size=o.beam_size,
            temperature=list(o.temperature),
            compression_ratio_threshold=o.compression_ratio_threshold,
            log_prob_threshold=o.log_prob_threshold,
            no_speech_threshold=o.no_speech_threshold,
            condition_on_previous_text=o.condition_on_previous_text,
            repetition_penalty=o.repetition_penalty,
            no_repeat_ngram_size=o.no_repeat_ngram_size,
            hallucination_silence_threshold=o.hallucination_silence_threshold,
            word_timestamps=True,
            vad_filter=True,
            vad_parameters=self.vad_parameters(),
            **kwargs,
        )

    def vad_parameters(self) -> dict[str, Any]:
        o = self.options
        return {"threshold": o.vad_threshold, "min_silence_duration_ms": o.vad_min_silence_ms,
                "speech_pad_ms": o.vad_speech_pad_ms}

    def describe(self) -> dict[str, Any]:
        """Model name, path, device, compute type and decoding options, for the transcript record."""
        return {
            "name": self.name,
            "path": str(self.path),
            "device": self.device,
            "compute_type": self.compute_type,
            "threads": self.threads,
            "options": {**asdict(self.options), "word_timestamps": True, "vad_filter": True},
        }


_DIGITS = re.compile(r"[0-9$%£€]")


@lru_cache(maxsize=4)
def _digit_tokens(model: Any) -> tuple[int, ...]:
    """Ids of the text tokens (not special or timestamp tokens) that write a digit, currency or %."""
    from faster_whisper.tokenizer import Tokenizer

    multilingual = bool(model.model.is_multilingual)
    tok = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe" if multilingual else None,
                    language="en" if multilingual else None)
    return tuple(i for i in range(tok.eot) if _DIGITS.search(tok.decode([i])))


def load_transcriber(
    model: str,
    *,
    device: str = "cpu",
    compute_type: str = "int8",
    threads: int = 0,
    cache_dir: Path = Path("var/models"),
    beam_size: int = 5,
    options: DecodeOptions | None = None,
) -> WhisperTranscriber:
    """Resolve a packaged model name or local folder and load it once, offline."""
    from qa_service.modelstore import resolve_model

    path = resolve_model(model, cache_dir)
    os.environ["HF_HUB_OFFLINE"] = "1"
    import ctranslate2
    from faster_whisper import WhisperModel
    from faster_whisper.feature_extractor import FeatureExtractor

    ctranslate2.set_random_seed(SAMPLING_SEED)  # before the model's threads first sample
    try:
        whisper = WhisperModel(
            str(path), device=device, compute_type=compute_type, cpu_threads=threads, local_files_only=True
        )
    except (RuntimeError, ValueError) as exc:
        raise ConfigError(f"cannot load speech model from {path} on {device}/{compute_type}: {exc}") from None
    # large-v3 style models use 128 mel bins; without preprocessor_config.json faster-whisper assumes 80.
    n_mels = getattr(whisper.model, "n_mels", None)
    if n_mels and whisper.feature_extractor.mel_filters.shape[0] != n_mels:
        whisper.feature_extractor = FeatureExtractor(feature_size=n_mels)
    opts = options or DecodeOptions(beam_size=beam_size)
    log.info("loaded speech model %s (%s, %s)", model, device, compute_type)
    return WhisperTranscriber(
        model=whisper, name=model, path=path, device=device, compute_type=compute_type, threads=threads,
        options=opts,
    )


def narrowband_model_name(model: str, narrowband: str) -> str | None:
    """The model that decodes telephone-band channels when it is not `model` itself ("same" or empty
    means `model`), else None."""
    name = narrowband.strip()
    return None if name in ("", "same", model) else name


class LoadOnce:
    """A transcriber loaded on its first use and kept: a worker that never meets a telephone line never
    holds the narrowband model in memory."""

    def __init__(self, name: str, load: Callable[[], Transcriber]) -> None:
        self.name = name
        self._load = load
        self._loaded: Transcriber | None = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._loaded is not None

    def __call__(self) -> Transcriber:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load()
            return self._loaded


def model_for_line(channel: np.ndarray, wideband: Transcriber,
                   narrowband: Callable[[], Transcriber] | None) -> tuple[Transcriber, bool]:
    """The transcriber for one channel and whether it is telephone-band (channels.telephone_band):
    `narrowband()` for such a channel when given, `wideband` otherwise."""
    telephone = telephone_band(channel)
    return _model_for(telephone, wideband, narrowband), telephone


def _model_for(telephone: bool, wideband: Transcriber,
               narrowband: Callable[[], Transcriber] | None) -> Transcriber:
    return narrowband() if telephone and narrowband is not None else wideband


def transcribe_lines(channels: Channels, transcriber: Transcriber, *, vocabulary: Sequence[str] = (),
                     vocabulary_language: str = "en",
                     narrowband: Callable[[], Transcriber] | None = None) -> Heard:
    """Transcribe every line of a call, each by the model for its band.

    With `narrowband` (a callable that gives the model for telephone-band lines, such as LoadOnce),
    each line with nothing above the telephone band is decoded by that model and the others by
    `transcriber`. The vocabulary (written in `vocabulary_language`) goes only to a model that may
    decode in its language: English words would pull a Mandarin call towards English.
    """
    models = [_model_for(line.telephone, transcriber, narrowband) for line in channels.lines]
    return transcribe_with(channels, models, vocabulary=vocabulary, vocabulary_language=vocabulary_language)


def transcribe_with(channels: Channels, models: Sequence[Transcriber], *, vocabulary: Sequence[str] = (),
                    vocabulary_language: str = "en") -> Heard:
    """Each line of `channels` decoded by the model beside it; the call's record is that of the model
    that decoded it, or, when the lines' models differ, of the wideband line's."""
    one_party = channels.layout == "stereo"
    lines = []
    for model, line in zip(models, channels.lines, strict=True):
        fits = vocabulary_language == "en" or knows_languages(model)
        heard = model.transcribe(line.samples, vocabulary if fits else (), one_party=one_party)
        # A transcriber that does not describe itself is named in the record by its name or class.
        lines.append(heard if heard.model else replace(heard, model={"name": _model_name(model)}))
    same = all(model is models[0] for model in models)
    main = lines[0] if same else next(t for t, line in zip(lines, channels.lines, strict=True)
                                      if not line.telephone)
    return Heard(lines=tuple(lines), model=main.model)


def knows_languages(transcriber: Transcriber) -> bool:
    """Whether a transcriber knows languages other than English; one that does not say does not."""
    return bool(getattr(transcriber, "multilingual", False))


def words_heard(transcript: Transcript) -> tuple[int, int, float]:
    """How many words the recogniser wrote, how many of them it was sure of, and its mean confidence."""
    # Segments without word timings (another engine's) count their words as heard.
    probabilities = [w.probability for s in transcript.segments for w in s.words]
    probabilities += [1.0 for s in transcript.segments if not s.words for _ in s.text.split()]
    sure = sum(p >= SURE_WORD for p in probabilities)
    return len(probabilities), sure, sum(probabilities) / len(probabilities) if probabilities else 0.0


def require_speech(transcript: Transcript) -> None:
    """Raise NoSpeech when the recogniser heard too few words it was sure of for the call to be scored."""
    words, sure, mean = words_heard(transcript)
    if sure >= MIN_SURE_WORDS and mean >= MIN_SPEECH_CONFIDENCE:
        return
    voice = transcript.model.get("voice_activity_s")
    found = f"{transcript.duration_s:.1f} s of audio"
    if voice is not None:
        found += f", {voice:.1f} s of it voice-like"
    if sure < MIN_SURE_WORDS:
        heard = f"the recogniser was sure of {sure} word{'s' if sure != 1 else ''} ({MIN_SURE_WORDS} needed)"
        check = "that it has sound"
    else:
        # Speech in a language the models do not know is heard this way too (an English-only model
        # on a Mandarin call with QA_ASR_LANGUAGE_MODEL=none): its words are guesses, not to be scored.
        heard = (f"the recogniser was unsure of its {words} words (mean confidence {mean:.2f}; speech it "
                 f"can transcribe has {MIN_SPEECH_CONFIDENCE:.2f} or more)")
        check = "that it is speech in a language the speech model knows"
    raise NoSpeech(f"no speech found in the recording: {found}, and {heard}; nothing to score (check that "
                   f"this is the call's recording and {check})")


def _model_name(model: Any) -> str:
    return str(getattr(model, "name", None) or type(model).__name__)


def words_to_segments(raw: Sequence[Any], *, pause_split_s: float = 1.0) -> list[Segment]:
    """Rebuild segments from Whisper's word timestamps: split at long pauses, drop repetition loops."""
    out: list[Segment] = []
    for seg in raw:
        words = [
            Word(text=w.word, start=float(w.start), end=float(max(w.end, w.start)),
                 probability=float(w.probability))
            for w in (seg.words or [])
            if w.word.strip()
        ]
        words = _drop_repeats(words)
        if not words:
            continue
        group = [words[0]]
        for w in words[1:]:
            if w.start - group[-1].end >= pause_split_s:
                out.append(_segment(group))
                group = []
            group.append(w)
        out.append(_segment(group))
    return [s for s in out if s.text]


def split_at(segments: Sequence[Segment], silences: Sequence[tuple[float, float]]) -> list[Segment]:
    """Segments split where a silence the voice detector found falls between two of their words (a
    word's time can stretch over a pause; the detector's silence does not)."""
    mids, starts = [(a + b) / 2 for a, b in silences], [a for a, _ in silences]
    out: list[Segment] = []
    for seg in segments:
        words = [_outside(w, silences, starts) for w in seg.words]
        runs = groupby(words, key=lambda w: bisect.bisect_right(mids, (w.start + w.end) / 2))
        out += [_segment(list(run)) for _, run in runs]
    return [s for s in out if s.text]


def _outside(word: Word, silences: Sequence[tuple[float, float]], starts: Sequence[float]) -> Word:
    """The word with a start or end that Whisper stretched into a silence moved to its edge."""
    i = bisect.bisect_right(starts, word.start) - 1
    if i >= 0 and word.start < silences[i][1] < word.end:
        word = replace(word, start=silences[i][1])
    j = bisect.bisect_right(starts, word.end) - 1
    if j >= 0 and word.start < silences[j][0] < word.end < silences[j][1]:
        word = replace(word, end=silences[j][0])
    return word


_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def unheard(speech: Sequence[tuple[float, float]], segments: Sequence[Any], slack: float = 0.3,
            min_gap_s: float = LOST_GAP_S) -> list[tuple[float, float]]:
    """The parts of detected speech with no recognised word within `slack` of them: whole stretches,
    and gaps of at least `min_gap_s` inside a stretch that has words elsewhere (the voice detector joins
    speech across short pauses, so one stretch may hold a turn Whisper heard and one it lost). A "word"
    of punctuation only, which recognisers stretch over speech they lost, hears nothing, and a word
    covers at most its first LONGEST_WORD_S ("four-one-one-one-one" stretched over the rest of a clip
    Whisper stopped hearing)."""
    words = sorted((w.start, min(w.end, w.start + LONGEST_WORD_S)) for s in segments for w in (s.words or ())
                   if _LETTER_OR_DIGIT.search(w.word))
    starts = [w[0] for w in words]
    out = []
    for a, b in speech:
        # A word is at most one 30 s window long: only these can reach into the stretch.
        near = words[bisect.bisect_left(starts, a - slack - 30.0):bisect.bisect_right(starts, b + slack)]
        covered = [(max(a, s - slack), min(b, e + slack)) for s, e in near if e + slack > a and s - slack < b]
        if not covered:
            out.append((a, b))
            continue
        at = a
        for s, e in covered:  # sorted by start
            if s - at >= min_gap_s:
                out.append((at, s))
            at = max(at, e)
        if b - at >= min_gap_s:
            out.append((at, b))
    return out


def unheard_s(speech: Sequence[tuple[float, float]], segments: Sequence[Any], slack: float = 0.3) -> float:
    """Seconds of detected speech in stretches with no recognised word within `slack` of them."""
    return sum(b - a for a, b in unheard(speech, segments, slack))


def _inside(t: float, spans: Sequence[tuple[float, float]], slack: float = 0.3) -> bool:
    return any(a - slack <= t <= b + slack for a, b in spans)


def block_bounds(samples: np.ndarray, block_s: float = BLOCK_S) -> list[tuple[int, int]]:
    """(start, stop) sample ranges of about `block_s` each, cut at the quietest 0.2 s in the last
    twentieth before each nominal boundary (between words, not through one)."""
    block, win = int(block_s * SAMPLE_RATE), SAMPLE_RATE // 5
    search = max(win, block // 20)
    bounds: list[tuple[int, int]] = []
    start = 0
    while samples.size - start > block + search:
        lo = start + block - search
        window = samples[lo : start + block]
        energy = np.square(window[: window.size // win * win].reshape(-1, win)).mean(axis=1)
        cut = lo + int(energy.argmin()) * win + win // 2
        bounds.append((start, cut))
        start = cut
    bounds.append((start, samples.size))
    return bounds


def vocabulary_text(vocabulary: Sequence[str], max_chars: int = 600) -> str:
    """The phrases as one comma-separated list, deduplicated and cut to fit Whisper's prompt budget."""
    return ", ".join(vocabulary_phrases(vocabulary, max_chars))


def vocabulary_phrases(vocabulary: Sequence[str], max_chars: int = 600) -> list[str]:
    """The phrases Whisper is given: deduplicated, in order, as many as fit in max_chars."""
    out: list[str] = []
    size = 0
    for phrase in dict.fromkeys(p.strip().rstrip(".") for p in vocabulary if p.strip()):
        if size + len(phrase) > max_chars:  # the prompt shares Whisper's 448-token budget with the text
            break
        out.append(phrase)
        size += len(phrase) + 2
    return out


def _segment(words: list[Word]) -> Segment:
    text = "".join(w.text for w in words).strip()
    text = re.sub(r"\s+", " ", text)
    return Segment(speaker="unknown", start=words[0].start, end=words[-1].end, text=text, words=tuple(words))


# A phrase of up to this many words repeated more than MAX_REPEATS times in a row is a decoding loop.
_LOOP_NGRAM = 4
MAX_REPEATS = 4


def _norm(text: str) -> str:
    return re.sub(r"[^\w']", "", text.lower())


def _drop_repeats(words: list[Any]) -> list[Any]:
    """Cut runs like "1, 1, 1, 1, 1, 1" down to MAX_REPEATS copies; real speech rarely repeats more.
    Words are ours (`text`) or faster-whisper's (`word`)."""
    if len(words) <= MAX_REPEATS:
        return words
    keys = [_norm(str(getattr(w, "text", None) or getattr(w, "word", ""))) for w in words]
    keep = [True] * len(words)
    for n in range(1, _LOOP_NGRAM + 1):
        i = 0
        while i + n <= len(words):
            reps = 1
            unit = keys[i : i + n]
            while i + (reps + 1) * n <= len(words) and keys[i + reps * n : i + (reps + 1) * n] == unit:
                reps += 1
            if reps > MAX_REPEATS and any(unit):
                for j in range(i + MAX_REPEATS * n, i + reps * n):
                    keep[j] = False
                i += reps * n
            else:
                i += 1
    return [w for w, k in zip(words, keep, strict=True) if k]
