"""Text transcripts: JSON turns and Agent:/Customer: lines, table-driven."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta

import pytest

from qa_service.errors import InputError, TranscriptError
from qa_service.intake import (
    EARLIEST_CALL_DATE,
    MAX_JSON_DEPTH,
    WORDS_PER_MINUTE,
    call_date_from,
    json_depth,
    parse_transcript,
    read_transcript,
    speaker_of,
)
from tests.conftest import REPO_ROOT

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


# -- size, time and nesting ------------------------------------------------------------------------

def _best_of(runs: int, fn) -> float:
    """The shortest of a few timings: another process taking a core only ever adds time."""
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _continued(n_lines: int) -> str:
    return "Agent: hello\n" + "and then some more words on this line\n" * n_lines


def test_a_large_transcript_of_continuation_lines_parses():
    text = _continued(40_000)  # 1.5 MB: one turn continued over 40,000 lines
    assert len(text) > 1_500_000
    [turn] = parse_transcript(text).segments
    assert turn.text == "hello" + " and then some more words on this line" * 40_000


@pytest.mark.parametrize("make", [
    _continued,
    # A run of spaces after a label and no colon: the line regex must not try every split of the run.
    lambda n: "Agent: hello\nAgent" + " " * n + "x\n",
], ids=["continuation-lines", "spaces-after-a-label"])
def test_parsing_time_grows_linearly(make):
    small, large = make(2_000), make(16_000)  # 8x the text
    parse_transcript(small)  # warm up
    t_small = _best_of(3, lambda: parse_transcript(small))
    t_large = _best_of(2, lambda: parse_transcript(large))
    # Linear: about 8x. Quadratic parsing (joining the turn again for each line) measured about 64x.
    assert t_large < 20 * max(t_small, 1e-3), f"8x the text took {t_large / t_small:.0f}x the time"


def test_the_nesting_check_is_linear_on_text_full_of_quotes():
    small, large = "[" + '\\"' * 20_000, "[" + '\\"' * 160_000  # escaped quotes, never closed
    t_small = _best_of(3, lambda: json_depth(small))
    t_large = _best_of(2, lambda: json_depth(large))
    assert t_large < 20 * max(t_small, 1e-3), f"8x the text took {t_large / t_small:.0f}x the time"
    with pytest.raises(TranscriptError, match="not valid JSON"):
        parse_transcript(large)


def test_deeply_nested_json_is_refused_before_it_is_parsed():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(TranscriptError, match=f"nested more than {MAX_JSON_DEPTH} levels"):
        parse_transcript(deep)
    # Brackets inside strings are text, not nesting.
    t = parse_transcript(json.dumps([{"speaker": "agent", "text": "[[[[" * 100}]))
    assert t.segments[0].text == "[[[[" * 100
    assert json_depth('{"turns": [{"a": "]]]}"}]}') == 3


def test_a_number_too_long_to_read_is_a_transcript_error():
    data = '[{"speaker": "agent", "text": "hi", "start": ' + "1" * 5000 + "}]"
    with pytest.raises(TranscriptError, match="a number of more than 4300 digits"):
        parse_transcript(data)


def test_read_transcript_refuses_a_file_over_the_limit_before_reading_it(tmp_path, monkeypatch):
    path = tmp_path / "call.txt"
    path.write_text("Agent: hello\n" * 1000)
    assert read_transcript(path, max_bytes=13_000).segments[0].speaker == "agent"

    def no_reading(*args, **kwargs):
        raise AssertionError("the file was read")

    monkeypatch.setattr(type(path), "read_bytes", no_reading)
    with pytest.raises(TranscriptError, match="13000 bytes, more than the limit of 12999 .*QA_MAX"):
        read_transcript(path, max_bytes=12_999)


# -- call dates ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "message"), [
    ("0", "YYYY-MM-DD"),
    ("20261014", "YYYY-MM-DD"),
    ("2026-10-14T10:00", "YYYY-MM-DD"),
    ("2026-W42-3", "YYYY-MM-DD"),
    ("２０２６-１０-１４", "YYYY-MM-DD"),
    ("2026-13-01", "not in the calendar"),
    ("2026-02-30", "not in the calendar"),
    ("1970-01-01", "between 2000-01-01 and"),
    ("1999-12-31", "between 2000-01-01 and"),
    (str(date.today() + timedelta(days=2)), "between 2000-01-01 and"),
])
def test_call_dates_are_days_in_a_sane_range(text, message):
    with pytest.raises(InputError, match=message):
        call_date_from(text)


def test_call_dates_from_2000_to_tomorrow_are_taken():
    for day in (EARLIEST_CALL_DATE, date(2026, 10, 14), date.today(), date.today() + timedelta(days=1)):
        assert call_date_from(day.isoformat()) == day


def test_command_line_call_dates_are_as_strict(tmp_path, monkeypatch, capsys):
    from qa_service.cli import main

    monkeypatch.setenv("QA_DATABASE_URL", f"sqlite:///{tmp_path / 'qa.db'}")
    samples = REPO_ROOT / "samples"
    rules = ["--rubric", str(samples / "rubric.yaml"), "--policies", str(samples / "policies.yaml")]
    with pytest.raises(SystemExit) as exited:
        main(["process", "--transcript", str(samples / "transcript-chat.json"), *rules,
              "--call-date", "1970-01-01"])
    assert exited.value.code == 2 and "between 2000-01-01 and" in capsys.readouterr().err

    manifest = tmp_path / "calls.jsonl"
    row = {"transcript": "chat.json", "call_id": "c1", "call_date": "20261014"}  # ISO 8601's basic form
    manifest.write_text(json.dumps(row) + "\n")
    assert main(["process", "--manifest", str(manifest), *rules]) == 2
    assert "calls.jsonl:1: bad manifest line: call dates are written YYYY-MM-DD" in capsys.readouterr().err
