"""Text transcripts: JSON turns and Agent:/Customer: lines, table-driven."""

from __future__ import annotations

import json

import pytest

from qa_service.errors import TranscriptError
from qa_service.intake import WORDS_PER_MINUTE, parse_transcript, speaker_of

EXPECTED = [("agent", "Thanks for calling, my name is Leo."),
            ("customer", "Hi, I have a question about my permit.")]
TURNS = [{"speaker": "agent", "text": "Thanks for calling, my name is Leo."},
         {"speaker": "customer", "text": "Hi, I have a question about my permit."}]


@pytest.mark.parametrize(("data", "filename", "expected"), [
    (json.dumps(TURNS), None, EXPECTED),
    (json.dumps({"turns": TURNS}), "chat.json", EXPECTED),
    (json.dumps([{"role": "Rep", "content": "Hello."}, {"role": "CALLER", "content": "Hi."}]), None,
     [("agent", "Hello."), ("customer", "Hi.")]),
    ("Agent: Hello there.\nCustomer: Hi.\n", None, [("agent", "Hello there."), ("customer", "Hi.")]),
    ("agent: Hello\nthere, how can I help?\n\nclient:  I need   help.\n", "call.txt",
     [("agent", "Hello there, how can I help?"), ("customer", "I need help.")]),
    ("Adviser (Leo): Good morning.\nApplicant: Morning. Note: I moved.\n", None,
     [("agent", "Good morning."), ("customer", "Morning. Note: I moved.")]),
    ("Agent: First point.\nNote: this line continues the turn.\n", None,
     [("agent", "First point. Note: this line continues the turn.")]),
    ("\ufeffCustomer: Hello?\r\nAgent: Yes.\r\n".encode(), None, [("customer", "Hello?"), ("agent", "Yes.")]),
    (json.dumps([{"speaker": "agent", "text": "  "}, {"speaker": "customer", "text": "Hi"}]), None,
     [("customer", "Hi")]),
])
def test_parses_turns(data, filename, expected):
    transcript = parse_transcript(data, filename=filename)
    assert [(s.speaker, s.text) for s in transcript.segments] == expected
    assert transcript.source == "text"


def test_estimated_times_follow_word_counts():
    words = " ".join(["word"] * 25)
    t = parse_transcript(f"Agent: {words}\nCustomer: ok\n")
    first, second = t.segments
    assert first.start == 0.0
    assert first.end == pytest.approx(25 * 60 / WORDS_PER_MINUTE)
    assert second.start > first.end and second.end - second.start >= 1.0
    assert t.duration_s == second.end
    assert t.model["timing"] == "estimated" and t.model["words_per_minute"] == WORDS_PER_MINUTE


@pytest.mark.parametrize(("turns", "times"), [
    ([{"speaker": "agent", "text": "Hello", "start": 0.5, "end": 1.5},
      {"speaker": "customer", "text": "Hi", "start": 2, "end": 2.5}], [(0.5, 1.5), (2.0, 2.5)]),
    ([{"speaker": "agent", "text": "Hello there", "start": "00:01"},
      {"speaker": "customer", "text": "Hi", "start": "1:02.5"}], [(1.0, 2.0), (62.5, 63.5)]),
    # Without an end, a turn lasts until the next one starts when that comes sooner than the words would.
    ([{"speaker": "agent", "text": " ".join(["w"] * 40), "start": 0},
      {"speaker": "customer", "text": "Hi", "start": 3}], [(0.0, 3.0), (3.0, 4.0)]),
])
def test_given_times_are_kept(turns, times):
    t = parse_transcript(json.dumps(turns))
    assert [(s.start, s.end) for s in t.segments] == times
    assert t.model["timing"] == "given"


def test_bracketed_times_in_text():
    t = parse_transcript("[00:03] Agent: Hello.\n[00:07] Customer: Hi.\n")
    assert [s.start for s in t.segments] == [3.0, 7.0]


@pytest.mark.parametrize(("data", "message"), [
    (b"", "empty"),
    ("   \n\n", "empty"),
    (b"RIFF\x00\x00\x00\x00WAVEfmt ", "binary"),
    (b"\xff\xfe\xfa\xfb bad", "not UTF-8"),
    ('[{"speaker": "agent", "text": "hi"', "not valid JSON: line 1"),
    ('{"foo": []}', '"turns" list'),
    ("[1, 2]", "turn 1: expected an object"),
    ('[{"text": "hi"}]', "turn 1: missing speaker"),
    ('[{"speaker": "Maria", "text": "hi"}]', "turn 1: speaker must be agent or customer"),
    ('[{"speaker": "agent"}]', "turn 1: missing text"),
    ('[{"speaker": "agent", "text": "hi", "start": "soon"}]', "turn 1: start must be seconds"),
    ('[{"speaker": "agent", "text": "hi", "start": -1}]', ">= 0"),
    ('[{"speaker": "agent", "text": "hi", "start": 5, "end": 2}]', "end is before start"),
    ('[{"speaker": "agent", "text": "a", "start": 1}, {"speaker": "customer", "text": "b"}]',
     "turns 2 have no start time"),
    ("Hello, this is just prose about a call.\nAgent: hi", "line 1: expected a turn"),
    ("[]", "no turns with text"),
])
def test_junk_is_a_clear_error(data, message):
    with pytest.raises(TranscriptError, match=message):
        parse_transcript(data)


def test_errors_do_not_quote_the_content():
    with pytest.raises(TranscriptError) as err:
        parse_transcript('[{"speaker": "Maria Lopez", "text": "my passport is X1234567"}]')
    assert "Maria" not in str(err.value) and "X1234567" not in str(err.value)


@pytest.mark.parametrize(("label", "speaker"), [
    ("Agent", "agent"), ("REP", "agent"), ("sales-rep", "agent"), ("Advisor", "agent"),
    ("caller", "customer"), ("Client", "customer"), ("customer ", "customer"), ("Bob", None), ("", None),
])
def test_speaker_synonyms(label, speaker):
    assert speaker_of(label) == speaker
