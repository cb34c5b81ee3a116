"""Recognisers for personal data as speech recognition writes it, built from rules/recognizers.yaml.

Speech-recognition text reads numbers out ("four one five, five five five"), spells codes letter by
letter ("X-ray romeo four seven"), says e-mail addresses aloud ("david dot okafor at example dot com")
and writes names in lower case. Presidio's recognisers expect written text, so these add:

- a scanner over a token stream (`SpeechRules.scanner`, also usable in any Presidio registry as
  `SpeechRecognizer`): digit and letter sequences (cards with and without a valid Luhn checksum,
  phones, passports, references, spelled postcodes), spoken dates, spoken e-mail addresses, spoken
  street addresses, names after "my name is", and what follows a mention in the same sentence
  ("the case number is 729, 3 1 0 5");
- pattern recognisers (Presidio's own format) for written postcodes, addresses and the like;
- `SpeechRules`, the data the redactor uses for conversation context (what the agent just asked for)
  and to keep ordinary words (durations, amounts, greetings, policy dates) readable.

Rules are data: the packaged YAML plus any files a deployment adds, validated on load.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult
from presidio_analyzer.predefined_recognizers import EmailRecognizer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from qa_service.errors import ConfigError
from qa_service.spoken import SCALES, find_numbers

PACKAGED_RULES = Path(__file__).resolve().parents[1] / "rules" / "recognizers.yaml"


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


# -- schema -------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Vocabulary(_Strict):
    digits: dict[str, str] = Field(default_factory=dict)
    teens: dict[str, str] = Field(default_factory=dict)
    tens: dict[str, str] = Field(default_factory=dict)
    repeaters: dict[str, int] = Field(default_factory=dict)
    spelling_alphabet: dict[str, str] = Field(default_factory=dict)
    months: list[str] = Field(default_factory=list)
    ordinals: dict[str, int] = Field(default_factory=dict)
    units: list[str] = Field(default_factory=list)
    # A number said as a quantity ("twenty four thousand five hundred") next to one of these is money.
    amount_cues: list[str] = Field(default_factory=list)
    currency_symbols: list[str] = Field(default_factory=list)
    street_types: list[str] = Field(default_factory=list)
    common_words: list[str] = Field(default_factory=list)


class SequenceRule(_Strict):
    entity: str
    digits: tuple[int, int] = (0, 0)
    letters: tuple[int, int] = (0, 0)
    min_symbols: int = 0
    luhn: bool = False
    compact_regex: str | None = None
    context: list[str] = Field(default_factory=list)
    # Only digits read one by one ("four four two one", "4 4 2 1"), not an amount ("fifteen hundred").
    one_by_one: bool = False
    score: float = Field(ge=0.0, le=1.0)


class PatternRule(_Strict):
    name: str
    entity: str
    regex: str
    score: float = Field(ge=0.0, le=1.0)
    case_sensitive: bool = False
    context: list[str] = Field(default_factory=list)


class NameCues(_Strict):
    strong: list[str] = Field(default_factory=list)
    weak: list[str] = Field(default_factory=list)
    # A one-word place the NER found right after one of these stays a place ("flying to Jordan").
    places: list[str] = Field(default_factory=list)
    # Words that make a capitalised run a company's name, not a person's ("Xignite Inc").
    organisation_words: list[str] = Field(default_factory=list)


class EmailRule(_Strict):
    at_words: list[str] = Field(default_factory=list)
    dot_words: list[str] = Field(default_factory=list)
    joiners: list[str] = Field(default_factory=list)
    score: float = 0.9


class PromptRule(_Strict):
    entity: str
    kind: Literal["number", "date", "name", "address", "email"]
    phrases: list[str]


class DateTimeRule(_Strict):
    relative_words: list[str] = Field(default_factory=list)


class RulesFile(_Strict):
    version: int = 1
    vocabulary: Vocabulary = Field(default_factory=Vocabulary)
    sequences: list[SequenceRule] = Field(default_factory=list)
    context_window: int | None = None
    patterns: list[PatternRule] = Field(default_factory=list)
    name_cues: NameCues = Field(default_factory=NameCues)
    email: EmailRule | None = None
    prompts: list[PromptRule] = Field(default_factory=list)
    request_cues: list[str] = Field(default_factory=list)
    answer_window_s: float | None = None
    answer_segments: int | None = None
    date_time: DateTimeRule = Field(default_factory=DateTimeRule)


def _read(path: Path) -> RulesFile:
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"cannot read recogniser rules {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"recogniser rules {path} are not valid YAML: {exc}") from None
    try:
        return RulesFile.model_validate(data)
    except ValidationError as exc:
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()[:5])
        raise ConfigError(f"recogniser rules {path} do not validate: {where}") from None


def _combine(files: Sequence[RulesFile]) -> RulesFile:
    """Later files add to earlier ones: lists and maps are extended, single values overridden."""
    out = RulesFile()
    for f in files:
        voc = out.vocabulary.model_dump()
        for key, value in f.vocabulary.model_dump().items():
            voc[key] = {**voc[key], **value} if isinstance(value, dict) else [*voc[key], *value]
        out = out.model_copy(
            update={
                "vocabulary": Vocabulary.model_validate(voc),
                "sequences": [*out.sequences, *f.sequences],
                "context_window": f.context_window if f.context_window is not None else out.context_window,
                "patterns": [*out.patterns, *f.patterns],
                "name_cues": NameCues(
                    strong=[*out.name_cues.strong, *f.name_cues.strong],
                    weak=[*out.name_cues.weak, *f.name_cues.weak],
                    places=[*out.name_cues.places, *f.name_cues.places],
                    organisation_words=[*out.name_cues.organisation_words, *f.name_cues.organisation_words],
                ),
                "email": f.email or out.email,
                "prompts": [*out.prompts, *f.prompts],
                "request_cues": [*out.request_cues, *f.request_cues],
                "answer_window_s": f.answer_window_s
                if f.answer_window_s is not None
                else out.answer_window_s,
                "answer_segments": f.answer_segments
                if f.answer_segments is not None
                else out.answer_segments,
                "date_time": DateTimeRule(
                    relative_words=[*out.date_time.relative_words, *f.date_time.relative_words]
                ),
            }
        )
    return out


# -- tokens -------------------------------------------------------------------------------------

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


class _Vocab:
    """The vocabulary in the shapes the scanners need."""

    def __init__(self, v: Vocabulary) -> None:
        self.digits = {k.lower(): d for k, d in v.digits.items()}
        self.teens = {k.lower(): d for k, d in v.teens.items()}
        self.tens = {k.lower(): d for k, d in v.tens.items()}
        self.repeaters = {k.lower(): n for k, n in v.repeaters.items()}
        self.spelling = {k.lower(): c.upper() for k, c in v.spelling_alphabet.items()}
        self.months = {m.lower() for m in v.months}
        self.ordinals = {k.lower(): n for k, n in v.ordinals.items()}
        self.units = {u.lower() for u in v.units}
        self.amount_cues = {w.lower() for w in v.amount_cues}
        self.currency = set(v.currency_symbols)
        self.street_types = [s.lower() for s in v.street_types]
        self.common = {w.lower() for w in v.common_words}
        self._cache: dict[str, tuple[Token, ...]] = {}  # a segment is scanned several times per call
        self.number_words = (
            set(self.digits)
            | set(self.teens)
            | set(self.tens)
            | set(self.repeaters)
            | {"hundred", "thousand"}
        )

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

    def spoken_digits(self, toks: Sequence[Token]) -> str:
        """Digits that a run of number words and digit tokens stands for ("twenty eight" -> "28")."""
        out: list[str] = []
        repeat = 1
        i = 0
        while i < len(toks):
            t = toks[i]
            low = t.low
            if t.kind == "digits":
                out.append(t.value * repeat)
                repeat = 1
            elif low in self.repeaters:
                repeat = self.repeaters[low]
            elif low in self.digits:
                out.append(self.digits[low] * repeat)
                repeat = 1
            elif low in self.teens:
                out.append(self.teens[low])
            elif low in self.tens:
                nxt = toks[i + 1].low if i + 1 < len(toks) else ""
                if nxt in self.digits and self.digits[nxt] != "0" and nxt not in ("o", "oh"):
                    out.append(self.tens[low] + self.digits[nxt])
                    i += 1
                else:
                    out.append(self.tens[low] + "0")
            elif low == "hundred":
                nxt = toks[i + 1].low if i + 1 < len(toks) else ""
                if not (nxt in self.tens or nxt in self.teens or nxt in self.digits):
                    out.append("00")
                elif nxt in self.digits:
                    out.append("0")
            elif low == "thousand":
                out.append("000")
            i += 1
        return "".join(out)


def _base_forms(word: str) -> set[str]:
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


# -- rules in use -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """A question that asked for personal data: what kind, and where in its segment's text it names it."""

    entity: str
    kind: str
    char_start: int = 0
    char_end: int = 0
    question: str = ""  # the words of the question, read as context for naming the answer


@dataclass
class SpeechRules:
    """Compiled speech rules: recognisers for Presidio, plus context and precision checks."""

    source: RulesFile
    recognizers: list[Any] = field(default_factory=list)  # Presidio pattern recognisers from `patterns`
    # Ordinary English words (the redactor's spaCy model's word index); empty: every word may be one.
    lexicon: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        src = self.source
        self.vocab = _Vocab(src.vocabulary)
        self.context_window = src.context_window or 8
        self.answer_window_s = src.answer_window_s if src.answer_window_s is not None else 20.0
        self.answer_turns = src.answer_segments if src.answer_segments is not None else 2
        self._prompts = [
            (p, re.compile(r"(?:" + "|".join(p.phrases) + r")", re.IGNORECASE)) for p in src.prompts
        ]
        cues = src.request_cues
        self._request = (
            re.compile(r"\?|\b(?:" + "|".join(map(re.escape, cues)) + r")\b", re.IGNORECASE)
            if cues
            else re.compile(r"\?")
        )
        self._relative = {w.lower() for w in src.date_time.relative_words}
        self.scanner = _Scanner(self)

    # -- precision ----------------------------------------------------------------------------
    def is_common_word(self, word: str) -> bool:
        """True for words that are never a name on their own (stop words, greetings, call vocabulary)."""
        from spacy.lang.en.stop_words import STOP_WORDS

        low = word.lower().replace("’", "'")
        if "'" in low and low.split("'")[0] in STOP_WORDS:
            return True  # "i'm", "it's", "we'll"
        return (
            low in STOP_WORDS
            or low in self.vocab.common
            or low in self.vocab.number_words
            or low in self.vocab.months
            or low in self.vocab.units
        )

    def is_unknown_word(self, word: str) -> bool:
        """True for a word of five letters or more that no form of an English word in the lexicon explains
        ("tumbecker", a name the recogniser ran together): after "I am" it is a name even in lower case."""
        low = word.lower()
        if not self.lexicon or len(low) < 5 or not low.isalpha() or self.is_common_word(low):
            return False
        return not any(form in self.lexicon for form in _base_forms(low))

    def keep(
        self, entity_type: str, value: str, text: str, start: int, end: int, *, own: bool = False
    ) -> bool:
        """Whether a recogniser's span is personal data rather than ordinary speech.

        `own` marks spans from these speech rules, which already decided; the checks are for the
        general recognisers (spaCy's DATE and PERSON, Presidio's number patterns).
        """
        if own:
            return True
        if entity_type == "DATE_TIME":
            return self.is_specific_date(value)
        if entity_type in ("PERSON", "LOCATION", "NRP"):
            words = re.findall(r"[A-Za-z][A-Za-z'\-]*", value)
            return bool(words) and not all(self.is_common_word(w) for w in words)
        if entity_type in ("PHONE_NUMBER", "US_BANK_NUMBER", "US_DRIVER_LICENSE", "ID", "CREDIT_CARD"):
            return not self.scanner.is_amount(text, start, end)
        return True

    def is_specific_date(self, value: str) -> bool:
        """A date that can identify someone: a day or month with a year, or d/m/y.

        A day and month alone ("the first of July") is how policy dates are said; birthdays said that
        way are caught by the question or statement around them.
        """
        if re.search(r"\b\d{1,4}[/.\-]\d{1,2}[/.\-]\d{2,4}\b", value):
            return True
        toks = self.vocab.tokens(value)
        low = [t.low for t in toks]
        has_month = any(w in self.vocab.months for w in low)
        has_day = any(
            w in self.vocab.ordinals
            or re.fullmatch(r"\d{1,2}(?:st|nd|rd|th)", w)
            or (w.isdigit() and 1 <= int(w) <= 31)
            for w in low
        )
        has_year = self.scanner.has_year(toks)
        if has_month:
            return has_year
        return has_day and has_year and not any(w in self._relative for w in low)

    # -- context ------------------------------------------------------------------------------
    def prompts_in(self, text: str) -> list[Prompt]:
        """The kinds of personal data a segment asks for (a question or request naming them)."""
        found: list[Prompt] = []
        for m in re.finditer(r"[^.?!]+[.?!]*", text):
            sentence = m.group()
            asks = bool(self._request.search(sentence))
            for rule, rx in self._prompts:
                # Recognition often drops the question mark and garbles "could you": a mention is enough for
                # numbers, dates and e-mails, whose answers are redacted only where they look like one.
                # Names and addresses take ordinary words from the answer, so they need a real question.
                if not asks and rule.kind in ("name", "address"):
                    continue
                hit = rx.search(sentence)
                if hit and all(p.entity != rule.entity for p in found):
                    # The answer may start as soon as the thing asked for is named: recognition often joins
                    # "who am I speaking with, and what card ..." into one sentence the customer talks over.
                    found.append(
                        Prompt(
                            rule.entity, rule.kind, m.start() + hit.start(), m.start() + hit.end(), sentence
                        )
                    )
        return found

    def statement_spans(self, text: str, reach: int = 15) -> list[Span]:
        """What follows a mention in the same text ("my case number is 729 3 1 0 5"), up to `reach` tokens."""
        spans: list[Span] = []
        toks = None
        for rule, rx in self._prompts:
            for m in rx.finditer(text):
                if toks is None:
                    toks = self.vocab.tokens(text)
                after = [t for t in toks if t.start >= m.end()]
                words = [k for k, t in enumerate(after) if t.kind not in ("sep", "punct")]
                after = after[: words[reach - 1] + 1] if len(words) >= reach else after  # separators are free
                if after:
                    prompt = Prompt(rule.entity, rule.kind, m.start(), m.end(), text[: m.end()])
                    spans.extend(
                        self.scanner.answer(prompt, text, after[0].start, after[-1].end, statement=True)
                    )
        return spans

    def answer_spans(self, prompt: Prompt, text: str, lo: int = 0, hi: int | None = None) -> list[Span]:
        """The identifying part of an answer to `prompt`, within text[lo:hi]."""
        return self.scanner.answer(prompt, text, lo, len(text) if hi is None else hi)


# Money as written: "595", "1,420", "2,000.50", "12.99" (a list of digits has spaces after its commas).
SCALE_WORDS = frozenset({"hundred", *SCALES})
_MONEY = re.compile(r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?")


def load_rules(paths: Iterable[str | Path], *, with_recognizers: bool = True) -> SpeechRules:
    """Read, validate and compile recogniser rule files (later files add to earlier ones)."""
    files = [_read(Path(p)) for p in paths]
    rules = SpeechRules(_combine(files))
    if with_recognizers:
        rules.recognizers = _pattern_recognizers(rules)
    return rules


def _pattern_recognizers(rules: SpeechRules) -> list[Any]:
    fills = {
        "street_types": "|".join(map(re.escape, rules.vocab.street_types)),
        "months": "|".join(map(re.escape, sorted(rules.vocab.months))),
    }
    out = []
    for p in rules.source.patterns:
        regex = p.regex
        for key, alt in fills.items():
            regex = regex.replace("{" + key + "}", alt)
        try:
            re.compile(regex)
        except re.error as exc:
            raise ConfigError(
                f"recogniser pattern {p.name!r} is not a valid regular expression: {exc}"
            ) from None
        flags = 0 if p.case_sensitive else re.IGNORECASE
        rec = PatternRecognizer(
            supported_entity=p.entity,
            name=f"speech_{p.name}",
            patterns=[Pattern(p.name, regex, p.score)],
            context=p.context,
            global_regex_flags=flags | re.MULTILINE,
        )
        out.append(rec)
    return out


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


# -- scanner ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Run:
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


class _Scanner:
    """Finds sequences, spoken dates, spoken e-mails and cued names in a text."""

    def __init__(self, rules: SpeechRules) -> None:
        self.rules = rules
        v = rules.vocab
        self.v = v
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
        self.year_rx = re.compile(rf"^{year}$", re.IGNORECASE)
        self.date_rx = re.compile(
            rf"\b(?:(?:the\s+)?{ordinal}(?:\s+(?:of|on))?\s+(?:{months})\b(?:{sep}{year}\b)?"
            rf"|(?:{months})(?:\s+the)?\s+{ordinal}\b(?:{sep}{year}\b)?"
            rf"|(?:{months}),?\s+{year}\b)",
            re.IGNORECASE,
        )
        em = rules.source.email
        self.email_rx = None
        if em is not None:
            at = "|".join(map(re.escape, em.at_words)) or "at"
            dot = "|".join(map(re.escape, em.dot_words)) or "dot"
            join = "|".join(map(re.escape, em.joiners)) or "underscore"
            # One way only to read each character (no "-" or "_" both inside a part and between parts):
            # ambiguity here backtracks exponentially on "41-1-1-1-...".
            part = r"[A-Za-z0-9]+(?:'[A-Za-z]+)?"
            link = rf"(?:\s*\.\s*|\s+(?:{dot}|{join})\s+|[_\-])"
            self.email_rx = re.compile(
                rf"\b{part}(?:{link}{part})*(?:\s*@\s*|\s+(?:{at})\s+){part}(?:{link}{part})*"
                rf"(?:\s*\.\s*|\s+(?:{dot})\s+)(?P<tld>[A-Za-z]{{2,6}})\b",
                re.IGNORECASE,
            )
            self.email_score = em.score
        cues = rules.source.name_cues
        self.strong_rx = _phrase_rx(cues.strong)
        self.weak_rx = _phrase_rx(cues.weak)

    # -- helpers ------------------------------------------------------------------------------
    def has_year(self, toks: Sequence[Token]) -> bool:
        text = " ".join(t.text for t in toks if t.kind in ("digits", "num"))
        if any(t.kind == "digits" and len(t.text) == 4 and t.text[:2] in ("19", "20") for t in toks):
            return True
        return (
            bool(text)
            and bool(re.search(r"\b(?:nineteen|twenty|two thousand)\b", text, re.IGNORECASE))
            and len(self.v.spoken_digits([t for t in toks if t.kind in ("digits", "num")])) >= 4
        )

    def is_amount(self, text: str, start: int, end: int) -> bool:
        """A number said as money, points, a count or a duration ("640 dollars", "$595", "67 points")."""
        before = text[max(0, start - 2) : start].strip()
        # "$1,420.50" is money; "$41, 1, 1, 1, 1" is a card number the recogniser gave a "$".
        if before and before[-1] in self.v.currency and _MONEY.fullmatch(text[start:end]):
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

    def run_is_amount(self, text: str, run: _Run) -> bool:
        """An amount: a short number before a unit, or a number said as a quantity ("twenty four
        thousand five hundred", "24,500") before a unit or next to a word of money ("in savings")."""
        if len(run.digits) <= 7 and self.is_amount(text, run.start, run.end):
            return True
        if not self.is_quantity(text, run):
            return False
        return self.is_amount(text, run.start, run.end) or self.near_amount_cue(text, run)

    def is_quantity(self, text: str, run: _Run) -> bool:
        """Whether a run is one number said as a quantity, with scale words or thousands separators,
        as nobody reads out the digits of an identifier."""
        words = re.findall(r"[A-Za-z]+|\d[\d,.]*", text[run.start:run.end])
        if not any(w.lower() in SCALE_WORDS or re.fullmatch(r"\d{1,3}(?:,\d{3})+", w) for w in words):
            return False
        numbers = find_numbers(words)
        return len(numbers) == 1 and numbers[0].start == 0 and numbers[0].end == len(words)

    def near_amount_cue(self, text: str, run: _Run) -> bool:
        """A word of money within four words before a run or three after it ("the fee is", "in savings")."""
        before = re.findall(r"[A-Za-z$£€¥]+", text[:run.start])[-4:]
        after = re.findall(r"[A-Za-z$£€¥]+", text[run.end:])[:3]
        return any(w.lower() in self.v.amount_cues or w in self.v.currency for w in before + after)

    def runs(self, toks: Sequence[Token]) -> list[_Run]:
        """Maximal stretches of digits, number words and letters, separators allowed between them."""
        out: list[_Run] = []
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
                out.append(_Run(tuple(cur), digits, letters, "".join(compact)))
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
        self, toks: Sequence[Token], run: _Run, words: Sequence[str], extra: str = ""
    ) -> bool:
        idx = next(i for i, t in enumerate(toks) if t.start == run.start)
        lo = max(0, idx - self.rules.context_window)
        window = " " + " ".join(t.low for t in toks[lo:idx]) + " " + extra.lower() + " "
        return any(f" {w.lower()} " in window or (len(w) > 4 and w.lower() in window) for w in words)

    def _one_by_one(self, run: _Run) -> bool:
        v = self.v
        return all(len(t.value) == 1 if t.kind == "digits" else t.low in v.digits or t.low in v.repeaters
                   for t in run.tokens if t.kind in ("digits", "num"))

    def classify(self, toks: Sequence[Token], run: _Run, extra_context: str = "") -> tuple[str, float] | None:
        """Name a digit/letter sequence by the first sequence rule it fits."""
        nd, nl = len(run.digits), len(run.letters)
        if nd + nl == 0:
            return None
        for rule in self.rules.source.sequences:
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

    # -- scanners over one text ---------------------------------------------------------------
    def scan(self, text: str) -> list[Span]:
        """Everything the speech rules find in a text on its own."""
        toks = self.v.tokens(text)
        spans: list[Span] = []
        for run in self.runs(toks):
            if self.run_is_amount(text, run) or self._is_date_part(text, run):
                continue
            named = self.classify(toks, run)
            if named:
                spans.append(Span(named[0], run.start, run.end, named[1]))
        spans.extend(self.dates(text))
        spans.extend(self._street(text, toks, score=0.6))
        spans.extend(self.emails(text))
        spans.extend(self.names(text))
        spans.extend(self.rules.statement_spans(text))
        return spans

    def _is_date_part(self, text: str, run: _Run) -> bool:
        # "14th of March 1987": the date scanner owns the year; as a sequence it would be an ID.
        return any(m.start() <= run.start and run.end <= m.end() for m in self.date_rx.finditer(text))

    def dates(self, text: str) -> list[Span]:
        return [
            # Without a year ("the first of July") it is a date in general, redacted only where it answers
            # or follows a question about a birth date or an expiry: below the threshold on its own.
            Span("DATE_TIME", m.start(), m.end(), 0.85 if self._has_year_text(m.group()) else 0.35)
            for m in self.date_rx.finditer(text)
        ]

    def _has_year_text(self, s: str) -> bool:
        return self.has_year(self.v.tokens(s)) or bool(re.search(r"'\d{2}\b", s))

    def emails(self, text: str) -> list[Span]:
        if self.email_rx is None:
            return []
        out = []
        pos = 0
        while (m := self.email_rx.search(text, pos)) is not None:
            if _suffix_ok(m.group("tld")):
                out.append(Span("EMAIL_ADDRESS", m.start(), m.end(), self.email_score))
                pos = m.end()
            else:
                # "checklist at david dot okafor" is no address, but one may start inside it.
                pos = m.start() + 1
        return out

    def names(self, text: str) -> list[Span]:
        out: list[Span] = []
        for rx, strong in ((self.strong_rx, True), (self.weak_rx, False)):
            if rx is None:
                continue
            for m in rx.finditer(text):
                span = self._name_after(text, m.end(), strong)
                if span:
                    out.append(span)
        return out

    def _name_after(self, text: str, pos: int, strong: bool, max_words: int = 3) -> Span | None:
        start = end = None
        for m in re.finditer(r"\s*([A-Za-z][A-Za-z'\-]*)|\s*(\S)", text[pos:]):
            word = m.group(1)
            if word is None:
                break  # punctuation ends a name
            if self.rules.is_common_word(word) or (
                not strong and not word[0].isupper() and not self.rules.is_unknown_word(word)
            ):
                break
            if len(word) == 1 and not strong:
                break
            a = pos + m.start(1)
            start = a if start is None else start
            end = a + len(word)
            max_words -= 1
            if max_words == 0:
                break
        if start is None or end is None:
            return None
        return Span("PERSON", start, end, 0.85 if strong else 0.6, trusted=strong)

    # -- answers ------------------------------------------------------------------------------
    def answer(self, prompt: Prompt, text: str, lo: int, hi: int, statement: bool = False) -> list[Span]:
        """The identifying part of text[lo:hi] given what was asked (or announced, for a `statement`)."""
        toks = [t for t in self.v.tokens(text) if lo <= t.start and t.end <= hi]
        if not toks:
            return []
        spans: list[Span] = []
        ctx = prompt.question
        if prompt.kind in ("number", "address", "date"):
            for run in self.runs(toks):
                if self.run_is_amount(text, run):
                    continue
                if len(run.digits) + len(run.letters) < (3 if prompt.kind != "date" else 2):
                    continue
                # The question names the answer ("... and the expiry?" -> "12 29" is a date), else the prompt.
                named = self.classify(toks, run, extra_context=ctx)
                entity = named[0] if named else prompt.entity
                spans.append(Span(entity, run.start, run.end, 0.7))
        if prompt.kind == "date":
            spans.extend(self._date_answer(text, toks))
        if prompt.kind in ("name", "address"):
            # In a statement ("my address is ...") only capitalised words count: the rest of the sentence
            # goes on in ordinary words.
            spans.extend(
                self._proper_words(
                    text, toks, prompt.entity, short_answer=prompt.kind == "name" and not statement
                )
            )
        if prompt.kind == "address":
            spans.extend(self._street(text, toks))
        if prompt.kind == "email":
            spans.extend(self._email_answer(text, toks))
        return spans

    def _date_answer(self, text: str, toks: Sequence[Token]) -> list[Span]:
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
            if cur and numbered and not self.is_amount(text, cur[0].start, cur[-1].end):
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

    def _proper_words(self, text: str, toks: Sequence[Token], entity: str, short_answer: bool) -> list[Span]:
        """Names in an answer: capitalised uncommon words, or every uncommon word of a short answer."""
        words = [t for t in toks if t.kind in ("word", "letter") and t.text[0].isalpha()]
        short = short_answer and len(words) <= 4
        spans = []
        for i, t in enumerate(words):
            if self.rules.is_common_word(t.text):
                continue
            sentence_start = i == 0 or text[: t.start].rstrip()[-1:] in (".", "?", "!", "")
            if t.text[0].isupper() and (not sentence_start or short or len(t.text) > 1):
                spans.append(Span(entity, t.start, t.end, 0.6, trusted=short))
            elif short:
                spans.append(Span(entity, t.start, t.end, 0.6, trusted=True))
        return spans

    def _street(self, text: str, toks: Sequence[Token], score: float = 0.7) -> list[Span]:
        """From a house number through the street type ("fourteen baker street")."""
        types = set(self.v.street_types)
        spans = []
        for i, t in enumerate(toks):
            if t.low in types and i > 0:
                j = i - 1
                while j >= 0 and i - j <= 5 and toks[j].kind in ("word", "digits", "num", "alnum", "sep"):
                    if toks[j].kind in ("digits", "num", "alnum"):
                        # The whole house number: "twenty-two", "14 b".
                        while j > 0 and toks[j - 1].kind in ("digits", "num", "alnum", "sep"):
                            j -= 1
                        while toks[j].kind == "sep":
                            j += 1
                        spans.append(Span("LOCATION", toks[j].start, t.end, score))
                        break
                    j -= 1
        return spans

    def _email_answer(self, text: str, toks: Sequence[Token]) -> list[Span]:
        """Around "at" and "dot" in an answer to an e-mail question, even when the domain is garbled."""
        spans = []
        em = self.rules.source.email
        at_words = {w.lower() for w in (em.at_words if em else ["at"])} | {"@"}
        dot_words = {w.lower() for w in (em.dot_words if em else ["dot"])}
        for i, t in enumerate(toks):
            if t.low in at_words or "@" in t.text:
                a = i

                def local_part(t: Token) -> bool:
                    # "j smith ninety nine at ...": letters, digits and names, not "my email is".
                    if t.low in dot_words or t.text == "." or t.kind in ("num", "digits", "alnum"):
                        return True
                    if t.kind == "letter":
                        return t.text not in ("a", "I")
                    return t.kind == "word" and not self.rules.is_common_word(t.text)

                while a > 0 and local_part(toks[a - 1]):
                    a -= 1
                    if i - a > 6:
                        break
                b = i
                while (
                    b + 1 < len(toks)
                    and toks[b + 1].kind not in ("sep",)
                    and toks[b + 1].text not in "?!"
                    and b - i < 8
                ):
                    b += 1
                if a < i:
                    spans.append(Span("EMAIL_ADDRESS", toks[a].start, toks[b].end, 0.7))
        return spans


def _phrase_rx(phrases: Sequence[str]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    alts = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"\b(?:{alts})\b,?", re.IGNORECASE)


_TLD: Any = None


def offline_tld_extractor() -> Any:
    """tldextract on its bundled public-suffix snapshot: no cache folder, no network."""
    global _TLD
    if _TLD is None:
        import tldextract

        _TLD = tldextract.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    return _TLD


def _suffix_ok(tld: str) -> bool:
    return bool(offline_tld_extractor()(f"example.{tld.lower()}").suffix)


class SpeechRecognizer(EntityRecognizer):
    """Presidio recogniser over speech text: sequences, spoken dates and e-mails, cued names."""

    def __init__(self, rules: SpeechRules) -> None:
        entities = sorted(
            {r.entity for r in rules.source.sequences} | {"DATE_TIME", "EMAIL_ADDRESS", "PERSON"}
        )
        self.rules = rules
        super().__init__(supported_entities=entities, name="SpeechRecognizer", supported_language="en")

    def load(self) -> None:
        """Nothing to load: the rules are compiled already."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        """Spans the speech scanners find in `text`, as Presidio results."""
        wanted = set(entities or self.supported_entities)
        meta = {
            RecognizerResult.RECOGNIZER_NAME_KEY: "SpeechRecognizer",
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
        }
        return [
            RecognizerResult(s.entity_type, s.start, s.end, s.score, recognition_metadata=dict(meta))
            for s in self.rules.scanner.scan(text)
            if s.entity_type in wanted
        ]


def offline_email_recognizer() -> Any:
    """Presidio's e-mail recogniser, validating domains on tldextract's bundled snapshot."""

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return offline_tld_extractor()(pattern_text).fqdn != ""

    return OfflineEmailRecognizer()
