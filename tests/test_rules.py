"""Loading rules: valid files load with their hash; broken files name the file, the field and the line."""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import pytest

from qa_service.errors import ConfigError, RulesError
from qa_service.rules.load import (
    MAX_DEPTH,
    RulesFileError,
    check_file,
    explain,
    load_policy_pack,
    load_rubric,
)
from qa_service.rules.schema import NumberFact, TermFact

DATA = Path(__file__).parent / "data" / "rules"


def test_valid_rubric_loads_with_hash_and_text() -> None:
    path = DATA / "courier-support.yaml"
    rubric = load_rubric(path)
    assert rubric.id == "courier-support"
    assert rubric.version == "3.1"
    assert rubric.sha256 == hashlib.sha256(path.read_text().encode()).hexdigest()
    assert rubric.text == path.read_text()
    assert rubric.source == "courier-support.yaml"
    by_id = {c.id: c for c in rubric.criteria}
    assert by_id["account_check"].auto_fail is True
    assert by_id["address_consent"].after == "account_check"
    assert by_id["customs_explained"].applies_when is not None
    assert by_id["tracking"].patterns[0][0] == {"LEMMA": "track"}
    assert by_id["opening"].within_seconds == 20
    assert [p.id for p in rubric.prohibited] == ["promise_delivery_date", "undervalue"]


def test_valid_policy_pack_loads_with_dates_and_kinds() -> None:
    pack = load_policy_pack(DATA / "parcel-policy.yaml")
    assert pack.version == "2026-10-01"  # YAML reads it as a date; it is kept as text
    limit, storage, fax = pack.facts
    assert isinstance(limit, NumberFact) and isinstance(fax, TermFact)
    assert limit.current.value == 150 and limit.current.since == date(2026, 9, 1)
    assert [o.until for o in limit.superseded] == [date(2026, 8, 31), date(2025, 12, 31)]
    assert storage.window == 8
    assert fax.since == date(2026, 4, 1)


def test_yaml_text_loads_like_a_file_and_hash_follows_the_text() -> None:
    text = (DATA / "courier-support.yaml").read_text()
    a = load_rubric(text, name="inline.yaml")
    b = load_rubric(text.replace("pass_mark: 75", "pass_mark: 70"))
    assert a.source == "inline.yaml" and b.source == "<text>"
    assert a.sha256 != b.sha256
    assert b.pass_mark == 70


@pytest.mark.parametrize(
    ("file", "loader", "where", "what"),
    [
        ("broken-points.yaml", load_rubric, "broken-points.yaml:13: criteria[1].points",
         "valid number"),
        ("broken-pattern.yaml", load_rubric, "broken-pattern.yaml:10: criteria[0].patterns[0]",
         "invalid spaCy token pattern"),
        ("broken-unknown-key.yaml", load_rubric, "broken-unknown-key.yaml:9: criteria[0].auto_fial",
         "unknown field"),
        ("broken-after.yaml", load_rubric, "broken-after.yaml", "loops back"),
        ("broken-empty-criterion.yaml", load_rubric, "broken-empty-criterion.yaml:5: criteria[0]",
         "at least one of `phrases` or `patterns`"),
        ("broken-yaml.yaml", load_rubric, "broken-yaml.yaml", "not valid YAML"),
        ("broken-duplicate-key.yaml", load_rubric, "broken-duplicate-key.yaml:4", "repeated key 'pass_mark'"),
        ("broken-fact-dates.yaml", load_policy_pack, "broken-fact-dates.yaml:4: facts[0]",
         "must be before current.since"),
        ("broken-fact-kind.yaml", load_policy_pack, "broken-fact-kind.yaml:4: facts[0]", "'number', 'term'"),
        ("broken-fact-date.yaml", load_policy_pack, "broken-fact-date.yaml:8", "day is out of range"),
    ],
)
def test_broken_files_name_file_field_and_line(file: str, loader, where: str, what: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RulesError) as caught:
        loader(DATA / file)
    message = str(caught.value)
    assert message.startswith(where), message
    assert what in message, message
    assert isinstance(caught.value, ConfigError)


def test_missing_required_fields_are_errors_not_defaults() -> None:
    with pytest.raises(RulesFileError) as caught:
        load_rubric("id: r\nversion: '1'\ncriteria:\n  - {id: a, title: A, points: 5, phrases: [hi]}\n")
    paths = {p.path for p in caught.value.problems}
    assert paths == {"pass_mark", "criteria[0].speaker"}
    assert all(p.message == "required field is missing" for p in caught.value.problems)


HEAD = "id: r\nversion: '1'\npass_mark: 50\n"
ONE = "{id: a, title: A, speaker: agent, points: 1, phrases: [x]}"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        (HEAD.replace("50", "120") + f"criteria: [{ONE}]", "pass_mark"),
        (HEAD + f"criteria: [{ONE.replace('points: 1', 'points: -1')}]", "criteria[0].points"),
        (HEAD + f"criteria: [{ONE.replace('points: 1', 'points: 0')}]", "all are 0"),
        (HEAD + "criteria: []", "criteria"),
        (HEAD + f"criteria: [{ONE}, {ONE}]", "repeated: a"),
        (HEAD + f"criteria: [{ONE.replace('}', ', after: z}')}]", "unknown criterion 'z'"),
        # YAML reads a bare `no` as false, which is not a phrase
        (HEAD + f"criteria: [{ONE.replace('[x]', '[no]')}]", "criteria[0].phrases[0]"),
        (HEAD + f"criteria: [{ONE.replace('agent', 'Agent')}]", "criteria[0].speaker"),
        (HEAD + "criteria: [" + ONE.replace("[x]", "[x, '...']") + "]",
         "criteria[0].phrases[1]: a phrase needs"),
        (HEAD + f"criteria: [{ONE}]\nprohibited: [{{id: p, title: P, speaker: agent, phrases: [' ']}}]",
         "prohibited[0].phrases[0]"),
        ("- just\n- a list\n", "YAML mapping"),
    ],
)
def test_rubric_rules(text: str, fragment: str) -> None:
    with pytest.raises(RulesError) as caught:
        load_rubric(text)
    assert fragment in str(caught.value)


def test_explain_lists_every_problem_with_lines() -> None:
    bad = (DATA / "broken-points.yaml").read_text().replace("speaker: agent\n    points: 10",
                                                             "speaker: robot\n    points: 10")
    with pytest.raises(RulesError) as caught:
        load_rubric(bad, name="two.yaml")
    report = explain(caught.value)
    lines = report.splitlines()
    assert lines[0] == "two.yaml: 2 problems"
    assert lines[1].startswith("  line 7: criteria[0].speaker:")
    assert lines[2].startswith("  line 13: criteria[1].points:")


def test_check_file_tells_rubric_from_policy_pack() -> None:
    assert check_file(DATA / "courier-support.yaml").endswith("6 criteria, 2 prohibited items, ok")
    assert check_file(DATA / "parcel-policy.yaml").endswith("3 facts, ok")
    with pytest.raises(RulesError):
        check_file(DATA / "broken-fact-kind.yaml")


def test_unreadable_file_is_a_rules_error(tmp_path: Path) -> None:
    with pytest.raises(RulesError, match="missing.yaml: cannot read file"):
        load_rubric(tmp_path / "missing.yaml")


def test_text_is_never_read_as_a_path(tmp_path: Path) -> None:
    path = tmp_path / "rubric.yaml"
    path.write_text((DATA / "courier-support.yaml").read_text())
    assert load_rubric(path).id == "courier-support"  # a Path is a file to read
    for text in (str(path), f"  {path}  ", str(tmp_path / "missing.json")):
        with pytest.raises(RulesError) as caught:
            load_rubric(text)
        # Read as YAML text: a lone string, not a mapping; nothing says whether such a file exists.
        assert "YAML mapping" in str(caught.value) and "cannot read" not in str(caught.value)
    with pytest.raises(RulesError, match="YAML mapping"):
        load_policy_pack(str(DATA / "parcel-policy.yaml"))


def test_nesting_deeper_than_the_limit_is_refused_before_parsing() -> None:
    at_limit = "x: " + "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1)
    with pytest.raises(RulesFileError) as caught:
        load_rubric(at_limit)
    assert "nested" not in str(caught.value)  # parsed, then refused by the schema
    block = "id: r\ncriteria:\n" + "".join("  " * i + "- \n" for i in range(1, 400))
    for text, line in (("[" * 100_000 + "]" * 100_000, 1), ("x: " + "{a: " * 3000 + "1" + "}" * 3000, 1),
                       (block, MAX_DEPTH + 2)):  # depth d starts on line d + 1
        with pytest.raises(RulesFileError) as caught:
            load_rubric(text, name="deep.yaml")
        assert str(caught.value) == f"deep.yaml:{line}: nested more than {MAX_DEPTH} levels deep"


@pytest.mark.parametrize("text", ["\x1f", "id: r\x00\n", "a: [1,\n"])
def test_text_that_is_not_yaml_is_a_rules_error(text: str) -> None:
    with pytest.raises(RulesFileError, match="not valid YAML"):
        load_rubric(text)


@pytest.mark.parametrize(("line", "message"), [
    ("pass_mark: " + "9" * 5000, "not a valid value: a number of more than 4300 digits"),
    ("since: 2026-13-01", "not a valid value: month must be in 1..12"),
])
def test_values_yaml_cannot_read_name_their_line(line: str, message: str) -> None:
    text = "id: r\nversion: '1'\n" + line + "\ncriteria: []\n"
    with pytest.raises(RulesFileError) as caught:
        load_rubric(text, name="r.yaml")
    assert str(caught.value) == f"r.yaml:3: {message}"
