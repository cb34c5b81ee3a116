"""Spoken numbers: words and digits to values with token spans, and values back to words."""

from __future__ import annotations

import pytest

from qa_service.spoken import canonical_unit, find_numbers, number_to_words, parse_digits, read_digits


def _found(text: str) -> list[tuple[str, float, str | None]]:
    tokens = text.split()
    return [(" ".join(tokens[n.start:n.end]), n.value, n.unit) for n in find_numbers(tokens)]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("sixty seven points", [("sixty seven", 67, "point")]),
        ("five hundred and ninety five dollars", [("five hundred and ninety five", 595, "dollar")]),
        ("six hundred forty", [("six hundred forty", 640, None)]),
        ("$ 640", [("$ 640", 640, "dollar")]),
        ("640 dollars", [("640", 640, "dollar")]),
        ("1,200", [("1,200", 1200, None)]),
        ("two thousand and five", [("two thousand and five", 2005, None)]),
        ("one hundred percent chance", [("one hundred", 100, "percent")]),
        ("a hundred bucks", [("a hundred", 100, "dollar")]),
        ("twelve hundred", [("twelve hundred", 1200, None)]),
        ("sixty-seven", [("sixty-seven", 67, None)]),
        ("sixty - seven", [("sixty - seven", 67, None)]),
        ("1.5 million", [("1.5 million", 1_500_000, None)]),
        ("67 %", [("67", 67, "percent")]),
        ("ten per cent", [("ten", 10, "percent")]),
        ("three years", [("three", 3, "year")]),
        ("nineteen eighty seven", [("nineteen eighty seven", 1987, None)]),
        ("twenty twenty six", [("twenty twenty six", 2026, None)]),
        ("nineteen oh five", [("nineteen oh five", 1905, None)]),
        ("fourteen weeks", [("fourteen", 14, "week")]),
        ("zero", [("zero", 0, None)]),
        ("one million two hundred thousand", [("one million two hundred thousand", 1_200_000, None)]),
        ("£ 30", [("£ 30", 30, "pound")]),
    ],
)
def test_single_numbers(text: str, expected: list[tuple[str, float, str | None]]) -> None:
    assert _found(text) == expected


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("four one five , five five five", [4, 1, 5, 5, 5, 5]),  # digit by digit stays digit by digit
        ("we have sixty six and sixty five", [66, 65]),
        ("between 595 and 640", [595, 640]),
        ("sixty five sixty six", [65, 66]),  # not a year: sixty is not a century
        ("oh I see", []),
        ("a lot of people and one more", [1]),
        ("the hundred", []),  # "hundred" without a count is not a number here
        ("first second third", []),
    ],
)
def test_sequences(text: str, values: list[float]) -> None:
    assert [n.value for n in find_numbers(text.split())] == values


def test_spans_refer_to_original_tokens_with_unit_end() -> None:
    tokens = ["fee", "is", "six", "hundred", "and", "forty", "dollars", "now"]
    (n,) = find_numbers(tokens)
    assert (n.start, n.end, n.unit_end) == (2, 6, 7)
    assert n.text_value == "640"


@pytest.mark.parametrize(
    ("token", "value"),
    [("640", 640), ("1,200", 1200), ("2.5", 2.5), ("12,34", None), ("x1", None), ("", None)],
)
def test_parse_digits(token: str, value: float | None) -> None:
    assert parse_digits(token) == value


@pytest.mark.parametrize(
    ("value", "words"),
    [(0, "zero"), (7, "seven"), (19, "nineteen"), (40, "forty"), (67, "sixty seven"),
     (100, "one hundred"), (595, "five hundred ninety five"), (2005, "two thousand five"),
     (1_200_000, "one million two hundred thousand")],
)
def test_number_to_words_round_trips(value: int, words: str) -> None:
    assert number_to_words(value) == words
    assert [n.value for n in find_numbers(words.split())] == [value]


@pytest.mark.parametrize(("word", "unit"), [("Dollars", "dollar"), ("$", "dollar"), ("USD", "dollar"),
                                            ("years", "year"), ("%", "percent"), ("Parcels", "parcel")])
def test_canonical_unit(word: str, unit: str) -> None:
    assert canonical_unit(word) == unit


@pytest.mark.parametrize("text, values", [
    ("the fee is 300 and 80 euros", [380]),  # "three hundred and eighty" as a recogniser writes it
    ("600 and 40 dollars", [640]),
    ("1,200 and 50", [1250]),
    ("2,000 and 5", [2005]),
    ("300 and 400 people", [300, 400]),  # not a smaller place: two numbers
    ("pass mark 60 and 7 points", [60, 7]),  # 60 is not a round hundred
    ("300 or 80", [300, 80]),
])
def test_recogniser_split_compounds_join(text: str, values: list[int]) -> None:
    assert [n.value for n in find_numbers(text.split())] == values


@pytest.mark.parametrize(
    ("words", "digits"),
    [
        ("four one five", "415"),
        ("oh nine twenty eight", "0928"),
        ("nought seven nil o", "0700"),  # zero as read out, never in a quantity
        ("twenty oh five", "2005"),
        ("nineteen eighty seven", "1987"),
        ("double five triple 2", "55222"),
        ("five hundred", "500"),
        ("one hundred five", "105"),
        ("three thousand", "3000"),
    ],
)
def test_read_digits_as_an_identifier_is_read_out(words: str, digits: str) -> None:
    assert read_digits(words.split()) == digits


def test_zero_as_read_out_is_no_quantity() -> None:
    # "o", "nought" and "nil" are zero only when digits are read out one by one.
    assert find_numbers("nought".split()) == [] and find_numbers("nil points".split()) == []
