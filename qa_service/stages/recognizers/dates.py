"""Spoken dates ("the third of July nineteen seventy nine", "August 8, 1988"), years, and which dates
can identify someone (a birth date) rather than say when something happens (a policy date)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from qa_service.stages.recognizers.amounts import Amounts
from qa_service.stages.recognizers.vocabulary import Span, Token, Vocab


class DateScanner:
    """Finds spoken and written dates, and reads the date in an answer to a date question."""

    def __init__(self, vocab: Vocab, relative_words: Iterable[str], amounts: Amounts) -> None:
        v = self.v = vocab
        self.amounts = amounts
        self._relative = {w.lower() for w in relative_words}
        months = "|".join(sorted(v.months, key=len, reverse=True))
        ordinal_words = "|".join(sorted(v.ordinals, key=len, reverse=True))
        tens = "|".join(v.tens)
        digit_words = "|".join(k for k in v.digits if k not in ("o", "oh", "nil", "nought", "zero"))
        teens = "|".join(v.teens)
        ordinal = (
            rf"(?:\d{{1,2}}(?:st|nd|rd|th)?|(?:(?:{tens})[\s-])?(?:{ordinal_words})"
            rf"|(?:twenty|thirty)[\s-]?(?:{digit_words})?)"
        )
        small = rf"(?:(?:{tens})(?:[\s-](?:{digit_words}))?|{teens}|{digit_words})"
        year = (
            rf"(?:\d{{4}}|'\d{{2}}|(?:nineteen|twenty)\s+(?:hundred|oh\s+(?:{digit_words})|{small})"
            rf"|two\s+thousand(?:\s+and)?(?:\s+{small})?)"
        )
        sep = r"[\s,]+"
        self.date_rx = re.compile(
            rf"\b(?:(?:the\s+)?{ordinal}(?:\s+(?:of|on))?\s+(?:{months})\b(?:{sep}{year}\b)?"
            rf"|(?:{months})(?:\s+the)?\s+{ordinal}\b(?:{sep}{year}\b)?"
            rf"|(?:{months}),?\s+{year}\b)",
            re.IGNORECASE,
        )

    def has_year(self, toks: Sequence[Token]) -> bool:
        """Whether the tokens say a year ("1987", "nineteen eighty seven", "two thousand and four")."""
        text = " ".join(t.text for t in toks if t.kind in ("digits", "num"))
        if any(t.kind == "digits" and len(t.text) == 4 and t.text[:2] in ("19", "20") for t in toks):
            return True
        return (
            bool(text)
            and bool(re.search(r"\b(?:nineteen|twenty|two thousand)\b", text, re.IGNORECASE))
            and len(self.v.spoken_digits([t for t in toks if t.kind in ("digits", "num")])) >= 4
        )

    def covers(self, text: str, start: int, end: int) -> bool:
        """Whether text[start:end] lies inside a date ("14th of March 1987" owns its year)."""
        return any(m.start() <= start and end <= m.end() for m in self.date_rx.finditer(text))

    def spans(self, text: str) -> list[Span]:
        """The dates in a text on its own."""
        return [
            # Without a year ("the first of July") it is a date in general, redacted only where it answers
            # or follows a question about a birth date or an expiry: below the threshold on its own.
            Span("DATE_TIME", m.start(), m.end(), 0.85 if self._has_year_text(m.group()) else 0.35)
            for m in self.date_rx.finditer(text)
        ]

    def _has_year_text(self, s: str) -> bool:
        return self.has_year(self.v.tokens(s)) or bool(re.search(r"'\d{2}\b", s))

    def answer(self, text: str, toks: Sequence[Token]) -> list[Span]:
        """Stretches of months, ordinals, years and number words ("11th of November, 1992")."""
        v = self.v
        spans: list[Span] = []
        cur: list[Token] = []

        def datey(t: Token) -> bool:
            low = t.low
            return (
                t.kind in ("digits", "num")
                or low in v.months
                or low in v.ordinals
                or bool(re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)", low))
                or any(low.endswith(o) and low[: -len(o)] in v.tens for o in v.ordinals)
            )

        def flush() -> None:
            while cur and not datey(cur[-1]):
                cur.pop()
            # "ten weeks", "one hundred and fifty dollars": durations and amounts, not a date; and a month
            # name alone ("my family may not") is a word unless a number goes with it.
            nums = [t for t in cur if t.kind in ("digits", "num")]
            numbered = any(t.kind == "word" and t.low not in v.months for t in cur if datey(t)) or (
                len(v.spoken_digits(nums)) >= 2  # "4" alone is not a date; "11 11 92" is
            )
            if cur and numbered and not self.amounts.is_amount(text, cur[0].start, cur[-1].end):
                spans.append(Span("DATE_TIME", cur[0].start, cur[-1].end, 0.7))
            cur.clear()

        for t in toks:
            if datey(t):
                cur.append(t)
            elif cur and (t.kind == "sep" or t.low in ("of", "the", "on", "and")):
                cur.append(t)
            else:
                flush()
        flush()
        return spans

    def is_specific(self, value: str) -> bool:
        """A date that can identify someone: a day or month with a year, or d/m/y.

        A day and month alone ("the first of July") is how policy dates are said; birthdays said that
        way are caught by the question or statement around them.
        """
        if re.search(r"\b\d{1,4}[/.\-]\d{1,2}[/.\-]\d{2,4}\b", value):
            return True
        toks = self.v.tokens(value)
        low = [t.low for t in toks]
        has_month = any(w in self.v.months for w in low)
        has_day = any(
            w in self.v.ordinals
            or re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)", w)
            or (w.isdigit() and 1 <= int(w) <= 31)
            for w in low
        )
        has_year = self.has_year(toks)
        if has_month:
            return has_year
        return has_day and has_year and not any(w in self._relative for w in low)
