"""E-mail addresses said aloud ("david dot okafor at example dot com"), checked against the public
suffix list bundled with tldextract (never fetched)."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from qa_service.stages.recognizers.schema import EmailRule
from qa_service.stages.recognizers.vocabulary import Span, Token

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


class EmailScanner:
    """Finds spoken e-mail addresses, and reads the address in an answer to an e-mail question."""

    def __init__(self, rule: EmailRule | None, is_common_word: Callable[[str], bool]) -> None:
        self.rule = rule
        self.is_common_word = is_common_word
        self.email_rx = None
        if rule is not None:
            at = "|".join(map(re.escape, rule.at_words)) or "at"
            dot = "|".join(map(re.escape, rule.dot_words)) or "dot"
            join = "|".join(map(re.escape, rule.joiners)) or "underscore"
            # One way only to read each character (no "-" or "_" both inside a part and between parts):
            # ambiguity here backtracks exponentially on "41-1-1-1-...".
            part = r"[A-Za-z0-9]+(?:'[A-Za-z]+)?"
            link = rf"(?:\s*\.\s*|\s+(?:{dot}|{join})\s+|[_\-])"
            self.email_rx = re.compile(
                rf"\b{part}(?:{link}{part})*(?:\s*@\s*|\s+(?:{at})\s+){part}(?:{link}{part})*"
                rf"(?:\s*\.\s*|\s+(?:{dot})\s+)(?P<tld>[A-Za-z]{{2,6}})\b",
                re.IGNORECASE,
            )
            self.email_score = rule.score

    def spans(self, text: str) -> list[Span]:
        """The e-mail addresses in a text on its own, with a real public suffix."""
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

    def answer(self, text: str, toks: Sequence[Token]) -> list[Span]:
        """Around "at" and "dot" in an answer to an e-mail question, even when the domain is garbled."""
        spans = []
        em = self.rule
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
                    return t.kind == "word" and not self.is_common_word(t.text)

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
