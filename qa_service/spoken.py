"""Numbers as people say them and recognisers write them: "sixty seven", "$640", "1,200", "two thousand".

The one place where number words are defined, and the two ways of reading them:

- `find_numbers` reads quantities: on a token sequence (spaCy token texts or plain words) it returns token
  spans with values, so a rule can say "a value within N tokens of the topic" whether the recogniser wrote
  words or digits; redaction uses it to tell an amount from an identifier.
- `read_digits` reads an identifier read out digit by digit ("oh nine twenty eight" -> "0928", "double
  five" -> "55"), as the redaction recognisers need it.

Chinese numerals are read by `find_numbers` too: 六百四十美元 is 640 dollars, 两万四千五百 24500, 一千零五十
1050, 3千 3000, 1.5万 15000, 2万4千5 24500, 百分之五 5 percent. Chinese is written without spaces, so
the characters of a token are read one by one (a whole clause may come as one token); see
`_read_chinese` for what is not a number (一些, 万一, 十分, 第一, 周一).

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

# Chinese numerals. A Chinese number starts with a digit, 十 or Arabic digits before a scale (3千); the
# financial forms (壹, 贰, 拾, 佰, 仟) read as the plain ones; 幺 is "one" as read in phone numbers.
CN_DIGITS = {
    "零": 0, "〇": 0, "一": 1, "壹": 1, "幺": 1, "二": 2, "贰": 2, "两": 2, "三": 3, "叁": 3,
    "四": 4, "肆": 4, "五": 5, "伍": 5, "六": 6, "陆": 6, "七": 7, "柒": 7,
    "八": 8, "捌": 8, "九": 9, "玖": 9, "兩": 2,
}
CN_SMALL_SCALES = {"十": 10, "拾": 10, "百": 100, "佰": 100, "千": 1_000, "仟": 1_000}
CN_BIG_SCALES = {"万": 10_000, "萬": 10_000, "亿": 100_000_000, "億": 100_000_000}
CN_SCALES = {**CN_SMALL_SCALES, **CN_BIG_SCALES}
CN_POINTS = frozenset({"点", "點"})
CN_PERCENT = ("百", "分", "之")  # 百分之五: five percent, the unit before the number
# Unit words after a Chinese number -> canonical unit. Not 块 (colloquial for any currency, yuan or
# dollars): a number before it carries no unit. Not 月 or 日 alone (三月 is March), nor 年 alone of a
# four-digit year (2024年 is a date, but 三年 three years: see `_cn_unit`).
CN_UNITS = {
    "美元": "dollar", "美金": "dollar", "元": "yuan", "人民币": "yuan", "欧元": "euro", "英镑": "pound",
    "镑": "pound", "日元": "yen", "年": "year", "个月": "month", "周": "week", "个星期": "week",
    "星期": "week", "个礼拜": "week", "天": "day", "工作日": "day", "个工作日": "day", "小时": "hour",
    "个小时": "hour", "钟头": "hour", "个钟头": "hour", "分钟": "minute", "分": "point",
    # Traditional characters (a multilingual recogniser may write them): 歐元, 個月, 小時.
    "歐元": "euro", "英鎊": "pound", "鎊": "pound", "人民幣": "yuan", "個月": "month", "個星期": "week",
    "個禮拜": "week", "小時": "hour", "個小時": "hour", "鐘頭": "hour", "分鐘": "minute",
}
# Measure words that make a lone 一 a count ("一个", "一次"): otherwise 一 is part of a word (一些 some,
# 一下 a moment, 一定 surely, 一起 together, 唯一 only, 万一 in case).
CN_COUNTERS = frozenset("个次份张位名件项本页笔条封种家人岁倍個張項頁筆條種歲")
# Characters before a digit that make it a name, not a quantity: 第一 (first), 周一 / 星期一 (Monday).
CN_ORDINAL_BEFORE = frozenset({"第", "周", "期", "拜"})
_CN_NUMBER_CHARS = frozenset({*CN_DIGITS, *CN_SCALES, *CN_POINTS})

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
    if w in CN_UNITS:
        return CN_UNITS[w]
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


def read_number(text: str) -> tuple[float, str | None] | None:
    """The one number a short text states, with its unit if it names one: "六百四十美元" -> (640, "dollar"),
    "两万四千五百" -> (24500, None), "five hundred" -> (500, None); None when the text holds anything else."""
    words, _ = _split(text.split())
    found = find_numbers(words)
    if len(found) != 1 or found[0].start != 0 or max(found[0].end, found[0].unit_end) != len(words):
        return None
    return found[0].value, found[0].unit


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


_CJK_CHAR = re.compile("[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]")
_CJK_PIECES = re.compile("[\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]"
                         "|[^\u3000-\u303f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff00-\uffef]+")


def _split(tokens: Sequence[str]) -> tuple[list[str], list[int]]:
    """Lower-case tokens, splitting "sixty-seven" style tokens and Chinese characters (Chinese is written
    without spaces: "申请费是640美元" is one word to a whitespace split); keep a map back to the original
    index."""
    out: list[str] = []
    back: list[int] = []
    for i, tok in enumerate(tokens):
        low = tok.lower()
        if len(low) > 1 and not low.isascii() and _CJK_CHAR.search(low) is not None:
            pieces = _CJK_PIECES.findall(low)
            out += pieces
            back += [i] * len(pieces)
            continue
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
    cjk = not "".join(words).isascii()  # Chinese numerals and units are looked for only then
    found: list[tuple[int, int, float, str | None]] = []  # in split-word indices
    i = 0
    n = len(words)
    while i < n:
        w = words[i]
        start = i
        unit: str | None = None
        if cjk and (w in _CN_NUMBER_CHARS or (w[:1].isdigit() and i + 1 < n and words[i + 1] in CN_SCALES)):
            chinese = _read_chinese(words, i)
            if chinese is not None:
                found.append((i, *chinese))
                i = chinese[0]
                continue
            if w in _CN_NUMBER_CHARS:
                # Not a number (一些, 第一百, 三四百): none of its run of numerals is one either.
                i += 1
                while i < n and words[i] in _CN_NUMBER_CHARS:
                    i += 1
                continue
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
            cn = _cn_unit(words, end, value) if cjk else None
            if cn is not None:
                unit, unit_end = cn
            elif words[end] in UNIT_WORDS:
                unit, unit_end = UNIT_WORDS[words[end]], end + 1
            elif words[end] == "per" and end + 1 < n and words[end + 1] == "cent":
                unit, unit_end = "percent", end + 2
        o_start = back[start]
        o_end = back[end - 1] + 1
        o_unit_end = back[unit_end - 1] + 1 if unit_end > end else o_end
        out.append(SpokenNumber(o_start, o_end, value, unit, o_unit_end))
    return out


def _read_chinese(words: Sequence[str], i: int) -> tuple[int, float, str | None] | None:
    """A number in Chinese numerals (or digits with Chinese scales) from words[i], one character a word:
    (end, value, unit) or None.

    Read as written: 两万四千五百 24500, 一千零五十 1050, 十二 12, 二十万 200000, 3千 3000, 1.5万 15000,
    一点五万 15000, 二零二四 2024 (digits one by one). A digit after a scale without 零 stands for the
    next place down, as people shorten numbers: 两万四 24000, 一百五 150, 2万4千5 24500. 百分之五 is 5
    percent. Not numbers: a lone 一 other than before a measure word (一些 some, 一下, 一定, 唯一),
    a number starting with 百, 千 or 万 (千万 "by all means", 万一 "in case"), 十分 not followed by
    钟 ("very"), digits after 第 (ordinals) or 周 / 星期 (weekdays), and digits said one by one before
    a scale (三四百 is "three or four hundred", no one value).
    """
    n = len(words)
    if tuple(words[i:i + 3]) == CN_PERCENT:
        inner = _read_chinese(words, i + 3) if i + 3 < n else None
        if inner is None and i + 3 < n and parse_digits(words[i + 3]) is not None:
            inner = (i + 4, parse_digits(words[i + 3]) or 0.0, None)
        return (inner[0], inner[1], "percent") if inner is not None else None
    if i > 0 and words[i - 1] in CN_ORDINAL_BEFORE:
        return None
    w = words[i]
    if w not in CN_DIGITS and w not in ("十", "拾") and not (w[:1].isdigit() and parse_digits(w) is not None):
        return None
    # Digits one by one: a year, a phone number ("二零二四", "幺三八").
    j = i
    while j < n and words[j] in CN_DIGITS and words[j] != "两":
        j += 1
    if j - i >= 2:
        if j < n and (words[j] in CN_SCALES or words[j] in CN_POINTS):
            return None  # 三四百: "three or four hundred"
        return j, float("".join(str(CN_DIGITS[c]) for c in words[i:j])), None
    total = 0.0
    section = 0.0
    pending: float | None = None
    last_small: int | None = None  # the last 十/百/千 in this section (they come in falling order)
    last_scale: int | None = None
    zero = False
    j = i
    while j < n:
        c = words[j]
        if c in CN_DIGITS and (pending is None):
            if CN_DIGITS[c] == 0:
                zero = True
            else:
                pending = float(CN_DIGITS[c])
        elif pending is None and j > i and c[:1].isdigit() and (value := parse_digits(c)) is not None:
            pending = value  # 2万4千5: Arabic digits between Chinese scales
        elif j == i and (value := parse_digits(c)) is not None:
            pending = value
        elif c in CN_SMALL_SCALES:
            scale = CN_SMALL_SCALES[c]
            if last_small is not None and scale >= last_small:
                break
            if pending is None:
                if scale != 10:
                    break
                if c == "十" and j == i and j + 1 < n and words[j + 1] == "分" \
                        and (j + 2 >= n or words[j + 2] != "钟"):
                    return None  # 十分: "very"
                pending = 1.0
            section += pending * scale
            pending, last_small, last_scale, zero = None, scale, scale, False
        elif c in CN_BIG_SCALES:
            scale = CN_BIG_SCALES[c]
            if pending is None and section == 0 or scale == last_scale:
                break
            section += pending or 0.0
            total = (total + section) * scale if scale > 10_000 else total + section * scale
            section, pending, last_small, last_scale, zero = 0.0, None, None, scale, False
        elif c in CN_POINTS and j + 1 < n and words[j + 1] in CN_DIGITS and total == 0 and not zero:
            # 三点五, 十二点五, 一点五万: the digits after 点 one by one, then perhaps a scale.
            k = j + 1
            while k < n and words[k] in CN_DIGITS:
                k += 1
            fraction = float("0." + "".join(str(CN_DIGITS[d]) for d in words[j + 1:k]))
            value = section + (pending or 0.0) + fraction
            if k < n and words[k] in CN_SCALES:
                value *= CN_SCALES[words[k]]
                k += 1
            return k, value, None
        else:
            break
        j += 1
    if j == i + 1 and words[i] == "一" and not _cn_counted(words, j):
        return None  # 一些, 一下, 一定, 唯一: a word, not the number one
    value = total + section
    if pending is not None:
        shortened = last_scale is not None and last_scale >= 100 and not zero and pending == int(pending) \
            and pending < 10 and words[j - 2] in CN_SCALES
        value += pending * (last_scale // 10 if shortened and last_scale else 1)
    if j == i or (value == 0 and not any(words[k] in CN_DIGITS for k in range(i, j))):
        return None
    return j, value, None


def _cn_counted(words: Sequence[str], j: int) -> bool:
    """Whether a measure word or unit follows position j ("一个", "一次", "一美元")."""
    return j < len(words) and (words[j] in CN_COUNTERS or _cn_unit(words, j, 1.0) is not None)


def _cn_unit(words: Sequence[str], j: int, value: float) -> tuple[str, int] | None:
    """The Chinese unit word starting at words[j] (the longest: 个月 before 月), and where it ends."""
    for k in (3, 2, 1):
        if j + k > len(words):
            continue
        key = "".join(words[j:j + k])
        unit = CN_UNITS.get(key)
        if unit is not None:
            if unit == "year" and 1000 <= value < 3000:
                return None  # 2024年: a date
            return unit, j + k
    return None


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
