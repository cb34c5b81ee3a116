"""Names the small spaCy model misreads or misses: the name finder on its own, then in the redactor."""

from __future__ import annotations

import importlib
from types import SimpleNamespace

import pytest

from qa_service.errors import ConfigError
from qa_service.stages import names
from qa_service.stages.names import NameFinder, NameLists, load_name_lists
from qa_service.stages.recognizers import PACKAGED_RULES, load_rules
from qa_service.stages.redact import PresidioRedactor, load_redactor

_LISTS = NameLists(
    given=frozenset({"sofia", "ewan", "patricia", "jordan", "mark", "grace", "lane", "france", "scott"}),
    surnames=frozenset({"lima", "richards", "becker", "vasquez", "brooks", "lane"}),
    places=frozenset({"france", "jordan"}),
)
# Ordinary English words, as the spaCy model's lemmatizer would know them.
_LEXICON = frozenset(
    {
        "home",
        "office",
        "embassy",
        "period",
        "harbour",
        "lane",
        "relocation",
        "rapid",
        "cycle",
        "solution",
        "mark",
        "grace",
        "report",
        "visa",
        "worker",
        "skilled",
    }
)


@pytest.fixture(scope="module")
def finder() -> NameFinder:
    rules = load_rules([PACKAGED_RULES], with_recognizers=False)
    rules.lexicon = _LEXICON
    return NameFinder(rules, _LISTS)


def _doc(text: str, *ents: tuple[str, str]) -> SimpleNamespace:
    """A stand-in for the spaCy Doc: only its entities (label, text) are read."""
    found = []
    for label, span in ents:
        at = text.index(span)
        found.append(SimpleNamespace(label_=label, start_char=at, end_char=at + len(span)))
    return SimpleNamespace(ents=found)


def _found(finder: NameFinder, text: str, *ents: tuple[str, str]) -> list[str]:
    return sorted({text[s.start : s.end] for s in finder.find(text, _doc(text, *ents))})


@pytest.mark.parametrize(
    ("text", "ents", "expected"),
    [
        # a given name from the lists and a surname: the NER said organisation
        ("Please change it to Sofia Lima", [("ORG", "Sofia Lima")], ["Sofia Lima"]),
        ("A tribute to Ewan Richards", [("ORG", "Ewan Richards")], ["Ewan Richards"]),
        # two capitalised words, neither an English word
        ("Tomomi Nishiyama lives at 8 Rua do Arenque", [("ORG", "Tomomi Nishiyama")], ["Tomomi Nishiyama"]),
        # a name after a cue, whatever the NER called it
        ("I spoke with Mr Okafor yesterday", [("ORG", "Okafor")], ["Okafor"]),
        ("remove my son Tadzio from the policy", [("ORG", "Tadzio")], ["Tadzio"]),
        # several names in one entity, a possessive cut off
        ("Usamov and Becker were engineers", [("ORG", "Usamov and Becker")], ["Becker", "Usamov"]),
        ("verses from Sofia Lima's tales", [("GPE", "Sofia Lima's")], ["Sofia Lima"]),
        # a one-word given name the NER called a place, where no place word stands before it
        ("Why is Scott so impulsive?", [("GPE", "Scott")], ["Scott"]),
    ],
)
def test_misread_entities_are_names(finder: NameFinder, text: str, ents: list, expected: list[str]) -> None:
    assert _found(finder, text, *ents) == expected


@pytest.mark.parametrize(
    ("text", "ents"),
    [
        ("I have a letter from the Home Office", [("ORG", "the Home Office")]),
        ("I have a letter from the Home Office", [("ORG", "Home Office")]),
        ("Call the Freedonia embassy", [("GPE", "Freedonia")]),
        ("Call the Freedonia Embassy", [("ORG", "Freedonia Embassy")]),
        ("Thank you for calling Harbour Lane Relocation", [("ORG", "Harbour Lane Relocation")]),
        ("It came from Rapid Cycle Solutions", [("ORG", "Rapid Cycle Solutions")]),
        ("She works at Xignite Inc", [("ORG", "Xignite Inc")]),
        ("I am flying to Jordan next week", [("GPE", "Jordan")]),
        ("France is lovely in spring", [("GPE", "France")]),  # a country, though a given name too
        ("We moved here from Buenos Aires", [("GPE", "Buenos Aires")]),  # a place needs a given name
        ("The fee is 1,200 pounds", [("MONEY", "1,200 pounds")]),
        ("I paid 1200 at the NHS", [("ORG", "NHS")]),
        ("The Skilled Worker visa", [("WORK_OF_ART", "The Skilled Worker")]),  # titles only after a cue
    ],
)
def test_organisations_places_and_amounts_stay(finder: NameFinder, text: str, ents: list) -> None:
    assert _found(finder, text, *ents) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("our founders were Kónya, Becker and Vasquez.", ["Becker", "Kónya", "Vasquez"]),
        ("follow up with patricia desrosiers next week", ["patricia desrosiers"]),
        ("maybe it is under Sofia B Lima", ["Sofia B Lima"]),
        ("Jordan Brooks called again", ["Jordan Brooks"]),
    ],
)
def test_lists_and_pairs_without_the_ner(finder: NameFinder, text: str, expected: list[str]) -> None:
    assert _found(finder, text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "the grace period is thirty days",  # a given name before an English word
        "mark lane is closed",  # two English words
        "we fly to Paris, Lyon and Nice",  # a list of places after "to"
        "Home, Office and Embassy",  # English words
        "I told mark about it",
    ],
)
def test_ordinary_words_are_no_pair_or_list(finder: NameFinder, text: str) -> None:
    assert _found(finder, text) == []


def test_name_lists_come_from_the_installed_package() -> None:
    lists = load_name_lists()
    assert {"sofia", "ewan", "patricia"} <= lists.given
    assert {"lima", "richards"} <= lists.surnames
    assert {"france", "jordan"} <= lists.places


def test_missing_name_package_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def no_faker(name: str, package: str | None = None):  # type: ignore[no-untyped-def]
        if name.startswith("faker"):
            raise ImportError(name)
        return real(name, package)

    monkeypatch.setattr(names.importlib, "import_module", no_faker)
    with pytest.raises(ConfigError, match="Faker"):
        load_name_lists()


# -- in the redactor, with the real spaCy model --------------------------------------------------


@pytest.fixture(scope="module")
def redactor() -> PresidioRedactor:
    return load_redactor()


def _redacted(redactor: PresidioRedactor, text: str) -> str:
    out = text
    for s in sorted(redactor.find_spans(text), key=lambda s: -s.start):
        out = out[: s.start] + f"<{s.entity_type}>" + out[s.end :]
    return out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("my name is jordan brooks", "my name is <PERSON>"),
        (
            "follow up with patricia desrosiers in a couple of months",
            "follow up with <PERSON> in a couple of months",
        ),
        (
            "The name in the account is not correct, please change it to Sofia Lima",
            "The name in the account is not correct, please change it to <PERSON>",
        ),
        ("Tomomi Nishiyama lives at 86036 Rua do Arenque 1634, Goiânia", "<PERSON> lives at"),
    ],
)
def test_redactor_takes_misread_names(redactor: PresidioRedactor, text: str, expected: str) -> None:
    assert _redacted(redactor, text).startswith(expected)


@pytest.mark.parametrize(
    "text",
    [
        "I have a letter from the Home Office about my visa.",
        "Is the Freedonia embassy open on Saturdays?",
        "The application fee is 1,420 pounds and the pass mark is 65 points.",
        "I am flying to Jordan next week.",
    ],
)
def test_redactor_keeps_organisations_places_and_amounts(redactor: PresidioRedactor, text: str) -> None:
    assert "<PERSON>" not in _redacted(redactor, text)


def test_a_name_taken_back_is_redacted_again_in_the_same_text(redactor: PresidioRedactor) -> None:
    text = "Magnus spent a year at Simpletuition as the assistant to Magnus Poulsen"
    assert _redacted(redactor, text).count("<PERSON>") == 2
