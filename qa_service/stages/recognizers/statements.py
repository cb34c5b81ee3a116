"""Conversation context: a question that asks for personal data ("could you confirm your date of
birth?"), the identifying part of the answer to it, and what follows a mention in the same sentence
("the case number is 729, 3 1 0 5")."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from qa_service.stages.recognizers.addresses import street_spans
from qa_service.stages.recognizers.schema import PromptRule
from qa_service.stages.recognizers.vocabulary import Span

if TYPE_CHECKING:
    from qa_service.stages.recognizers.rules import SpeechRules


@dataclass(frozen=True)
class Prompt:
    """A question that asked for personal data: what kind, and where in its segment's text it names it."""

    entity: str
    kind: str
    char_start: int = 0
    char_end: int = 0
    question: str = ""  # the words of the question, read as context for naming the answer


class Statements:
    """Reads prompts in a text and the answers to them, with the other scanners of the rules."""

    def __init__(self, rules: SpeechRules, prompts: list[PromptRule], request_cues: list[str]) -> None:
        self.rules = rules
        self._prompts = [
            (p, re.compile(r"(?:" + "|".join(p.phrases) + r")", re.IGNORECASE)) for p in prompts
        ]
        self._request = (
            re.compile(r"\?|\b(?:" + "|".join(map(re.escape, request_cues)) + r")\b", re.IGNORECASE)
            if request_cues
            else re.compile(r"\?")
        )

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
                    toks = self.rules.vocab.tokens(text)
                after = [t for t in toks if t.start >= m.end()]
                words = [k for k, t in enumerate(after) if t.kind not in ("sep", "punct")]
                after = after[: words[reach - 1] + 1] if len(words) >= reach else after  # separators are free
                if after:
                    prompt = Prompt(rule.entity, rule.kind, m.start(), m.end(), text[: m.end()])
                    spans.extend(self.answer(prompt, text, after[0].start, after[-1].end, statement=True))
        return spans

    def answer(self, prompt: Prompt, text: str, lo: int, hi: int, statement: bool = False) -> list[Span]:
        """The identifying part of text[lo:hi] given what was asked (or announced, for a `statement`)."""
        rules = self.rules
        toks = [t for t in rules.vocab.tokens(text) if lo <= t.start and t.end <= hi]
        if not toks:
            return []
        spans: list[Span] = []
        ctx = prompt.question
        if prompt.kind in ("number", "address", "date"):
            for run in rules.sequences.runs(toks):
                if rules.amounts.run_is_amount(text, run):
                    continue
                if len(run.digits) + len(run.letters) < (3 if prompt.kind != "date" else 2):
                    continue
                # The question names the answer ("... and the expiry?" -> "12 29" is a date), else the prompt.
                named = rules.sequences.classify(toks, run, extra_context=ctx)
                entity = named[0] if named else prompt.entity
                spans.append(Span(entity, run.start, run.end, 0.7))
        if prompt.kind == "date":
            spans.extend(rules.dates.answer(text, toks))
        if prompt.kind in ("name", "address"):
            # In a statement ("my address is ...") only capitalised words count: the rest of the sentence
            # goes on in ordinary words.
            spans.extend(
                rules.name_cues.proper_words(
                    text, toks, prompt.entity, short_answer=prompt.kind == "name" and not statement
                )
            )
        if prompt.kind == "address":
            spans.extend(street_spans(toks, rules.vocab.street_types))
        if prompt.kind == "email":
            spans.extend(rules.emails.answer(text, toks))
        return spans
