"""A policy pack written in Chinese, checked end to end on Mandarin transcripts: numbers in Chinese
numerals (六百四十美元, 两万四千五百元, 2万4千5元) are read, a superseded one is an outdated quote."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from qa_service.intake import parse_transcript
from qa_service.pipeline import CallMeta, process_transcript
from qa_service.rules.load import load_policy_pack, load_rubric

DATA = Path(__file__).parent / "data" / "rules"
AFTER = date(2026, 7, 10)  # the new fee (700) in force
BEFORE = date(2026, 5, 2)  # the old fee (640) still in force


@pytest.fixture(scope="module")
def engines() -> Any:
    from qa_service.pipeline import load_engines
    from qa_service.settings import Settings

    return load_engines(Settings(), speech=False)


def _card(engines: Any, line: str, day: date) -> dict[str, Any]:
    turns = [
        {"speaker": "agent", "text": "您好，感谢您致电包裹桥，我是小林。"},
        {"speaker": "customer", "text": "你好，我想问一下签证的事。"},
        {"speaker": "agent", "text": line},
        {"speaker": "agent", "text": "还有什么可以帮您的吗？"},
    ]
    body = json.dumps({"turns": turns}, ensure_ascii=False).encode()
    transcript = parse_transcript(body, filename="zh.json")
    card = process_transcript(transcript, CallMeta("zh-1", "agent-lin", day),
                              load_rubric(DATA / "courier-support-zh.yaml"),
                              load_policy_pack(DATA / "visa-policy-zh.yaml"), engines)
    return card.to_dict()


def _outdated(card: dict[str, Any]) -> list[str]:
    return [v["id"] for v in card["violations"] if v["kind"] == "outdated_policy"]


@pytest.mark.parametrize(
    ("line", "day", "outdated"),
    [
        ("申请费是六百四十美元。", AFTER, ["application-fee"]),  # the superseded fee after `until`
        ("签证费现在是640美元，请您准备好。", AFTER, ["application-fee"]),  # digits, Chinese unit
        ("申请费是七百美元。", AFTER, []),  # the current fee
        ("申请费是六百四十美元。", BEFORE, []),  # 640 was the fee on that day
        ("申请费以前是六百四十美元，现在是七百美元。", AFTER, []),  # spoken of as history
        ("申请费不是六百四十美元。", AFTER, []),  # denied
        ("申请费是六百四十欧元。", AFTER, []),  # another currency: not this fact
        ("您的存款需要两万四千五百元。", AFTER, ["savings-proof"]),
        ("存款要2万4千5元就可以。", AFTER, ["savings-proof"]),  # mixed digits and Chinese scales
        ("存款要三万元。", AFTER, []),
        ("银行余额要有两万四千五百元，申请费是七百美元。", AFTER, ["savings-proof"]),
    ],
)
def test_chinese_policy_facts(engines: Any, line: str, day: date, outdated: list[str]) -> None:
    card = _card(engines, line, day)
    assert _outdated(card) == outdated, card["violations"]


def test_the_violation_says_what_was_stated_and_what_applies(engines: Any) -> None:
    card = _card(engines, "申请费是六百四十美元。", AFTER)
    (violation,) = card["violations"]
    assert violation["policy_id"] == "application-fee" and violation["speaker"] == "agent"
    assert "stated 640 美元" in violation["detail"]
    assert "it is 700 美元 since 2026-06-01" in violation["detail"]
    assert "六百四十美元" in violation["text"]
    # An amount is not personal data: the quote stays readable in the stored transcript.
    assert any("六百四十美元" in seg["text"] for seg in card["transcript"])
