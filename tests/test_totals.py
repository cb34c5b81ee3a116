"""The one totals rule, as scoring and reviews use it."""

from __future__ import annotations

import pytest

from qa_service.review import apply_reviews
from qa_service.totals import Charge, Line, provisional_reasons, retotal, stored_reasons, tally


def test_only_applicable_criteria_count_and_sections_add_up() -> None:
    totals = tally([Line("open", True, True, 10, 10), Line("open", False, False, 0, 20),
                    Line("close", True, False, 0, 30)], auto_fail_violation=False, pass_mark=25)
    assert totals.score == pytest.approx(25.0) and totals.passed and not totals.auto_fail
    assert totals.sections == {"open": {"points": 10, "max_points": 10, "score": 100.0},
                               "close": {"points": 0, "max_points": 30, "score": 0.0}}


@pytest.mark.parametrize(("lines", "violation", "auto_fail"), [
    ([Line("s", True, False, 0, 10, auto_fail=True)], False, True),
    ([Line("s", False, False, 0, 10, auto_fail=True)], False, False),  # did not apply
    ([Line("s", True, True, 10, 10, auto_fail=True)], True, True),  # a violation fails it alone
])
def test_auto_fail(lines: list[Line], violation: bool, auto_fail: bool) -> None:
    totals = tally(lines, auto_fail_violation=violation, pass_mark=0)
    assert totals.auto_fail is auto_fail and totals.passed is not auto_fail


def test_nothing_applicable_scores_100_and_no_pass_mark_gives_no_verdict() -> None:
    totals = tally([Line("s", False, False, 0, 10)], auto_fail_violation=False, pass_mark=None)
    assert totals.score == 100.0 and totals.passed is None


def test_a_scorecard_re_totalled_without_reviews_keeps_its_verdict_from_its_own_pass_mark() -> None:
    card = {"score": 62.5, "passed": False, "auto_fail": False, "pass_mark": 70.0,
            "criteria": [{"id": "a", "section": "s", "passed": True, "applicable": True, "points": 25.0,
                          "max_points": 25.0},
                         {"id": "b", "section": "s", "passed": False, "applicable": True, "points": 0.0,
                          "max_points": 15.0, "auto_fail": False},
                         {"id": "c", "section": "s", "passed": True, "applicable": True, "points": 0.0,
                          "max_points": 0.0}],
            "violations": []}
    review = apply_reviews(card, [])["review"]
    assert review["reviewed_score"] == card["score"] and review["reviewed_passed"] is False


# -- the same rule over a stored scorecard: rescans, reviews and scoring share it -----------------------

CARD = [{"id": "greet", "section": "open", "passed": True, "points": 10, "max_points": 10},
        {"id": "verify", "section": "open", "passed": False, "points": 0, "max_points": 30, "doubt": "faint"},
        {"id": "close", "section": "end", "passed": False, "points": 0, "max_points": 10, "auto_fail": True}]


def test_retotal_reads_a_stored_card_with_reviewed_verdicts_and_the_rubrics_auto_fails() -> None:
    plain = retotal(CARD, [], pass_mark=50)
    assert plain.score == pytest.approx(20.0) and plain.auto_fail and plain.passed is False
    reviewed = retotal(CARD, [], pass_mark=50, passes={"verify": True}, auto_fail_criteria=set())
    assert reviewed.score == pytest.approx(80.0) and not reviewed.auto_fail and reviewed.passed
    deducted = retotal(CARD, [{"kind": "outdated_policy", "id": "fee", "deducted_points": 5},
                              {"kind": "outdated_policy", "id": "fee", "deducted_points": 5}], pass_mark=0,
                       auto_fail_criteria=set())
    assert deducted.deducted == pytest.approx(5.0)  # one rule's points come off once


@pytest.mark.parametrize(("criteria", "charges", "reasons"), [
    # The doubtful criterion the other way passes the call: that is why it waits.
    ([("verify", Line("s", True, False, 0, 30), "faint")], [], ("verify: faint",)),
    # A weak auto-fail taken away passes it.
    ([("greet", Line("s", True, True, 10, 10), None)], [("promise", Charge("p:promise", True), "unsure")],
     ("promise: unsure",)),
    # Still failing with the doubts resolved: not provisional.
    ([("verify", Line("s", True, False, 0, 30), "faint"), ("close", Line("s", True, False, 0, 70), None)],
     [], ()),
    # No doubt at all.
    ([("verify", Line("s", True, False, 0, 30), None)], [], ()),
])
def test_provisional_reasons(criteria, charges, reasons) -> None:
    assert provisional_reasons(criteria, charges, pass_mark=50) == reasons


def test_stored_reasons_read_the_card_as_scoring_reads_its_records() -> None:
    card = [c for c in CARD if c["id"] != "close"]
    assert stored_reasons(card, [], pass_mark=50) == ("verify: faint",)
    assert stored_reasons(CARD, [], pass_mark=50) == ()  # the auto-fail criterion fails it whatever the doubt
