"""Pipeline assembly: evidence comes from the redacted transcript, silence is reported, cues are derived."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from types import SimpleNamespace

import pytest

from qa_service.errors import ConfigError
from qa_service.pipeline import agent_cues, build_scorecard, load_engines, redact_evidence, vocabulary
from qa_service.records import (
    CallMeta,
    CriterionResult,
    Evidence,
    Redacted,
    Redaction,
    ScoreResult,
    Segment,
    Transcript,
    Violation,
    Word,
)
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.stages.transcribe import vocabulary_phrases

SAMPLES = Path(__file__).resolve().parents[1] / "samples"

RAW = Transcript(segments=(
    Segment("agent", 0.0, 2.0, "Thanks for calling, my name is Mira."),
    Segment("customer", 2.5, 4.0, "My card is 4111 1111 1111 1111."),
), duration_s=4.0)
REDACTED = Redacted(
    transcript=Transcript(segments=(
        Segment("agent", 0.0, 2.0, "Thanks for calling, my name is Mira."),
        Segment("customer", 2.5, 4.0, "My card is <CREDIT_CARD>."),
    ), duration_s=4.0),
    redactions=(Redaction("CREDIT_CARD", 1, 11, 30, 2.9, 3.9, "customer"),),
)


def _result() -> ScoreResult:
    evidence = Evidence((1,), 2.5, 4.0, "customer", "My card is 4111 1111 1111 1111.")
    return ScoreResult(
        criteria=(CriterionResult("card", "Takes the card", "payment", True, 10, 10, (evidence,)),),
        violations=(Violation("read_back", "prohibited", "Reads card back", evidence, "said"),),
        score=100.0, auto_fail=False, passed=True,
    )


def test_evidence_text_is_replaced_by_redacted_segments() -> None:
    result = redact_evidence(_result(), REDACTED)
    assert result.criteria[0].evidence[0].text == "My card is <CREDIT_CARD>."
    assert result.violations[0].evidence.text == "My card is <CREDIT_CARD>."
    assert "4111" not in repr(result)


def test_scorecard_keeps_no_raw_text_and_reports_rules_versions() -> None:
    rubric, policies = load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")
    card = build_scorecard(CallMeta("c1", "agent-mira", date(2026, 10, 1)), RAW, REDACTED, _result(),
                           rubric, policies, {"talk_time_s": {}}).to_dict()
    assert "4111" not in str(card)
    assert card["rubric"] == {"id": "harbourline-intake", "version": "2026.10", "sha256": rubric.sha256}
    assert card["redactions"] == [
        {"entity_type": "CREDIT_CARD", "start": 2.9, "end": 3.9, "speaker": "customer"}]
    assert card["warnings"] == []


def test_silent_call_says_no_speech_was_found() -> None:
    rubric, policies = load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")
    empty = Transcript(segments=(), duration_s=30.0)
    result = ScoreResult(criteria=(), violations=(), score=0.0, auto_fail=True, passed=False)
    card = build_scorecard(CallMeta("c2", "a", date(2026, 10, 1)), empty, Redacted(empty, ()), result,
                           rubric, policies, {}).to_dict()
    assert card["warnings"] == ["no speech found in the recording"]
    assert card["duration_s"] == 30.0 and card["passed"] is False


def test_vocabulary_and_agent_cues_come_from_the_rules() -> None:
    rubric, policies = load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")
    words = vocabulary(rubric, policies)
    assert "thanks for calling harbourline" in words and "permit fee" in words
    assert "guarantee your permit" not in words  # never bias the recogniser towards violations
    assert len(words) == len(set(words))
    cues = agent_cues(rubric)
    assert "my name is" in cues and "anything else I can help" in cues  # every agent criterion's phrases
    assert not {"that sounds good", "guarantee your permit"} & set(cues)  # not the customer's, no violations


def test_vocabulary_takes_every_criterion_and_topic_in_turns_before_the_budget_cuts_it() -> None:
    criteria = [SimpleNamespace(phrases=[f"criterion {i} phrase {j}" for j in range(4)]) for i in range(12)]
    facts = [SimpleNamespace(topic=["visa fee", "application fee"]), SimpleNamespace(topic=["pass mark"]),
             SimpleNamespace()]  # a term fact has no topic
    rubric, policies = SimpleNamespace(criteria=criteria), SimpleNamespace(facts=facts)
    words = vocabulary(rubric, policies)
    assert words[:14] == [f"criterion {i} phrase 0" for i in range(12)] + ["visa fee", "pass mark"]
    assert words[14:16] == ["criterion 0 phrase 1", "criterion 1 phrase 1"]
    assert len(words) == 12 * 4 + 3
    heard = vocabulary_phrases(words)  # what fits the recogniser's prompt
    assert len(heard) < len(words)
    assert {f"criterion {i} phrase 0" for i in range(12)} | {"visa fee", "pass mark"} <= set(heard)


def test_call_in_another_language_than_the_rubric_is_flagged() -> None:
    rubric, policies = load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")
    chinese = Transcript(segments=(Segment("agent", 0.0, 2.0, "你好，欢迎致电"),), duration_s=2.0,
                         language="zh")
    result = ScoreResult(criteria=(), violations=(), score=0.0, auto_fail=False, passed=False)
    meta = CallMeta("c3", "a", date(2026, 10, 1))
    card = build_scorecard(meta, chinese, Redacted(chinese, ()), result, rubric, policies, {}).to_dict()
    assert card["language"] == "zh"
    assert len(card["warnings"]) == 2 and "'zh'" in card["warnings"][0] and "'en'" in card["warnings"][0]
    assert "names" in card["warnings"][1] and "'zh'" in card["warnings"][1]
    english = build_scorecard(meta, RAW, REDACTED, result, rubric, policies, {}).to_dict()
    assert english["warnings"] == []


def _heard(probabilities: list[float]) -> Transcript:
    words = tuple(Word(f" w{i}", i * 0.3, i * 0.3 + 0.2, p) for i, p in enumerate(probabilities))
    return Transcript(segments=(Segment("agent", 0.0, len(words) * 0.3, "words", words),), duration_s=5.0)


def test_a_transcript_the_recogniser_is_unsure_of_is_flagged() -> None:
    rubric, policies = load_rubric(SAMPLES / "rubric.yaml"), load_policy_pack(SAMPLES / "policies.yaml")
    result = ScoreResult(criteria=(), violations=(), score=0.0, auto_fail=False, passed=False)
    meta = CallMeta("c4", "a", date(2026, 10, 1))

    def card(t: Transcript) -> dict:
        return build_scorecard(meta, t, Redacted(t, ()), result, rubric, policies, {}).to_dict()

    unsure = card(_heard([0.3, 0.5, 0.45, 0.6]))  # what tiny.en gives a call in Chinese
    assert unsure["models"]["asr"]["mean_word_confidence"] == 0.463
    assert any("unsure" in w and "0.46" in w for w in unsure["warnings"])
    sure = card(_heard([0.9, 0.95, 0.7, 0.99]))
    assert sure["warnings"] == [] and sure["models"]["asr"]["mean_word_confidence"] == 0.885
    assert "mean_word_confidence" not in card(RAW)["models"]["asr"], "text has no word confidence"


@pytest.mark.slow
def test_the_language_model_must_know_other_languages(make_settings) -> None:
    with pytest.raises(ConfigError, match="QA_ASR_LANGUAGE_MODEL 'tiny.en' knows English only"):
        load_engines(make_settings(asr_language_model="tiny.en"))
    engines = load_engines(make_settings(asr_language_model="none"))
    assert engines.other_languages is None and engines.transcriber.name == "tiny.en"
    engines = load_engines(make_settings(asr_model="base"))
    assert engines.other_languages is None, "a multilingual model detects the language itself"


@pytest.mark.parametrize(("overrides", "loads", "shared"), [
    ({"asr_model_narrowband": "same"}, ["tiny.en", "base"], None),
    # The language model is the narrowband one: telephone lines load nothing more.
    ({"asr_model_narrowband": "base"}, ["tiny.en", "base"], True),
    # No language model: the narrowband one is loaded on the first telephone line, once.
    ({"asr_model_narrowband": "base", "asr_language_model": "none"}, ["tiny.en"], False),
])
def test_the_narrowband_model_is_wired_by_the_settings(make_settings, monkeypatch, overrides, loads, shared):
    loaded: list[str] = []

    def fake_load(model: str, **_: object) -> SimpleNamespace:
        loaded.append(model)
        return SimpleNamespace(name=model, multilingual=model != "tiny.en")

    monkeypatch.setattr("qa_service.stages.transcribe.load_transcriber", fake_load)
    monkeypatch.setattr("qa_service.modelstore.resolve_model", lambda *_a, **_k: Path("."))
    monkeypatch.setattr("qa_service.stages.voiceprint.load_voice_encoder", lambda *_a, **_k: None)
    engines = load_engines(make_settings(speaker_model="none", **overrides))
    assert loaded == loads
    if shared is None:
        assert engines.narrowband is None
        return
    model = engines.narrowband()
    assert model.name == "base" and engines.narrowband() is model
    assert (model is engines.other_languages) is shared
    assert loaded == ["tiny.en", "base"]
