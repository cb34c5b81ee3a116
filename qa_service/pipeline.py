"""The stage calls in order: decode -> channels -> transcribe -> language -> speakers -> redact ->
score -> scorecard.

Engines (speech models, voice model, redactor, spaCy pipeline) are loaded once by the caller and
passed in; nothing here reads settings or touches storage. Scoring reads the unredacted transcript
in memory; only the redacted one leaves this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from itertools import chain, zip_longest
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qa_service.errors import ConfigError
from qa_service.records import (
    Audio,
    CallMeta,
    ChannelLayout,
    Redacted,
    RulesRef,
    Scorecard,
    ScoreResult,
    Transcript,
    mean_word_probability,
)

if TYPE_CHECKING:
    from qa_service.stages.language import LanguageModel
    from qa_service.stages.matching import NLP
    from qa_service.stages.redact import RulesRedactor
    from qa_service.stages.transcribe import Transcriber
    from qa_service.stages.voiceprint import VoiceEncoder


@dataclass
class Engines:
    """The loaded models a worker or the CLI keeps for its lifetime."""

    transcriber: Transcriber | None  # None when loaded without speech (calls that come as text)
    redactor: RulesRedactor
    nlp: NLP  # a spacy.Language
    max_duration_s: float | None = None
    voices: VoiceEncoder | None = None  # for speaker roles on mono calls
    # A multilingual model beside an English-only one: it hears the language of the calls the English
    # model is unsure of and transcribes those not in English.
    other_languages: LanguageModel | None = None
    # The speech model for telephone-band channels when it is not `transcriber`: a callable that loads
    # it on first use (stages.transcribe.LoadOnce), or None.
    narrowband: Callable[[], Transcriber] | None = None


def load_engines(settings: Any, *, speech: bool = True) -> Engines:
    """Load the speech model, spaCy pipeline and redactor named by the settings (no network)."""
    import spacy

    from qa_service.stages.redact import load_redactor

    transcriber: Transcriber | None = None
    voices: VoiceEncoder | None = None
    other_languages: LanguageModel | None = None
    narrowband: Callable[[], Transcriber] | None = None
    if speech:
        from qa_service.modelstore import resolve_model
        from qa_service.stages.transcribe import (
            DecodeOptions,
            LoadOnce,
            WhisperTranscriber,
            load_transcriber,
            narrowband_model_name,
        )
        from qa_service.stages.voiceprint import load_voice_encoder

        options = DecodeOptions(beam_size=settings.asr_beam_size, vocabulary_mode=settings.asr_vocabulary,
                                batch_size=settings.asr_batch_size, denoise=settings.asr_denoise,
                                numbers_as_words=settings.asr_numbers == "words",
                                recover_lost_speech=settings.asr_recover_lost_speech,
                                fill_missing_band=settings.asr_fill_missing_band)

        def load(model: str) -> WhisperTranscriber:
            return load_transcriber(model, device=settings.asr_device, compute_type=settings.asr_compute_type,
                                    threads=settings.asr_threads, cache_dir=settings.model_cache_dir,
                                    options=options)

        wideband = transcriber = load(settings.asr_model)
        if not wideband.multilingual and settings.asr_language_model != "none":
            languages = other_languages = load(settings.asr_language_model)
            if not languages.multilingual:
                raise ConfigError(f"QA_ASR_LANGUAGE_MODEL {settings.asr_language_model!r} knows English "
                                  "only: name a multilingual model (such as base) or none")
        narrow = narrowband_model_name(settings.asr_model, settings.asr_model_narrowband)
        if narrow is not None and other_languages is not None and narrow == settings.asr_language_model:
            # The language model is that model, already loaded: its weights are not held twice.
            narrowband = LoadOnce(narrow, lambda: languages)
        elif narrow is not None:
            resolve_model(narrow, settings.model_cache_dir)  # a missing model stops start-up, not a call
            narrowband = LoadOnce(narrow, partial(load, narrow))
        if settings.speaker_model != "none":
            from qa_service.modelstore import resolve_voice_model

            voices = load_voice_encoder(resolve_voice_model(settings.speaker_model))
    try:
        nlp = spacy.load(settings.spacy_model)
    except OSError as exc:
        raise ConfigError(f"spaCy model {settings.spacy_model!r} is not installed: {exc}") from exc
    redactor = load_redactor(nlp, allow_list=settings.redact_allow_list)
    return Engines(transcriber=transcriber, redactor=redactor, nlp=nlp,
                   max_duration_s=settings.max_duration_s, voices=voices, other_languages=other_languages,
                   narrowband=narrowband)


def process_audio(path: Path, meta: CallMeta, rubric: Any, policies: Any, engines: Engines, *,
                  keep_redacted_audio: Callable[[Audio], Any] | None = None) -> Scorecard:
    """Run one recorded call through every stage and return its scorecard.

    A recording without speech (silence, noise, music) raises NoSpeech instead: it has nothing to
    score, and a scorecard would fail the agent. `keep_redacted_audio` receives a copy of the audio
    with every redacted span silenced on all channels (a customer's digits can echo on the agent's
    line), for the caller to store.
    """
    from qa_service.stages.decode import decode
    from qa_service.stages.transcribe import require_speech

    timings: dict[str, float] = {}
    with _timed(timings, "decode"):
        audio = decode(Path(path), max_duration_s=engines.max_duration_s)
    # After decoding: a file that is no audio is refused as such, whatever the engines hold.
    if engines.transcriber is None:
        raise ConfigError("the engines were loaded without a speech model: a recording cannot be transcribed")
    # One timing covers the four speech stages: their sum is what /metrics has always called transcribe.
    with _timed(timings, "transcribe"):
        transcript = transcribe_call(
            audio, engines.transcriber, meta.channels,
            vocabulary=vocabulary(rubric, policies), agent_phrases=agent_cues(rubric), voices=engines.voices,
            other_languages=engines.other_languages, vocabulary_language=rubric.language,
            narrowband=engines.narrowband,
        )
    require_speech(transcript)
    card = process_transcript(transcript, meta, rubric, policies, engines, timings=timings)
    if keep_redacted_audio is not None:
        from qa_service.stages.redact_audio import redact_audio

        keep_redacted_audio(redact_audio(audio, card.redactions, bleed=True))
    return card


def transcribe_call(
    audio: Audio,
    transcriber: Transcriber,
    layout: ChannelLayout = "auto",
    vocabulary: Sequence[str] = (),
    agent_phrases: Sequence[str] = (),
    voices: VoiceEncoder | None = None,
    other_languages: LanguageModel | None = None,
    vocabulary_language: str = "en",
    narrowband: Callable[[], Transcriber] | None = None,
) -> Transcript:
    """Speech to a transcript with speaker roles: channels -> transcribe -> language -> speakers.

    The lines are laid out (one for mono, the agent's and the customer's for stereo), each decoded by
    the model for its band (`narrowband()` for telephone-band lines when given), the call decoded
    again by `other_languages` when the English-only model is unsure and the call is not in English,
    and who spoke named by line or, on mono, by diarization (with `voices` when given). The
    vocabulary (written in `vocabulary_language`) goes only to a decode that may be in its language.
    """
    from qa_service.stages.channels import split_channels
    from qa_service.stages.language import route_language
    from qa_service.stages.speakers import attribute_roles
    from qa_service.stages.transcribe import transcribe_lines

    channels = split_channels(audio, layout)
    heard = transcribe_lines(channels, transcriber, vocabulary=vocabulary,
                             vocabulary_language=vocabulary_language, narrowband=narrowband)
    heard = route_language(channels, heard, other_languages, vocabulary=vocabulary,
                           vocabulary_language=vocabulary_language)
    return attribute_roles(audio, channels, heard, agent_phrases=agent_phrases, voices=voices)


@contextmanager
def _timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = round(time.perf_counter() - started, 4)


def vocabulary(rubric: Any, policies: Any) -> list[str]:
    """Words the recogniser may expect on this call: the criteria's phrases and the policy topics.

    They are taken in turns, the first phrase of every criterion and the first topic of every fact,
    then the second ones, and so on: the recogniser's prompt budget cuts the end of the list, and a
    rubric with many phrases would otherwise lose its last criteria and every topic. Prohibited
    phrases are left out: biasing the recogniser towards them would make violations.
    """
    groups = [c.phrases for c in rubric.criteria]
    groups += [getattr(fact, "topic", []) or [] for fact in policies.facts]
    in_turns = chain.from_iterable(zip_longest(*groups))
    return list(dict.fromkeys(p for p in in_turns if p))


def rules_phrases(rubric: Any, policies: Any) -> list[str]:
    """Every phrase the rubric and policy pack are written with (the company's own words)."""
    phrases = vocabulary(rubric, policies) + [p for item in rubric.prohibited for p in item.phrases]
    return phrases + [p for fact in policies.facts for p in getattr(fact, "obsolete_phrases", []) or []]


def agent_cues(rubric: Any) -> list[str]:
    """Phrases only the agent says (the agent's criteria), used to tell the agent's voice on mono audio."""
    return list(dict.fromkeys(p for c in rubric.criteria if c.speaker == "agent" for p in c.phrases))


def process_transcript(transcript: Transcript, meta: CallMeta, rubric: Any, policies: Any,
                       engines: Engines, *, timings: dict[str, float] | None = None) -> Scorecard:
    """Redact and score a call that is already text (or was just transcribed).

    The scorecard's `models.stage_seconds` says how long each stage took (for /metrics).
    """
    from qa_service.intake import settle_channel
    from qa_service.rescan import token_record
    from qa_service.stages.metrics import call_metrics
    from qa_service.stages.score import score

    transcript = settle_channel(transcript, meta.channel)
    timings = dict(timings or {})
    with _timed(timings, "redact"):
        redactor = engines.redactor.with_rules_vocabulary(rules_phrases(rubric, policies))
        redacted = redactor.redact(transcript)
    with _timed(timings, "score"):
        result = score(transcript, rubric, policies, engines.nlp, meta.call_date)
    card = build_scorecard(meta, transcript, redacted, result, rubric, policies, call_metrics(transcript),
                           stage_seconds=timings)
    # What a rescore needs of the tokenizer, kept with the stored (redacted) transcript.
    return replace(card, tokens=token_record(card.to_dict(), engines.nlp))


def build_scorecard(meta: CallMeta, transcript: Transcript, redacted: Redacted, result: ScoreResult,
                    rubric: Any, policies: Any, metrics: dict[str, Any], *,
                    stage_seconds: dict[str, float] | None = None) -> Scorecard:
    """Assemble the stored scorecard; evidence text is taken from the redacted transcript."""
    segments = redacted.transcript.segments
    result = redact_evidence(result, redacted)
    warnings: tuple[str, ...] = () if segments else ("no speech found in the recording",)
    rubric_language = getattr(rubric, "language", "en")
    if segments and transcript.language and transcript.language != rubric_language:
        warnings += (f"the call is in '{transcript.language}' but the rubric's phrases are in "
                     f"'{rubric_language}': criteria may fail for want of a match; review by hand",)
    if segments and transcript.language and transcript.language != "en":
        warnings += (f"personal data said in '{transcript.language}' is found by simple patterns only "
                     "(numbers read digit by digit; in Chinese, a name after 我叫 or before a title): other "
                     "names and addresses may stay in the transcript; check it before sharing",)
    confidence = word_confidence(transcript)
    if confidence is not None and confidence < LOW_CONFIDENCE:
        warnings += (f"the recogniser is unsure of this transcript (mean word confidence {confidence:.2f}): "
                     "the call may be in a language the speech model does not know, or the audio is poor; "
                     "review by hand",)
    asr = dict(transcript.model)
    if confidence is not None:
        asr["mean_word_confidence"] = confidence
    return Scorecard(
        call_id=meta.call_id,
        agent_id=meta.agent_id,
        call_date=meta.call_date,
        duration_s=transcript.duration_s,
        language=transcript.language,
        rubric=RulesRef(rubric.id, rubric.version, rubric.sha256),
        policies=RulesRef(policies.id, policies.version, policies.sha256),
        transcript=segments,
        redactions=redacted.redactions,
        result=result,
        models={"asr": asr, "source": transcript.source, "stage_seconds": stage_seconds or {}},
        metrics=metrics,
        warnings=warnings,
        channel=transcript.channel or ("call" if transcript.source == "audio" else "chat"),
        started_at=transcript.started_at,
    )


# Below this mean word probability a transcript is mostly guesswork: it lies between calls tiny.en
# cannot transcribe and English ones on noisy lines (docs/decisions/0009-measured-options.md).
LOW_CONFIDENCE = 0.55


def word_confidence(transcript: Transcript) -> float | None:
    """Mean probability the recogniser gave its words; None for calls that came as text."""
    mean = mean_word_probability(transcript.segments)
    return round(mean, 3) if mean is not None else None


def redact_evidence(result: ScoreResult, redacted: Redacted) -> ScoreResult:
    """Replace every evidence text with the redacted text of the segments it points to."""
    from qa_service.stages.score import evidence_text_from

    return evidence_text_from(result, redacted.transcript.segments)

