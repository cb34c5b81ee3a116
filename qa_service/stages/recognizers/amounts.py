"""Amounts, counts and durations: numbers that are ordinary speech, never an identifier.

"640 dollars", "$595", "67 points", "twenty four thousand five hundred in savings". The quantity
reading is `qa_service.spoken.find_numbers`, the same one scoring uses.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from qa_service.spoken import MULTIPLIERS, WRITTEN_NUMBER, find_numbers
from qa_service.stages.recognizers.vocabulary import Vocab

if TYPE_CHECKING:
    from qa_service.stages.recognizers.sequences import Run


class Amounts:
    """Tells an amount from an identifier by the words around a number."""

    def __init__(self, vocab: Vocab) -> None:
        self.v = vocab

    def is_amount(self, text: str, start: int, end: int) -> bool:
        """A number said as money, points, a count or a duration ("640 dollars", "$595", "67 points")."""
        before = text[max(0, start - 2) : start].strip()
        # "$1,420.50" is money; "$41, 1, 1, 1, 1" is a card number the recogniser gave a "$".
        if before and before[-1] in self.v.currency and WRITTEN_NUMBER.fullmatch(text[start:end]):
            return True
        # Skip the rest of a number said in words ("six hundred | and forty dollars") before the unit.
        rest = text[end:]
        number = self.v.number_words | {"and"}
        for _ in range(8):
            m = re.match(r"[\s,\-]*([A-Za-z]+|\d+)", rest)
            if not m or not (m.group(1).lower() in number or m.group(1).isdigit()):
                break
            rest = rest[m.end() :]
        after = re.match(r"\s*([A-Za-z%$£€.']+)", rest)
        return after is not None and after.group(1).lower().rstrip(".") in self.v.units

    def run_is_amount(self, text: str, run: Run) -> bool:
        """An amount: a short number before a unit, or a number said as a quantity ("twenty four
        thousand five hundred", "24,500") before a unit or next to a word of money ("in savings")."""
        if len(run.digits) <= 7 and self.is_amount(text, run.start, run.end):
            return True
        if not self.is_quantity(text, run):
            return False
        return self.is_amount(text, run.start, run.end) or self.near_amount_cue(text, run)

    def is_quantity(self, text: str, run: Run) -> bool:
        """Whether a run is one number said as a quantity, with scale words or thousands separators,
        as nobody reads out the digits of an identifier."""
        words = re.findall(r"[A-Za-z]+|\d[\d,.]*", text[run.start:run.end])
        if not any(w.lower() in MULTIPLIERS or re.fullmatch(r"\d{1,3}(?:,\d{3})+", w) for w in words):
            return False
        numbers = find_numbers(words)
        return len(numbers) == 1 and numbers[0].start == 0 and numbers[0].end == len(words)

    def near_amount_cue(self, text: str, run: Run) -> bool:
        """A word of money within four words before a run or three after it ("the fee is", "in savings")."""
        before = re.findall(r"[A-Za-z$£€¥]+", text[:run.start])[-4:]
        after = re.findall(r"[A-Za-z$£€¥]+", text[run.end:])[:3]
        return any(w.lower() in self.v.amount_cues or w in self.v.currency for w in before + after)
