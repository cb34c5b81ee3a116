"""Names said after a cue ("my name is david okafor", "speaking with Mr Lee"), and the names in an answer
to a name question. Names the NER misreads or misses elsewhere are `qa_service.stages.names`."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from qa_service.stages.recognizers.schema import NameCues
from qa_service.stages.recognizers.vocabulary import Span, Token


def phrase_rx(phrases: Sequence[str]) -> re.Pattern[str] | None:
    """One pattern for any of the phrases, longest first, spaces matching any white space."""
    if not phrases:
        return None
    alts = "|".join(re.escape(p).replace(r"\ ", r"\s+") for p in sorted(phrases, key=len, reverse=True))
    return re.compile(rf"\b(?:{alts})\b,?", re.IGNORECASE)


class NameCueScanner:
    """Finds the words after a name cue that can be a name: `strong` cues take lower-case words too."""

    def __init__(
        self, cues: NameCues, is_common_word: Callable[[str], bool], is_unknown_word: Callable[[str], bool]
    ) -> None:
        self.strong_rx = phrase_rx(cues.strong)
        self.weak_rx = phrase_rx(cues.weak)
        self.is_common_word = is_common_word
        self.is_unknown_word = is_unknown_word

    def spans(self, text: str) -> list[Span]:
        """The names after a cue in a text on its own."""
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
            if self.is_common_word(word) or (
                not strong and not word[0].isupper() and not self.is_unknown_word(word)
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

    def proper_words(self, text: str, toks: Sequence[Token], entity: str, short_answer: bool) -> list[Span]:
        """Names in an answer: capitalised uncommon words, or every uncommon word of a short answer."""
        words = [t for t in toks if t.kind in ("word", "letter") and t.text[0].isalpha()]
        short = short_answer and len(words) <= 4
        spans = []
        for i, t in enumerate(words):
            if self.is_common_word(t.text):
                continue
            sentence_start = i == 0 or text[: t.start].rstrip()[-1:] in (".", "?", "!", "")
            if t.text[0].isupper() and (not sentence_start or short or len(t.text) > 1):
                spans.append(Span(entity, t.start, t.end, 0.6, trusted=short))
            elif short:
                spans.append(Span(entity, t.start, t.end, 0.6, trusted=True))
        return spans
