"""Digit and letter sequences: cards (with and without a valid Luhn checksum), phones, passports,
references, spelled postcodes, named by the first sequence rule of the rule files that fits."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from qa_service.stages.recognizers.schema import SequenceRule
from qa_service.stages.recognizers.vocabulary import Token, Vocab


@dataclass(frozen=True)
class Run:
    """A stretch of digits, number words and letters, with what it reads as."""

    tokens: tuple[Token, ...]
    digits: str
    letters: str

    @property
    def start(self) -> int:
        return self.tokens[0].start

    @property
    def end(self) -> int:
        return self.tokens[-1].end

    compact: str = ""  # letters and digits in spoken order ("N W one, four R Y" -> "NW14RY")


def luhn_ok(digits: str) -> bool:
    """Whether a digit string passes the Luhn checksum that card numbers carry."""
    if not digits.isdigit() or len(digits) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


class SequenceScanner:
    """Finds runs of digits and letters in a token stream and names them by the sequence rules."""

    def __init__(self, vocab: Vocab, rules: Sequence[SequenceRule], context_window: int) -> None:
        self.v = vocab
        self.rules = list(rules)
        self.context_window = context_window

    def runs(self, toks: Sequence[Token]) -> list[Run]:
        """Maximal stretches of digits, number words and letters, separators allowed between them."""
        out: list[Run] = []
        cur: list[Token] = []

        def flush() -> None:
            while cur and cur[-1].kind == "sep":
                cur.pop()
            if cur:
                nums = [t for t in cur if t.kind in ("digits", "num")]
                digits = self.v.spoken_digits(nums) + "".join(
                    re.sub(r"\D", "", t.value) for t in cur if t.kind == "alnum"
                )
                letters = "".join(t.value for t in cur if t.kind == "letter") + "".join(
                    re.sub(r"[^A-Z]", "", t.value) for t in cur if t.kind == "alnum"
                )
                compact, group = [], []
                for t in cur:
                    if t.kind == "num" or t.kind == "digits":
                        group.append(t)
                        continue
                    compact.append(self.v.spoken_digits(group))
                    group = []
                    compact.append(t.value if t.kind in ("letter", "alnum") else "")
                compact.append(self.v.spoken_digits(group))
                out.append(Run(tuple(cur), digits, letters, "".join(compact)))
            cur.clear()

        for i, t in enumerate(toks):
            if t.kind in ("digits", "num", "alnum"):
                cur.append(t)
            elif t.kind == "letter" and self._letter_in_run(toks, i):
                cur.append(t)
            elif t.kind == "sep" and cur:
                cur.append(t)
            elif (
                t.kind == "punct"
                and t.text == "."
                and cur
                and i + 1 < len(toks)
                and toks[i + 1].kind in ("digits", "num", "letter", "alnum")
                and toks[i + 1].start - t.end <= 1
            ):
                cur.append(t)  # "N. W. 773"
            else:
                flush()
        flush()
        return out

    def _letter_in_run(self, toks: Sequence[Token], i: int) -> bool:
        t = toks[i]
        if t.text not in ("a", "A", "I") and not (t.text.islower() and len(t.text) == 1):
            return True

        # "a", "I" and lower-case single letters are words unless they sit among other symbols.
        def symbol(j: int) -> bool:
            return (
                0 <= j < len(toks)
                and toks[j].kind in ("digits", "num", "letter", "alnum")
                and toks[j].text not in ("a", "I")
            )

        def near(step: int) -> int:
            j = i + step
            while 0 <= j < len(toks) and toks[j].kind == "sep":
                j += step
            return j

        return symbol(near(-1)) and symbol(near(1))

    def _context_before(
        self, toks: Sequence[Token], run: Run, words: Sequence[str], extra: str = ""
    ) -> bool:
        idx = next(i for i, t in enumerate(toks) if t.start == run.start)
        lo = max(0, idx - self.context_window)
        window = " " + " ".join(t.low for t in toks[lo:idx]) + " " + extra.lower() + " "
        return any(f" {w.lower()} " in window or (len(w) > 4 and w.lower() in window) for w in words)

    def _one_by_one(self, run: Run) -> bool:
        v = self.v
        return all(len(t.value) == 1 if t.kind == "digits" else t.low in v.digits or t.low in v.repeaters
                   for t in run.tokens if t.kind in ("digits", "num"))

    def classify(self, toks: Sequence[Token], run: Run, extra_context: str = "") -> tuple[str, float] | None:
        """Name a digit/letter sequence by the first sequence rule it fits."""
        nd, nl = len(run.digits), len(run.letters)
        if nd + nl == 0:
            return None
        for rule in self.rules:
            if rule.compact_regex:
                # The pattern says all about the symbols; digit and letter counts are not checked.
                if not re.fullmatch(rule.compact_regex, run.compact.upper()):
                    continue
            elif not (
                rule.digits[0] <= nd <= max(rule.digits[1], rule.digits[0])
                and rule.letters[0] <= nl <= rule.letters[1]
                and nd + nl >= rule.min_symbols
            ):
                continue
            if rule.luhn and not luhn_ok(run.digits):
                continue
            if rule.one_by_one and not self._one_by_one(run):
                continue
            if rule.context and not self._context_before(toks, run, rule.context, extra_context):
                continue
            return rule.entity, rule.score
        return None
