"""Numbers as people say them and recognisers write them: "sixty seven", "$640", "1,200", "two thousand".

The one place where number words are defined, and the two ways of reading them:

- `find_numbers` reads quantities: on a token sequence (spaCy token texts or plain words) it returns token
  spans with values, so a rule can say "a value within N tokens of the topic" whether the recogniser wrote
  words or digits; redaction uses it to tell an amount from an identifier.
- `read_digits` reads an identifier read out digit by digit ("oh nine twenty eight" -> "0928", "double
  five" -> "55"), as the redaction recognisers need it.

`number_to_words` goes the other way (for phrases written with digits in a rubric).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

UNITS = {
    "zero": 0, "oh": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9,
}
TEENS = {
    "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15, "sixteen": 16,
    "seventeen": 17, "eighteen": 18, "nineteen": 19,
}
TENS = {
    "twenty": 20, "thirty": 30, "forty": 40, "fourty": 40, "fifty": 50, "sixty": 60, "seventy": 70,
    "eighty": 80, "ninety": 90,
}
SCALES = {"thousand": 1_000, "million": 1_000_000, "billion": 1_000_000_000}
MULTIPLIERS = frozenset({"hundred", *SCALES})

# Zero as people also say it when they read digits out one by one ("o", and British "nought" and "nil"),
# never in a quantity; and the words that repeat the next digit ("double five" -> "55").
READ_OUT_ZEROS = ("o", "nought", "nil")
REPEATERS = {"double": 2, "triple": 3}
# The digit each word stands for when digits are read out.
DIGIT_WORDS = {**{w: str(v) for w, v in UNITS.items()}, **dict.fromkeys(READ_OUT_ZEROS, "0")}
# Every word a number read out is made of (the redaction recognisers' "number word" tokens).
READ_OUT_WORDS = frozenset({*DIGIT_WORDS, *TEENS, *TENS, *REPEATERS, "hundred", "thousand"})

CURRENCY_SYMBOLS = {"$": "dollar", "£": "pound", "€": "euro", "¥": "yen"}

# Unit words -> canonical unit (singular). Policy packs name units freely ("dollars", "USD"); both the
# pack and the transcript go through `canonical_unit` so they meet in the middle.
UNIT_WORDS = {
    "dollar": "dollar", "dollars": "dollar", "usd": "dollar", "buck": "dollar", "bucks": "dollar",
    "pound": "pound", "pounds": "pound", "gbp": "pound", "quid": "pound",
    "euro": "euro", "euros": "euro", "eur": "euro",
    "percent": "percent", "%": "percent", "pct": "percent",
    "point": "point", "points": "point", "pts": "point",
    "year": "year", "years": "year", "yr": "year", "yrs": "year",
    "month": "month", "months": "month", "week": "week", "weeks": "week", "day": "day", "days": "day",
    "hour": "hour", "hours": "hour", "minute": "minute", "minutes": "minute",
}

# A number written in digits: "595", "1,420", "2,000.50" (a list of digits, "41, 1, 1", is not one).
WRITTEN_NUMBER = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")
_WORD_KINDS = {**{w: "unit" for w in UNITS}, **{w: "teen" for w in TEENS}, **{w: "tens" for w in TENS}}


@dataclass(frozen=True)
class SpokenNumber:
    """A number found in a token sequence: tokens [start, end) and, if one is attached, its unit.

    The span covers the number (and a leading currency symbol); `unit_end` is where the unit word ends
    when the unit follows the number ("640 dollars"), else equal to `end`.
    """

    start: int
    end: int
    value: float
    unit: str | None = None
    unit_end: int = -1

    @property
    def text_value(self) -> str:
        """The value as the shortest digit string ("640", "1.5")."""
        return format_value(self.value)


def format_value(value: float) -> str:
    """Shortest digit string for a value: 640.0 -> "640", 1.5 -> "1.5"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def canonical_unit(word: str) -> str:
    """Canonical unit for a unit word or symbol ("Dollars" -> "dollar"); unknown words are lower-cased."""
    w = word.strip().lower()
    if w in CURRENCY_SYMBOLS:
        return CURRENCY_SYMBOLS[w]
    if w in UNIT_WORDS:
        return UNIT_WORDS[w]
    return w[:-1] if w.endswith("s") and len(w) > 3 else w


def parse_digits(token: str) -> float | None:
    """Value of a digit token ("640", "1,200", "2.5"), or None."""
    t = token.strip()
    if not WRITTEN_NUMBER.fullmatch(t):
        return None
    return float(t.replace(",", ""))


def read_digits(words: Sequence[str]) -> str:
    """Digits that a run of lower-case number words and digit strings stands for, read as an identifier
    is read out: "four one five" -> "415", "twenty eight" -> "28", "double five" -> "55".
    """
    out: list[str] = []
    repeat = 1
    i = 0
    while i < len(words):
        low = words[i]
        if low.isdigit():
            out.append(low * repeat)
            repeat = 1
        elif low in REPEATERS:
            repeat = REPEATERS[low]
        elif low in DIGIT_WORDS:
            out.append(DIGIT_WORDS[low] * repeat)
            repeat = 1
        elif low in TEENS:
            out.append(str(TEENS[low]))
        elif low in TENS:
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if DIGIT_WORDS.get(nxt, "0") != "0":  # "twenty eight" is 28, "twenty oh" is 20 then 0
                out.append(str(TENS[low] + int(DIGIT_WORDS[nxt])))
                i += 1
            else:
                out.append(str(TENS[low]))
        elif low == "hundred":
            nxt = words[i + 1] if i + 1 < len(words) else ""
            if not (nxt in TENS or nxt in TEENS or nxt in DIGIT_WORDS):
                out.append("00")
            elif nxt in DIGIT_WORDS:
                out.append("0")
        elif low == "thousand":
            out.append("000")
        i += 1
    return "".join(out)


def _split(tokens: Sequence[str]) -> tuple[list[str], list[int]]:
    """Lower-case tokens, splitting "sixty-seven" style tokens; keep a map back to the original index."""
    out: list[str] = []
    back: list[int] = []
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if "-" in low and len(low) > 1 and all(p in _WORD_KINDS or p in SCALES or p == "hundred"
                                               for p in low.split("-") if p):
            for part in low.split("-"):
                if part:
                    out.append(part)
                    back.append(i)
        else:
            out.append(low)
            back.append(i)
    return out, back


def _is_numword(w: str) -> bool:
    return w in _WORD_KINDS or w == "hundred" or w in SCALES


def _parse_words(words: list[str], i: int) -> tuple[float, int] | None:
    """Parse a spoken number starting at words[i]; return (value, end) or None."""
    n = len(words)
    total = 0
    current = 0
    last: str | None = None
    j = i
    if words[j] == "a" and j + 1 < n and (words[j + 1] == "hundred" or words[j + 1] in SCALES):
        current = 1
        last = "unit"
        j += 1
    while j < n:
        w = words[j]
        kind = _WORD_KINDS.get(w)
        if kind == "unit":
            if w == "oh" and last is None:
                break  # "oh" alone is an interjection, not zero
            if w in ("oh", "zero") and last == "teen" and total == 0 and 11 <= current <= 19:
                low = _parse_pair(words, j)  # "nineteen oh five"
                if low is not None:
                    return float(current * 100 + low[0]), low[1]
            if last in (None, "hundred", "scale", "and") or (last == "tens" and current % 10 == 0):
                current += UNITS[w]
                last = "unit"
            else:
                break
        elif kind in ("teen", "tens"):
            if last in (None, "hundred", "scale", "and"):
                current += TEENS.get(w, 0) + TENS.get(w, 0)
                last = kind
            elif total == 0 and last in ("teen", "tens") and (11 <= current <= 20):
                # Year style: "nineteen eighty seven", "twenty twenty six".
                low = _parse_pair(words, j)
                if low is None:
                    break
                value, end = low
                return float(current * 100 + value), end
            else:
                break
        elif w == "hundred":
            if last in ("unit", "teen", "tens") and current < 100:
                current *= 100
                last = "hundred"
            else:
                break
        elif w in SCALES:
            if last in ("unit", "teen", "tens", "hundred"):
                total += current * SCALES[w]
                current = 0
                last = "scale"
            else:
                break
        elif w == "and" and last in ("hundred", "scale") and j + 1 < n and words[j + 1] in _WORD_KINDS \
                and words[j + 1] != "oh":
            last = "and"
        elif w == "-" and last == "tens" and j + 1 < n and words[j + 1] in UNITS:
            pass
        else:
            break
        j += 1
    if last is None:
        return None
    if last == "and":  # never end on "and"
        j -= 1
    return float(total + current), j


def _parse_pair(words: list[str], j: int) -> tuple[int, int] | None:
    """Second half of a year: "eighty seven", "oh five", "twenty six", "fifteen"."""
    w = words[j]
    if w in TENS:
        value = TENS[w]
        if j + 1 < len(words) and words[j + 1] in UNITS and words[j + 1] not in ("zero", "oh"):
            return value + UNITS[words[j + 1]], j + 2
        return value, j + 1
    if w in TEENS:
        return TEENS[w], j + 1
    if w in ("oh", "zero") and j + 1 < len(words) and words[j + 1] in UNITS:
        return UNITS[words[j + 1]], j + 2
    return None


def find_numbers(tokens: Sequence[str]) -> list[SpokenNumber]:
    """Numbers spoken as digits or words in a token sequence, with token spans and attached units."""
    words, back = _split(tokens)
    found: list[tuple[int, int, float, str | None]] = []  # in split-word indices
    i = 0
    n = len(words)
    while i < n:
        w = words[i]
        start = i
        unit: str | None = None
        if w in CURRENCY_SYMBOLS and i + 1 < n and (parse_digits(words[i + 1]) is not None
                                                   or _is_numword(words[i + 1])):
            unit = CURRENCY_SYMBOLS[w]
            i += 1
            w = words[i]
        value = parse_digits(w)
        if value is not None:
            end = i + 1
            if end < n and words[end] in MULTIPLIERS:
                value *= 100 if words[end] == "hundred" else SCALES[words[end]]
                end += 1
            found.append((start, end, value, unit))
            i = end
            continue
        parsed = _parse_words(words, i) if (_is_numword(w) or w == "a") else None
        if parsed is not None:
            value, end = parsed
            found.append((start, end, value, unit))
            i = end
            continue
        i = start + 1
    out: list[SpokenNumber] = []
    for start, end, value, unit in _join_compounds(words, found):
        unit_end = end
        if unit is None and end < n:
            if words[end] in UNIT_WORDS:
                unit, unit_end = UNIT_WORDS[words[end]], end + 1
            elif words[end] == "per" and end + 1 < n and words[end + 1] == "cent":
                unit, unit_end = "percent", end + 2
        o_start = back[start]
        o_end = back[end - 1] + 1
        o_unit_end = back[unit_end - 1] + 1 if unit_end > end else o_end
        out.append(SpokenNumber(o_start, o_end, value, unit, o_unit_end))
    return out


def _join_compounds(words: list[str], found: list[tuple[int, int, float, str | None]]) -> list[
        tuple[int, int, float, str | None]]:
    """Join what a recogniser splits: "three hundred and eighty" written as "300 and 80" is 380.

    Only a round hundred or thousand followed by a smaller whole number than its last place is joined,
    so "300 and 80" becomes 380 but "300 and 400" stays two numbers. Between them may stand one "and",
    the commas and dashes a recogniser writes at a pause, and hesitations: "five hundred, and uh,
    ninety five" is 595.
    """
    out: list[tuple[int, int, float, str | None]] = []
    for item in found:
        if out:
            p_start, p_end, p_value, p_unit = out[-1]
            start, end, value, unit = item
            gap = words[p_end:start]
            place = 1000 if p_value % 1000 == 0 else 100
            if (p_value >= 100 and p_value % 100 == 0 and _joins(gap) and value == int(value)
                    and 0 < value < place and p_unit is None):
                out[-1] = (p_start, end, p_value + value, unit)
                continue
        out.append(item)
    return out


# What may stand between the parts of one number said with a pause: "five hundred, and uh, ninety five".
_PAUSE_MARKS = frozenset({",", "-", "--", "...", "…", "uh", "um", "er", "erm", "ah", "hmm"})


def _joins(gap: Sequence[str]) -> bool:
    """Whether the words between two parts of a number still join them (at most one "and", pauses)."""
    return len(gap) <= 4 and gap.count("and") <= 1 and all(w == "and" or w in _PAUSE_MARKS for w in gap)


_SMALL = [*UNITS.keys()][:1] + [k for k in UNITS if k not in ("zero", "oh")] + list(TEENS)


def number_to_words(value: int) -> str:
    """English words for a non-negative integer: 595 -> "five hundred ninety five"."""
    if value < 0:
        raise ValueError("negative numbers are not spoken here")
    if value < 20:
        return _SMALL[value]
    if value < 100:
        tens, unit = divmod(value, 10)
        word = [k for k, v in TENS.items() if v == tens * 10 and k != "fourty"][0]
        return word if unit == 0 else f"{word} {_SMALL[unit]}"
    if value < 1000:
        hundreds, rest = divmod(value, 100)
        head = f"{_SMALL[hundreds]} hundred"
        return head if rest == 0 else f"{head} {number_to_words(rest)}"
    for name, scale in sorted(SCALES.items(), key=lambda kv: -kv[1]):
        if value >= scale:
            high, rest = divmod(value, scale)
            head = f"{number_to_words(high)} {name}"
            return head if rest == 0 else f"{head} {number_to_words(rest)}"
    raise AssertionError("unreachable")
