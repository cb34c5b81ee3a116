"""Speech recognisers and their rule files: pure logic over text, no NLP model."""

from __future__ import annotations

from pathlib import Path

import pytest

from qa_service.errors import ConfigError
from qa_service.stages import recognizers as speech


@pytest.fixture(scope="module")
def rules() -> speech.SpeechRules:
    return speech.load_rules([speech.PACKAGED_RULES])


def _found(rules: speech.SpeechRules, text: str) -> list[tuple[str, str]]:
    return [(s.entity_type, text[s.start : s.end]) for s in rules.scan(text)]


@pytest.mark.parametrize(
    ("digits", "ok"),
    [
        ("4111111111111111", True),
        ("4111111111111112", False),
        ("79927398713", True),
        ("0", False),
        ("12a4", False),
    ],
)
def test_luhn(digits: str, ok: bool) -> None:
    assert speech.luhn_ok(digits) is ok


@pytest.mark.parametrize(
    ("spoken", "digits"),
    [
        ("four one five", "415"),
        ("oh nine twenty eight", "0928"),
        ("nineteen eighty seven", "1987"),
        ("double five triple two", "55222"),
        ("seven seven three", "773"),
        ("five hundred", "500"),
        ("5 5 5 zero 1", "55501"),
    ],
)
def test_spoken_digits(rules: speech.SpeechRules, spoken: str, digits: str) -> None:
    toks = [t for t in rules.vocab.tokens(spoken) if t.kind in ("digits", "num")]
    assert rules.vocab.spoken_digits(toks) == digits


SCANS = [
    (
        "four one five, five five five, zero one three two",
        ("PHONE_NUMBER", "four one five, five five five, zero one three two"),
    ),
    ("4111-1111-1111-1111", ("CREDIT_CARD", "4111-1111-1111-1111")),
    (
        "card four one one one one one one one one one one one one one one two",
        ("CREDIT_CARD", "four one one one one one one one one one one one one one one two"),
    ),  # no Luhn
    (
        "X-ray Romeo four seven one two nine eight three",
        ("ID", "X-ray Romeo four seven one two nine eight three"),
    ),
    ("N W one, four R Y", ("LOCATION", "N W one, four R Y")),
    ("david dot okafor at example dot com", ("EMAIL_ADDRESS", "david dot okafor at example dot com")),
    (
        "jane underscore smith at mail dot co dot uk",
        ("EMAIL_ADDRESS", "jane underscore smith at mail dot co dot uk"),
    ),
    ("the third of July nineteen seventy nine", ("DATE_TIME", "the third of July nineteen seventy nine")),
    ("Eleventh of November, nineteen ninety two", ("DATE_TIME", "Eleventh of November, nineteen ninety two")),
    ("August 8, 1988", ("DATE_TIME", "August 8, 1988")),
    ("my surname is okafor", ("PERSON", "okafor")),
    ("V-I-O-L-E-T. My last name", ("ID", "V-I-O-L-E-T")),  # a capital O among letters is a letter
    (
        "Bristol, B-F-8, 1-D-H, Sierra Tango uniform, 6-6-1-4-0-9.",
        ("ID", "B-F-8, 1-D-H, Sierra Tango uniform, 6-6-1-4-0-9"),
    ),
    (
        "the new one is 5 3 6 2 2 4 4 1 8, social security",
        ("ID", "5 3 6 2 2 4 4 1 8"),
    ),  # context must come first
    ("my social security number is 5 3 6 2 2 4 4 1 8", ("US_SSN", "5 3 6 2 2 4 4 1 8")),
    ("twenty two maple avenue", ("LOCATION", "twenty two maple avenue")),
]


@pytest.mark.parametrize(("text", "expected"), SCANS, ids=[s[0][:30] for s in SCANS])
def test_scanner_finds(rules: speech.SpeechRules, text: str, expected: tuple[str, str]) -> None:
    assert expected in _found(rules, text)


@pytest.mark.parametrize(
    "text",
    [
        "the fee is six hundred and forty dollars",
        "the pass mark is sixty seven points",
        "it takes about twelve weeks",
        "I am calling about my visa",
        "we can meet at ten or eleven",
        "checklist at the office",
        "my name is on the form",
        "I have 3 children and 2 dogs",
        # Amounts said as quantities, however long, next to a unit or a word of money.
        "you need twenty four thousand five hundred dollars in savings",
        "the savings requirement is twenty four thousand five hundred",
        "that will be 24,500 in savings",
        "the fee is one thousand two hundred and fifty",
    ],
)
def test_scanner_leaves_ordinary_speech(rules: speech.SpeechRules, text: str) -> None:
    assert _found(rules, text) == []


@pytest.mark.parametrize(
    ("value", "specific"),
    [
        ("the 14th of March 1987", True),
        ("March 1987", True),
        ("14/03/1987", True),
        ("ninth, 1980", True),
        ("April ninth", False),  # a day and month alone is how policy dates are said
        ("the first of July", False),
        ("about twelve weeks", False),
        ("next week", False),
        ("today", False),
        ("July", False),
        ("three years", False),
        ("this morning", False),
    ],
)
def test_specific_dates(rules: speech.SpeechRules, value: str, specific: bool) -> None:
    assert rules.is_specific_date(value) is specific


def test_prompts_for_names_and_addresses_must_be_requests(rules: speech.SpeechRules) -> None:
    asked = rules.prompts_in("Thanks. Could you confirm your date of birth and phone number?")
    assert {p.entity for p in asked} == {"DATE_TIME", "PHONE_NUMBER"}
    # Answers to these take ordinary words, so a mere mention is not a question.
    assert rules.prompts_in("I will post it to your address and put your full name on it.") == []
    assert [p.kind for p in rules.prompts_in("What is your address")] == ["address"]
    # Numbers and dates are redacted only where they look like one: a mention is enough (no "?" needed).
    assert [p.kind for p in rules.prompts_in("and the expiry date")] == ["number"]


def test_statement_spans_follow_a_mention(rules: speech.SpeechRules) -> None:
    text = "The case number is 729, free free 1, 0, 5. Thanks."
    found = [(s.entity_type, text[s.start : s.end]) for s in rules.statement_spans(text)]
    assert ("ID", "729") in found and ("ID", "1, 0, 5") in found
    assert rules.statement_spans("The fee is 640 dollars and takes 12 weeks.") == []


def test_broken_rules_file_names_file_and_field(tmp_path: Path) -> None:
    bad = tmp_path / "extra.yaml"
    bad.write_text("sequences:\n  - entity: ID\n    score: 2.0\n    colour: red\n")
    with pytest.raises(ConfigError, match=r"extra\.yaml.*sequences\.0"):
        speech.load_rules([speech.PACKAGED_RULES, bad])
    bad.write_text("sequences: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        speech.load_rules([bad])
    with pytest.raises(ConfigError, match="cannot read"):
        speech.load_rules([tmp_path / "missing.yaml"])


def test_deployment_file_extends_packaged_rules(tmp_path: Path, rules: speech.SpeechRules) -> None:
    extra = tmp_path / "acme.yaml"
    extra.write_text(
        "vocabulary:\n  common_words: [zorbin]\n"
        "prompts:\n  - entity: ID\n    kind: number\n    phrases: ['loyalty code']\n"
        "patterns:\n  - name: acme_member\n    entity: ID\n    regex: '\\bACM-\\d{6}\\b'\n    score: 0.9\n"
    )
    combined = speech.load_rules([speech.PACKAGED_RULES, extra])
    assert combined.is_common_word("zorbin") and not rules.is_common_word("zorbin")
    assert [p.entity for p in combined.prompts_in("What is your loyalty code please?")] == ["ID"]
    assert rules.prompts_in("What is your loyalty code please?") == []
    member = [r for r in combined.recognizers if r.name == "speech_acme_member"]
    assert member and member[0].analyze("member ACM-123456 here", ["ID"])[0].start == 7
    # Packaged rules are all still there.
    assert len(combined.source.sequences) == len(rules.source.sequences)


def test_bad_pattern_regex_is_a_config_error(tmp_path: Path) -> None:
    extra = tmp_path / "bad.yaml"
    extra.write_text("patterns:\n  - name: broken\n    entity: ID\n    regex: '(unclosed'\n    score: 0.5\n")
    with pytest.raises(ConfigError, match="broken"):
        speech.load_rules([extra])


def test_offline_tld_extractor_uses_snapshot() -> None:
    ext = speech.offline_tld_extractor()
    assert ext.suffix_list_urls == ()
    assert ext("mail.example.co.uk").suffix == "co.uk"


def test_speech_recognizer_plugs_into_presidio(rules: speech.SpeechRules) -> None:
    from presidio_analyzer import RecognizerResult

    rec = speech.SpeechRecognizer(rules)
    text = "my number is four one five, five five five, zero one three two"
    (hit,) = rec.analyze(text, ["PHONE_NUMBER"])
    assert isinstance(hit, RecognizerResult)
    assert (hit.entity_type, text[hit.start : hit.end]) == (
        "PHONE_NUMBER",
        "four one five, five five five, zero one three two",
    )
    assert rec.analyze(text, ["EMAIL_ADDRESS"]) == []


def test_number_words_in_a_rules_file_are_a_clear_error(tmp_path: Path) -> None:
    # Number words are defined once, in qa_service.spoken; a file that still lists them says so.
    old = tmp_path / "old.yaml"
    old.write_text("vocabulary:\n  digits: {niner: '9'}\n  repeaters: {double: 2}\n  months: [sept]\n")
    removed = r"old\.yaml.*vocabulary\.digits, vocabulary\.repeaters.*spoken\.py"
    with pytest.raises(ConfigError, match=removed):
        speech.load_rules([speech.PACKAGED_RULES, old])
