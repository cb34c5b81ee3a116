"""Chinese numerals read as numbers: the same reader (`find_numbers`) as English words and digits."""

from __future__ import annotations

import pytest

from qa_service.spoken import canonical_unit, find_numbers, read_number


def _chars(text: str) -> list[tuple[float, str | None]]:
    """Numbers in text tokenised as matching does it: a token per Chinese character, digits together."""
    import re

    tokens = re.findall(r"[0-9][0-9,.]*[0-9]|[0-9]|[A-Za-z]+|\S", text)
    return [(n.value, n.unit) for n in find_numbers(tokens)]


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("六百四十美元", 640, "dollar"),
        ("两万四千五百", 24500, None),
        ("一千零五十", 1050, None),
        ("一百零五", 105, None),
        ("十二", 12, None),
        ("十", 10, None),
        ("二十万", 200_000, None),
        ("一百一十", 110, None),
        ("3千", 3000, None),
        ("1.5万", 15000, None),
        ("一点五万", 15000, None),
        ("三点五", 3.5, None),
        ("2万4千5", 24500, None),  # a digit after a scale is the next place down
        ("两万四", 24000, None),
        ("一百五", 150, None),
        ("一亿二千万", 120_000_000, None),
        ("百分之五", 5, "percent"),
        ("百分之二十五", 25, "percent"),
        ("二零二四", 2024, None),  # digits one by one
        ("壹仟贰佰元", 1200, "yuan"),  # financial numerals
        ("640美元", 640, "dollar"),
        ("五百欧元", 500, "euro"),
        ("三个月", 3, "month"),
        ("两周", 2, "week"),
        ("十分钟", 10, "minute"),
        ("八十分", 80, "point"),
        ("零", 0, None),
        ("兩萬四千五百歐元", 24500, "euro"),  # traditional characters, as a recogniser may write them
        ("一點五億", 150_000_000, None),
    ],
)
def test_chinese_numbers(text: str, value: float, unit: str | None) -> None:
    assert _chars(text) == [(value, unit)]
    assert read_number(text) == (value, unit)  # the whole text as one token reads the same


@pytest.mark.parametrize(
    "text",
    [
        "我们有一些客户",  # 一些: some
        "请稍等一下",  # 一下: a moment
        "我一定帮您",  # 一定: surely
        "万一有问题",  # 万一: in case
        "千万不要传真",  # 千万: by all means
        "这是唯一的办法",  # 唯一: the only
        "便宜一点",  # 一点: a little
        "服务十分好",  # 十分: very
        "第一步",  # an ordinal
        "周一来",  # Monday
        "星期三",  # Wednesday
        "大概三四百",  # three or four hundred: no one value
        "一起去",
    ],
)
def test_words_that_are_not_numbers(text: str) -> None:
    assert _chars(text) == []


def test_a_number_inside_a_clause_has_its_token_span() -> None:
    tokens = list("申请费是六百四十美元，对吗")
    (number,) = find_numbers(tokens)
    assert "".join(tokens[number.start:number.end]) == "六百四十"
    assert "".join(tokens[number.end:number.unit_end]) == "美元" and number.unit == "dollar"
    # A whole clause as one whitespace token: the number is found inside it.
    (inside,) = find_numbers(["申请费是两万四千五百元吗"])
    assert (inside.value, inside.unit, inside.start, inside.end) == (24500, "yuan", 0, 1)


def test_a_lone_yi_counts_before_a_measure_word() -> None:
    assert _chars("一个问题") == [(1, None)] and _chars("一次") == [(1, None)]
    assert _chars("一美元") == [(1, "dollar")]


def test_2024_nian_is_a_date_and_san_nian_three_years() -> None:
    assert _chars("2024年") == [(2024, None)]
    assert _chars("三年") == [(3, "year")]


def test_chinese_units_meet_english_ones() -> None:
    assert canonical_unit("美元") == canonical_unit("dollars") == "dollar"
    assert canonical_unit("欧元") == canonical_unit("EUR") == "euro"
    assert canonical_unit("元") == "yuan"


@pytest.mark.parametrize("text", ["一些", "申请费", "六百四十美元吗", "三四百", ""])
def test_read_number_wants_exactly_one_number(text: str) -> None:
    assert read_number(text) is None


def test_english_is_read_as_before_beside_chinese() -> None:
    assert _chars("the fee is 640 dollars, 申请费是六百四十美元") == [(640, "dollar"), (640, "dollar")]
