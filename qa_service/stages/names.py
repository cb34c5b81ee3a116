"""People's names that the small spaCy model misses or calls an organisation or a place.

en_core_web_sm reads many names as an organisation or a place ("Tomomi Nishiyama lives at ...",
"please change it to Sofia Lima"), and the redactor ignores those labels: they also carry the
company's own name and the countries an immigration call is about. `NameRecognizer` takes such a
span back as a PERSON when

- a name cue of rules/recognizers.yaml stands right before it ("my name is", "speaking with", "Mr",
  "my son"), or
- its first word is a given name in the name lists and each other word is an initial, a surname in
  the lists or no English word ("Sofia Lima", "Ewan Richards"); a one-word place right after "in",
  "from", "to" ... stays a place ("flying to Jordan"), or
- it is two or more capitalised words, none of them an English word ("Calquín Cazares"): places need
  a given name or a cue, as "Buenos Aires" has the same shape.

Beside the NER it reads

- lists of names ("Kónya, Becker and Vasquez"): two or more capitalised items, each a name in the
  lists or no English word, one of them in the lists;
- a given name and a surname together in any case ("patricia desrosiers", "Elita B Desaulniers"):
  speech recognition often writes names in lower case, where the NER sees nothing.

An English word is one that the spaCy model's lemmatizer knows in some form; the name lists are the
given names and surnames of the Faker package's person providers, every locale, read from the
installed package (never a download).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from presidio_analyzer import EntityRecognizer, RecognizerResult

from qa_service.errors import ConfigError
from qa_service.stages.recognizers import Span, SpeechRules
from qa_service.stages.recognizers.name_cues import phrase_rx
from qa_service.stages.recognizers.vocabulary import base_forms

# NER labels whose spans may be a person's name misread; WORK_OF_ART, EVENT and LAW spans are titles
# ("Secretly Love"), taken back only after a cue.
_MISREAD = ("ORG", "GPE", "LOC", "FAC", "NORP", "PRODUCT", "WORK_OF_ART", "EVENT", "LAW")
_PLACES = ("GPE", "LOC", "FAC")
_TITLES = ("WORK_OF_ART", "EVENT", "LAW")
# A word of a name: letters of any script, joined by an apostrophe or a hyphen ("O'Neil", "Jean-Luc"),
# or an initial with or without its full stop.
_WORD = r"[^\W\d_]+(?:['’\-][^\W\d_]+)*\.?"
_NAME_SHAPE = re.compile(rf"^{_WORD}(?:[ \t]+{_WORD}){{0,3}}$")
# What separates the items of an entity that holds several ("Usamov and Bowers", "Julieta S Almeida\n
# Staff"): line breaks, punctuation, "and", "of"; a possessive ends an item.
_PART_BREAK = re.compile(r"\n|[,;:()\[\]\"“”/|>]|\s(?:and|&|or|of)\s|['’]s\b")
_CAP_WORD = r"[^\W\d_a-z][^\W\d_]*(?:['’\-][^\W\d_]+)*"
_ITEM = rf"{_CAP_WORD}(?:[ \t]+{_CAP_WORD}){{0,2}}"
_LIST = re.compile(rf"(?<![^\W\d_])({_ITEM})((?:,[ \t]*{_ITEM})*,?[ \t]+(?:and|&)[ \t]+{_ITEM})(?![^\W\d_])")
_LIST_ITEM = re.compile(_ITEM)
# A given name, an optional initial, a surname: "patricia desrosiers", "Elita B Desaulniers".
_PAIR = re.compile(
    r"(?<![^\W\d_])([^\W\d_]{2,})[ \t]+(?:([^\W\d_a-z])\.?[ \t]+)?"
    r"([^\W\d_]{2,}(?:['’\-][^\W\d_]+)?)(?![^\W\d_])"
)


@dataclass(frozen=True)
class NameLists:
    """Given names, surnames and places (countries, states, cities), lower case."""

    given: frozenset[str]
    surnames: frozenset[str]
    places: frozenset[str] = frozenset()


def load_name_lists() -> NameLists:
    """The names of every locale of the installed Faker package: people's from its person providers,
    places' from its address providers."""
    given: set[str] = set()
    surnames: set[str] = set()
    places: set[str] = set()
    _read_providers(
        "person",
        {
            "first_names": given,
            "first_names_male": given,
            "first_names_female": given,
            "first_names_nonbinary": given,
            "first_romanized_names": given,
            "last_names": surnames,
            "last_romanized_names": surnames,
        },
    )
    _read_providers("address", {"countries": places, "states": places, "provinces": places, "cities": places})
    if not given or not surnames:
        raise ConfigError("the installed Faker package has no person names to read")
    return NameLists(frozenset(given), frozenset(surnames), frozenset(places))


def _read_providers(kind: str, into: dict[str, set[str]]) -> None:
    try:
        package: Any = importlib.import_module(f"faker.providers.{kind}")
    except ImportError:
        raise ConfigError(
            "the name lists come from the Faker package: install it (pip install faker)"
        ) from None
    for module in pkgutil.iter_modules(package.__path__):
        provider = getattr(importlib.import_module(f"{package.__name__}.{module.name}"), "Provider", None)
        for attr, names in into.items():
            found = getattr(provider, attr, None)  # a tuple, a weighted dict, or a property on some locales
            if isinstance(found, list | tuple | dict):
                names.update(n.lower() for n in found if isinstance(n, str))


class NameFinder:
    """Finds names the NER misread or missed in one text, given the spaCy Doc it made of it."""

    def __init__(self, rules: SpeechRules, names: NameLists) -> None:
        self.rules = rules
        self.names = names
        cues = rules.source.name_cues
        rx = phrase_rx([*cues.strong, *cues.weak])
        self.cue_rx = re.compile(rf"(?:{rx.pattern})[\s,.:]*$", re.IGNORECASE) if rx else None
        self.places = {w.lower() for w in cues.places}
        self.organisation_words = {w.lower() for w in cues.organisation_words}

    def english(self, word: str) -> bool:
        """Whether some form of the word is an English word the spaCy model knows."""
        return any(form in self.rules.lexicon for form in base_forms(word.lower()))

    def find(self, text: str, doc: Any = None) -> list[Span]:
        """PERSON spans for names in entities of other labels, in lists, and as given name + surname."""
        spans: list[Span] = []
        places: list[tuple[int, int]] = []
        for ent in getattr(doc, "ents", ()):
            if ent.label_ in _PLACES:
                places.append((ent.start_char, ent.end_char))
            if ent.label_ in _MISREAD:
                spans.extend(self._misread(text, ent.start_char, ent.end_char, ent.label_))
        spans.extend(self._lists(text))
        spans.extend(s for s in self._pairs(text) if not any(a < s.end and s.start < b for a, b in places))
        return spans

    # -- entities of other labels --------------------------------------------------------------
    def _misread(self, text: str, start: int, end: int, label: str) -> Iterable[Span]:
        pos = start
        for brk in [*_PART_BREAK.finditer(text, start, end), None]:
            stop = brk.start() if brk else end
            part = text[pos:stop]
            a = pos + len(part) - len(part.lstrip())
            b = pos + len(part.rstrip())
            pos = brk.end() if brk else end
            if b > a and self._misread_name(text, a, b, label):
                yield Span("PERSON", a, b, 0.6)

    def _misread_name(self, text: str, start: int, end: int, label: str) -> bool:
        words = self._name_words(text[start:end])
        if not words:
            return False
        if self.cue_rx is not None and self.cue_rx.search(text, 0, start):
            return True
        if label in _TITLES:
            return False
        full = [w for w in words if len(w.rstrip(".")) > 1]
        first = full[0].lower()
        if " ".join(w.lower() for w in words) in self.names.places:
            return False
        if len(full) == 1:
            before = re.findall(r"[^\W\d_]+", text[max(0, start - 40) : start])[-1:]
            if label == "PRODUCT" or (
                label in _PLACES and (self.english(first) or (before and before[0].lower() in self.places))
            ):
                return False
            return first in self.names.given
        if first in self.names.given and all(self._surname_like(w) for w in full[1:]):
            return True
        return label not in _PLACES and not any(self.english(w) for w in full)

    def _name_words(self, part: str) -> list[str]:
        """The words of a part that is shaped like a name (capitalised words and initials), else []."""
        if not _NAME_SHAPE.match(part):
            return []
        words = part.split()
        full = [w for w in words if len(w.rstrip(".")) > 1]
        if not full or any(not w[0].isupper() for w in words):
            return []
        for w in full:
            low = w.rstrip(".").lower()
            if w.isupper() or self.rules.is_common_word(low) or low in self.organisation_words:
                return []
        return words

    def _surname_like(self, word: str) -> bool:
        low = word.rstrip(".").lower()
        return low in self.names.surnames or low in self.names.given or not self.english(low)

    # -- lists and pairs -----------------------------------------------------------------------
    def _lists(self, text: str) -> Iterable[Span]:
        """Every item of "A, B and C" when each is name-like and one of them is in the name lists."""
        for m in _LIST.finditer(text):
            before = re.findall(r"[^\W\d_]+", text[max(0, m.start() - 40) : m.start()])[-1:]
            if before and before[0].lower() in self.places:
                continue
            items = list(_LIST_ITEM.finditer(text, m.start(), m.end()))
            words = [w.lower() for i in items for w in i.group().split()]
            if len(items) < 2 or any(not self._list_word(w) for w in words):
                continue
            if any(w in self.names.given or w in self.names.surnames for w in words):
                yield from (Span("PERSON", i.start(), i.end(), 0.6) for i in items)

    def _list_word(self, low: str) -> bool:
        if self.rules.is_common_word(low) or low in self.organisation_words or low in self.names.places:
            return False
        return low in self.names.given or low in self.names.surnames or not self.english(low)

    def _pairs(self, text: str) -> Iterable[Span]:
        """A given name and a surname said together, in any case ("patricia desrosiers")."""
        pos = 0
        while (m := _PAIR.search(text, pos)) is not None:
            pos = m.start(3)  # the surname may be the given name of the next pair
            given, initial, surname = m.group(1), m.group(2), m.group(3)
            g, s = given.lower(), surname.lower()
            if initial and not given[0].isupper():
                continue
            if given[0].isupper() != surname[0].isupper():
                continue  # "Mary said": a capitalised name then a lower-case word is no pair
            if (
                g not in self.names.given
                or self.rules.is_common_word(g)
                or self.rules.is_common_word(s)
                or s in self.organisation_words
                or not (s in self.names.surnames or not self.english(s))
                or (self.english(g) and self.english(s))
                or f"{g} {s}" in self.names.places
            ):
                continue
            before = re.findall(r"[^\W\d_]+", text[max(0, m.start() - 40) : m.start()])[-1:]
            if before and before[0].lower() in self.places:
                continue
            yield Span("PERSON", m.start(), m.end(), 0.6)


# "Speech..." marks it as one of the speech rules, whose verdicts the redactor does not check again.
_RECOGNIZER_NAME = "SpeechNameRecognizer"


class NameRecognizer(EntityRecognizer):
    """Presidio recogniser over the spaCy Doc of the analysis: names the NER misread or missed."""

    def __init__(self, finder: NameFinder) -> None:
        self.finder = finder
        super().__init__(supported_entities=["PERSON"], name=_RECOGNIZER_NAME, supported_language="en")

    def load(self) -> None:
        """Nothing to load: the name lists are read already."""

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[RecognizerResult]:
        """PERSON spans the finder takes from `text` and its spaCy Doc."""
        if entities and "PERSON" not in entities:
            return []
        meta = {
            RecognizerResult.RECOGNIZER_NAME_KEY: _RECOGNIZER_NAME,
            RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
        }
        doc = getattr(nlp_artifacts, "tokens", None)
        return [
            RecognizerResult(s.entity_type, s.start, s.end, s.score, recognition_metadata=dict(meta))
            for s in _distinct(self.finder.find(text, doc))
        ]


def _distinct(spans: Sequence[Span]) -> list[Span]:
    seen: set[tuple[int, int]] = set()
    out = []
    for s in spans:
        if (s.start, s.end) not in seen:
            seen.add((s.start, s.end))
            out.append(s)
    return out
