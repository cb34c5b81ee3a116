"""Street addresses said aloud: from a house number through the street type ("fourteen baker street")."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from qa_service.stages.recognizers.vocabulary import Span, Token


def street_spans(toks: Sequence[Token], street_types: Iterable[str], score: float = 0.7) -> list[Span]:
    """From a house number through the street type ("fourteen baker street", "twenty-two maple avenue")."""
    types = set(street_types)
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
