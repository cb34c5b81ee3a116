"""The vocabulary the scanners share: text as tokens, the spans they find, and word lists in usable shapes.

Number words come from `qa_service.spoken` (defined once for redaction and scoring); spelling letters,
months, ordinals, units and the rest from the rule files.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from qa_service.spoken import DIGIT_WORDS, READ_OUT_WORDS, REPEATERS, TEENS, TENS, read_digits
from qa_service.stages.recognizers.schema import Vocabulary


@dataclass(frozen=True)
class Span:
    """A stretch of personal data in one text: character offsets into that text."""

    entity_type: str
    start: int
    end: int
    score: float
    # Sure enough to carry through the rest of the call (a name said after "my name is", or a full name):
    # a single word the NER calls a person ("Microsoft", "Azure") is not.
    trusted: bool = False


_TOKEN = re.compile(
    r"(?i:x-ray)"
    r"|\d+(?:st|nd|rd|th)\b"  # ordinals ("14th") before mixed tokens
    r"|[A-Za-z]+\d[A-Za-z\d]*|\d+[A-Za-z][A-Za-z\d]*"  # letters and digits together ("LS6", "2QD")
    r"|[A-Za-z]+(?:'[A-Za-z]+)?|\d+|[^\sA-Za-z\d]"
)


@dataclass(frozen=True)
class Token:
    text: str
    start: int
    end: int
    kind: Literal["digits", "num", "letter", "alnum", "sep", "word", "punct"]
    value: str = ""  # digits or upper-case letters this token stands for

    @property
    def low(self) -> str:
        return self.text.lower()


_SEPARATORS = {",", "-", "/", ".", "–", "—", "dash", "hyphen", "space"}


class Vocab:
    """The vocabulary in the shapes the scanners need."""

    def __init__(self, v: Vocabulary) -> None:
        self.digits = DIGIT_WORDS
        self.teens = TEENS
        self.tens = TENS
        self.repeaters = REPEATERS
        self.spelling = {k.lower(): c.upper() for k, c in v.spelling_alphabet.items()}
        self.months = {m.lower() for m in v.months}
        self.ordinals = {k.lower(): n for k, n in v.ordinals.items()}
        self.units = {u.lower() for u in v.units}
        self.amount_cues = {w.lower() for w in v.amount_cues}
        self.currency = set(v.currency_symbols)
        self.street_types = [s.lower() for s in v.street_types]
        self.common = {w.lower() for w in v.common_words}
        self._cache: dict[str, tuple[Token, ...]] = {}  # a segment is scanned several times per call
        self.number_words = READ_OUT_WORDS

    def tokens(self, text: str) -> list[Token]:
        """Split text into tokens, each marked as digits, number word, letter, separator or word."""
        cached = self._cache.get(text)
        if cached is None:
            if len(self._cache) > 4096:
                self._cache.clear()
            cached = self._cache[text] = tuple(self._tokens(text))
        return list(cached)

    def _tokens(self, text: str) -> list[Token]:
        raw = [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)]
        out: list[Token] = []
        for i, (t, a, b) in enumerate(raw):
            low = t.lower()
            if t.isdigit():
                out.append(Token(t, a, b, "digits", t))
            elif re.fullmatch(r"\d+(?:st|nd|rd|th)", low):
                out.append(Token(t, a, b, "word"))  # "14th": an ordinal, read by the date scanner
            elif low in self.number_words:
                out.append(Token(t, a, b, "num"))
            elif low in self.spelling and self._spelling_context(raw, i):
                out.append(Token(t, a, b, "letter", self.spelling[low]))
            elif len(t) == 1 and t.isascii() and t.isalpha():  # a spelled letter, not a Chinese character
                out.append(Token(t, a, b, "letter", t.upper()))
            elif 2 <= len(t) <= 3 and t.isupper() and self._spelling_context(raw, i):
                out.append(Token(t, a, b, "letter", t))  # "HK 447 912": initials said together
            elif re.fullmatch(r"(?=.*\d)(?=.*[A-Za-z])[A-Za-z\d]+", t):
                out.append(Token(t, a, b, "alnum", t.upper()))
            elif low in _SEPARATORS or t in ",-/–—":
                out.append(Token(t, a, b, "sep"))
            elif t.isalpha() or "'" in t:
                out.append(Token(t, a, b, "word"))
            else:
                out.append(Token(t, a, b, "punct"))
        return self._letter_o(out)

    @staticmethod
    def _letter_o(toks: list[Token]) -> list[Token]:
        """A capital "O" among spelled letters ("V-I-O-L-E-T") is the letter, not zero."""

        def near(i: int, step: int) -> Token | None:
            j = i + step
            while 0 <= j < len(toks) and toks[j].kind == "sep":
                j += step
            return toks[j] if 0 <= j < len(toks) else None

        out = list(toks)
        for i, t in enumerate(toks):
            if t.text == "O":
                sides = [n for n in (near(i, -1), near(i, 1)) if n is not None]
                if any(n.kind == "letter" and n.text != "O" for n in sides):
                    out[i] = Token(t.text, t.start, t.end, "letter", "O")
        return out

    def _spelling_context(self, raw: list[tuple[str, int, int]], i: int) -> bool:
        # "Mike" or "November" on their own are a name and a month; as spelling they stand next to
        # other letters, digits or spelling words.
        def spelled(j: int) -> bool:
            if not 0 <= j < len(raw):
                return False
            t = raw[j][0]
            low = t.lower()
            return (
                (len(t) == 1 and t.isalnum())
                or t.isdigit()
                or low in self.spelling
                or low in self.digits
                or bool(re.fullmatch(r"[A-Za-z]*\d[A-Za-z\d]*", t))
            )

        def neighbour(step: int) -> int:
            j = i + step
            while 0 <= j < len(raw) and raw[j][0] in ",-.":
                j += step
            return j

        return spelled(neighbour(-1)) or spelled(neighbour(1))

    @staticmethod
    def spoken_digits(toks: Sequence[Token]) -> str:
        """Digits that a run of number words and digit tokens stands for ("twenty eight" -> "28")."""
        return read_digits([t.low for t in toks])


def base_forms(word: str) -> set[str]:
    """The word and what it may be an inflection of ("applying" -> "apply", "hoped" -> "hope")."""
    forms = {word}
    for suffix, endings in (("s", ("",)), ("es", ("",)), ("ies", ("y",)), ("ied", ("y",)), ("ed", ("", "e")),
                            ("ing", ("", "e")), ("er", ("", "e")), ("ers", ("", "e")), ("ly", ("",))):
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            stem = word[: -len(suffix)]
            forms.update(stem + e for e in endings)
            if len(stem) > 2 and stem[-1] == stem[-2]:
                forms.add(stem[:-1])  # "running" -> "run"
    return forms
