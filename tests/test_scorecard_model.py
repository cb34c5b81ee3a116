"""The scorecard read model: what the pipeline writes, it reads; `/openapi.json` publishes it."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest

from qa_service.records import CallMeta
from qa_service.scorecard import read_scorecard

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def text_engines() -> Any:
    from qa_service.pipeline import load_engines
    from qa_service.settings import Settings

    return load_engines(Settings(), speech=False)


def test_a_scorecard_the_pipeline_writes_reads_back_typed(text_engines: Any) -> None:
    from qa_service.intake import parse_transcript
    from qa_service.pipeline import process_transcript
    from qa_service.rules.load import load_policy_pack, load_rubric

    chat = (ROOT / "samples" / "transcript-chat.json").read_bytes()
    transcript = parse_transcript(chat, filename="chat.json")
    card = process_transcript(transcript, CallMeta("chat-1", "agent-leo", date(2026, 10, 20)),
                              load_rubric(ROOT / "samples" / "rubric.yaml"),
                              load_policy_pack(ROOT / "samples" / "policies.yaml"), text_engines).to_dict()
    doc = read_scorecard(card)
    assert doc.call_id == "chat-1" and doc.pass_mark is not None and doc.criteria and doc.transcript
    assert doc.model_dump(mode="json", exclude_unset=True) == card  # nothing lost, nothing added
    # A scorecard stored before the later fields (pass mark, certainty, provisional) still reads.
    old = {k: v for k, v in card.items() if k not in ("pass_mark", "provisional", "provisional_reasons")}
    old["criteria"] = [{k: v for k, v in c.items() if k not in ("confidence", "match", "doubt", "auto_fail")}
                       for c in card["criteria"]]
    assert read_scorecard(old).provisional is False


def test_openapi_describes_the_scorecard(make_settings: Any) -> None:
    from fastapi.testclient import TestClient

    from qa_service.app import create_app

    spec = TestClient(create_app(make_settings())).get("/openapi.json").json()
    ok = spec["paths"]["/v1/calls/{call_id}/scorecard"]["get"]["responses"]["200"]
    ref = ok["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
    properties = spec["components"]["schemas"][ref]["properties"]
    wanted = {"criteria", "violations", "to_check", "provisional", "score", "passed", "transcript"}
    assert wanted <= set(properties)
    reviewed = spec["paths"]["/v1/calls/{call_id}/scorecard/reviewed"]["get"]["responses"]["200"]
    assert "review" in spec["components"]["schemas"][
        reviewed["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]]["properties"]
