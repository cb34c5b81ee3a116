"""Compiled speech rules: the scanners of every family over one vocabulary, and the precision checks
the redactor applies to any recogniser's span (is this word ever a name? is this date specific?)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qa_service.stages.recognizers.addresses import street_spans
from qa_service.stages.recognizers.amounts import Amounts
from qa_service.stages.recognizers.dates import DateScanner
from qa_service.stages.recognizers.emails import EmailScanner
from qa_service.stages.recognizers.name_cues import NameCueScanner
from qa_service.stages.recognizers.presidio import pattern_recognizers
from qa_service.stages.recognizers.schema import RulesFile, combine, read_rules_file
from qa_service.stages.recognizers.sequences import SequenceScanner
from qa_service.stages.recognizers.statements import Prompt, Statements
from qa_service.stages.recognizers.vocabulary import Span, Vocab, base_forms

PACKAGED_RULES = Path(__file__).resolve().parents[2] / "rules" / "recognizers.yaml"


@dataclass
class SpeechRules:
    """Compiled speech rules: recognisers for Presidio, plus context and precision checks."""

    source: RulesFile
    recognizers: list[Any] = field(default_factory=list)  # Presidio pattern recognisers from `patterns`
    # Ordinary English words (the redactor's spaCy model's word index); empty: every word may be one.
    lexicon: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        src = self.source
        self.vocab = Vocab(src.vocabulary)
        self.context_window = src.context_window or 8
        self.answer_window_s = src.answer_window_s if src.answer_window_s is not None else 20.0
        self.answer_turns = src.answer_segments if src.answer_segments is not None else 2
        self.amounts = Amounts(self.vocab)
        self.sequences = SequenceScanner(self.vocab, src.sequences, self.context_window)
        self.dates = DateScanner(self.vocab, src.date_time.relative_words, self.amounts)
        self.emails = EmailScanner(src.email, self.is_common_word)
        self.name_cues = NameCueScanner(src.name_cues, self.is_common_word, self.is_unknown_word)
        self.statements = Statements(self, src.prompts, src.request_cues)

    # -- a text on its own ----------------------------------------------------------------------
    def scan(self, text: str) -> list[Span]:
        """Everything the speech rules find in a text on its own."""
        toks = self.vocab.tokens(text)
        spans: list[Span] = []
        for run in self.sequences.runs(toks):
            # "14th of March 1987": the date scanner owns the year; as a sequence it would be an ID.
            if self.amounts.run_is_amount(text, run) or self.dates.covers(text, run.start, run.end):
                continue
            named = self.sequences.classify(toks, run)
            if named:
                spans.append(Span(named[0], run.start, run.end, named[1]))
        spans.extend(self.dates.spans(text))
        spans.extend(street_spans(toks, self.vocab.street_types, score=0.6))
        spans.extend(self.emails.spans(text))
        spans.extend(self.name_cues.spans(text))
        spans.extend(self.statements.statement_spans(text))
        return spans

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
        return not any(form in self.lexicon for form in base_forms(low))

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
            return not self.amounts.is_amount(text, start, end)
        return True

    def is_specific_date(self, value: str) -> bool:
        """A date that can identify someone: a day or month with a year, or d/m/y."""
        return self.dates.is_specific(value)

    # -- context ------------------------------------------------------------------------------
    def prompts_in(self, text: str) -> list[Prompt]:
        """The kinds of personal data a segment asks for (a question or request naming them)."""
        return self.statements.prompts_in(text)

    def statement_spans(self, text: str, reach: int = 15) -> list[Span]:
        """What follows a mention in the same text ("my case number is 729 3 1 0 5"), up to `reach` tokens."""
        return self.statements.statement_spans(text, reach)

    def answer_spans(self, prompt: Prompt, text: str, lo: int = 0, hi: int | None = None) -> list[Span]:
        """The identifying part of an answer to `prompt`, within text[lo:hi]."""
        return self.statements.answer(prompt, text, lo, len(text) if hi is None else hi)


def load_rules(paths: Iterable[str | Path], *, with_recognizers: bool = True) -> SpeechRules:
    """Read, validate and compile recogniser rule files (later files add to earlier ones)."""
    rules = SpeechRules(combine([read_rules_file(Path(p)) for p in paths]))
    if with_recognizers:
        rules.recognizers = pattern_recognizers(rules)
    return rules
