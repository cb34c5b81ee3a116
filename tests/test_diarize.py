"""Speaker roles on mono audio: features, phrase matching, clustering, and a real two-voice call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from qa_service.records import SAMPLE_RATE, Audio, Segment, Word
from qa_service.stages import diarize
from qa_service.stages.decode import decode

AUDIO = Path(__file__).parent / "data" / "audio"


def _voice(f0: float, formant: float, seconds: float, seed: int) -> np.ndarray:
    """A buzzy vowel-like sound: harmonics of f0 shaped by one resonance, with a little noise."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    x = np.zeros_like(t)
    for h in range(1, 30):
        f = h * f0
        if f > 3800:
            break
        x += np.exp(-(((f - formant) / 400.0) ** 2)) * np.sin(2 * np.pi * f * t + h)
    x += np.random.default_rng(seed).normal(0, 0.02, t.size)
    return (0.3 * x / np.abs(x).max()).astype(np.float32)


def test_pitch_of_a_voiced_sound():
    _, f0 = diarize.frame_features(_voice(180.0, 700.0, 1.0, seed=1))
    voiced = f0[f0 > 0]
    assert voiced.size > 80
    assert np.median(voiced) == pytest.approx(180.0, rel=0.05)


def test_silence_is_unvoiced():
    feats, f0 = diarize.frame_features(np.zeros(SAMPLE_RATE, np.float32))
    assert feats.shape == (98, 20)
    assert not (f0 > 0).any()


@pytest.mark.parametrize(
    ("text", "phrase", "hit"),
    [
        ("Thank you for calling Northwind, my name is Ana.", "thank you for calling", True),
        ("Thanks for colling, this is Ana.", "thanks for calling", True),  # one ASR slip
        ("I was calling about my visa.", "thank you for calling", False),
        ("Hello?", "my name is", False),
        ("", "my name is", False),
    ],
)
def test_phrase_hits(text, phrase, hit):
    assert diarize.phrase_hits(diarize._tokens(text), phrase) is hit


def _words(*runs: tuple[int, str]) -> tuple[list[Word], np.ndarray]:
    """Words 0.3 s apart, each run of text labelled with its cluster."""
    words, labels = [], []
    for label, text in runs:
        for w in text.split():
            words.append(Word(" " + w, 0.3 * len(words), 0.3 * len(words) + 0.25))
            labels.append(label)
    return words, np.array(labels)


@pytest.mark.parametrize(
    ("runs", "phrases", "agent", "by"),
    [
        # the agent's phrases anywhere in the first minutes, not only the opening ones
        (((1, "hi there"), (0, "hello how can I help"), (1, "I lost my invoice")),
         ["send the commercial invoice"], 0, "first-speaker"),
        (((1, "hi there"), (0, "hello how can I help"), (1, "please send the commercial invoice")),
         ["send the commercial invoice", "thank you for calling"], 1, "phrases"),
        # no phrases: who says most of the first words, though the very first was heard in the other voice
        (((1, "Thank"), (0, "you for calling my name is Tom"), (1, "sure it is four four seven")),
         [], 0, "first-speaker"),
    ],
)
def test_which_voice_is_the_agent(runs, phrases, agent, by):
    words, labels = _words(*runs)
    assert diarize._agent_cluster(words, labels, phrases) == (agent, by)


def _turns_call(turns):
    """Concatenate (voice samples, text) turns with 0.6 s gaps into one mono signal plus word segments."""
    gap = np.zeros(int(0.6 * SAMPLE_RATE), np.float32)
    pieces, segments, t = [gap], [], 0.6
    for who, samples, text in turns:
        words = text.split()
        dur = samples.size / SAMPLE_RATE
        step = dur / len(words)
        ws = tuple(Word(" " + w, t + i * step, t + (i + 1) * step - 0.05) for i, w in enumerate(words))
        segments.append((who, Segment("unknown", t, t + dur, text, ws)))
        pieces += [samples, gap]
        t += dur + 0.6
    return np.concatenate(pieces), segments


def test_two_synthetic_voices_are_told_apart_and_the_agent_named():
    low = [_voice(110.0, 600.0, 2.5, seed=i) for i in range(4)]
    high = [_voice(230.0, 1200.0, 2.5, seed=10 + i) for i in range(4)]
    samples, truth = _turns_call(
        [
            ("customer", high[0], "Hello? Is anyone there?"),
            ("agent", low[0], "Thank you for calling Northwind. My name is Sam."),
            ("customer", high[1], "Hi Sam, I have a question about my visa."),
            ("agent", low[1], "Of course, I can help with that today."),
            ("customer", high[2], "How long does it usually take?"),
            ("agent", low[2], "Processing takes about twelve weeks."),
            ("customer", high[3], "Great, that is all."),
            ("agent", low[3], "Is there anything else I can help with?"),
        ]
    )
    out, info = diarize.attribute_speakers(
        samples, [s for _, s in truth], agent_phrases=["thank you for calling", "my name is"]
    )
    assert info["speakers"] == 2
    assert info["agent_by"] == "phrases"  # the customer spoke first, the phrases still name the agent
    for who, seg in truth:
        mine = [s for s in out if s.start < seg.end and s.end > seg.start]
        assert {s.speaker for s in mine} == {who}, seg.text
    assert all(s.confidence is not None and 0.5 <= s.confidence <= 1.0 for s in out)


def test_first_speaker_is_the_agent_without_phrases():
    a = [_voice(110.0, 600.0, 2.0, seed=i) for i in range(3)]
    b = [_voice(230.0, 1200.0, 2.0, seed=10 + i) for i in range(3)]
    samples, truth = _turns_call(
        [
            ("agent", a[0], "Good morning."),
            ("customer", b[0], "Hi."),
            ("agent", a[1], "How are you?"),
            ("customer", b[1], "Fine."),
            ("agent", a[2], "Right."),
            ("customer", b[2], "Bye."),
        ]
    )
    out, info = diarize.attribute_speakers(samples, [s for _, s in truth])
    assert info["agent_by"] == "first-speaker"
    assert [s.speaker for s in out] == [who for who, _ in truth]


def test_one_voice_is_one_speaker():
    samples, truth = _turns_call(
        [("x", _voice(150.0, 800.0, 2.0, seed=i), "some words here") for i in range(3)]
    )
    out, info = diarize.attribute_speakers(samples, [s for _, s in truth])
    assert info["speakers"] == 1
    assert {s.speaker for s in out} == {"unknown"}, "one voice without opening phrases has no known role"
    out, info = diarize.attribute_speakers(samples, [s for _, s in truth], agent_phrases=["some words"])
    assert {s.speaker for s in out} == {"agent"}


def test_a_segment_spanning_a_speaker_change_is_split():
    a, b = _voice(110.0, 600.0, 2.0, seed=1), _voice(230.0, 1200.0, 2.0, seed=2)
    samples, truth = _turns_call(
        [
            ("agent", a, "Thank you for calling."),
            ("customer", b, "Hello there."),
            ("agent", a.copy(), "How can I help?"),
            ("customer", b.copy(), "Visa question."),
        ]
    )
    # Whisper often runs two turns into one segment: join the first two.
    s1, s2 = truth[0][1], truth[1][1]
    merged = Segment("unknown", s1.start, s2.end, s1.text + " " + s2.text, s1.words + s2.words)
    out, _ = diarize.attribute_speakers(
        samples, [merged, truth[2][1], truth[3][1]], agent_phrases=["thank you for calling"]
    )
    assert [s.speaker for s in out] == ["agent", "customer", "agent", "customer"]
    assert out[0].end <= s2.start and out[1].start >= s1.end


def test_no_words_returns_segments_unchanged():
    out, info = diarize.attribute_speakers(np.zeros(SAMPLE_RATE, np.float32), [])
    assert out == [] and info["speakers"] == 0


@pytest.mark.slow
@pytest.mark.parametrize("voice_model", ["resemblyzer", "none"])
def test_real_two_voice_mono_call(tiny_model, voice_model):
    from qa_service.modelstore import resolve_voice_model
    from qa_service.pipeline import transcribe_call
    from qa_service.stages.voiceprint import load_voice_encoder

    voices = load_voice_encoder(resolve_voice_model(voice_model)) if voice_model != "none" else None

    agent = decode(AUDIO / "agent.flac").channels[0]
    customer = decode(AUDIO / "customer.flac").channels[0]
    gap = np.zeros(int(0.7 * SAMPLE_RATE), np.float32)
    parts, spans, t = [gap], [], 0.7
    for who, x in (("agent", agent), ("customer", customer), ("agent", agent), ("customer", customer)):
        parts += [x, gap]
        spans.append((who, t, t + x.size / SAMPLE_RATE))
        t += x.size / SAMPLE_RATE + 0.7
    mono = np.concatenate(parts)
    audio = Audio(
        channels=(mono,),
        duration_s=mono.size / SAMPLE_RATE,
        source_format="test",
        source_rate=SAMPLE_RATE,
        source_channels=1,
    )
    cues = ["thank you for calling", "my name is"]
    tr = transcribe_call(audio, tiny_model, agent_phrases=cues, voices=voices)
    assert tr.model["speakers"]["method"] == ("voice-embeddings" if voices else "acoustic-clustering")
    for who, a, b in spans:
        dur: dict[str, float] = {}
        for s in tr.segments:
            ov = min(s.end, b) - max(s.start, a)
            if ov > 0:
                dur[s.speaker] = dur.get(s.speaker, 0.0) + ov
        assert max(dur, key=dur.get) == who, (who, a, b)


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from qa_service.stages.transcribe import load_transcriber

    return load_transcriber("tiny.en", cache_dir=tmp_path_factory.mktemp("models"))


def _w(text: str, start: float, end: float | None = None) -> Word:
    return Word(text, start, start + 0.25 if end is None else end)


@pytest.mark.parametrize(
    ("prev", "word", "cost"),
    [
        (_w(" speech", 0.0), _w("-to", 0.25), diarize.NO_SWITCH),  # a hyphenated word's parts
        (_w(" speech-", 0.0), _w("text", 0.25), diarize.NO_SWITCH),
        (_w(" two", 0.0), _w("fold", 0.25), diarize.NO_SWITCH),  # a token without its leading space
        (_w(" the", 0.0), _w(" quality", 0.25), diarize.SWITCH_COST * diarize.MID_CLAUSE),
        (_w(" called,", 0.0), _w(" maybe", 0.25), diarize.SWITCH_COST),
        (_w(" there.", 0.0), _w(" Hello", 0.25), diarize.SWITCH_COST * 0.4),
        (_w(" there", 0.0), _w(" Hello", 0.6), diarize.SWITCH_COST * 0.4),  # a pause
        (_w(" there.", 0.0), _w(" Hello", 0.6), diarize.SWITCH_COST * 0.4 * 0.4),
    ],
)
def test_switch_cost(prev, word, cost):
    assert diarize._switch_cost([prev, word], 1) == pytest.approx(cost)


def test_no_change_of_speaker_inside_a_word():
    words = [_w(" two", 0.0), _w(" speech", 0.3), _w("-to", 0.55), _w("-text", 0.8), _w(" models", 1.1)]
    # The voice leans to speaker 1 from "-to" on, strongly: the change may come before "speech"
    # or after "-text", never inside "speech-to-text".
    emis = np.array([[80.0, 0.0], [2.0, 0.0], [0.0, 40.0], [0.0, 40.0], [0.0, 40.0]])
    labels = diarize._viterbi(words, emis)
    assert labels[1] == labels[2] == labels[3]
    assert labels[0] == 0 and labels[4] == 1


def test_phrase_spans():
    words = [_w(" Please", 0.0), _w(" note", 0.3), _w(" this", 0.6), _w(" call", 0.9), _w(" is", 1.2),
             _w(" recorded.", 1.5), _w(" Hi.", 2.0)]
    assert diarize.phrase_spans(words, "this call is recorded") == [(2, 5)]
    assert diarize.phrase_spans(words, "my name is") == []


def test_a_phrase_counts_for_the_voice_around_it_not_for_its_labels():
    # Cluster 1 (the customer's voice) took the disclosure's words, but their voice and the voice of
    # the speech around them are cluster 0's: cluster 0 is the agent, and no label is changed.
    runs = ((1, "hello there"), (0, "just a heads up for quality"), (1, "this call may be recorded"),
            (0, "and monitored by our providers is that okay"), (1, "yes sure go ahead"))
    words, labels = _words(*runs)
    before = labels.copy()
    voice = np.zeros((len(words), 2))
    voice[:, 0] = 1.0
    voice[:2] = voice[-4:] = [0.0, 1.0]  # only the customer's own turns sound like the customer
    voice[labels == 1] += [0.0, 0.05]
    assert diarize._agent_cluster(words, labels, ["call may be recorded"], voice) == (0, "phrases")
    assert np.array_equal(labels, before)
    # Without a voice model the labels of the stretch around the phrase decide.
    assert diarize._agent_cluster(words, labels, ["call may be recorded"]) == (0, "phrases")


def test_agent_phrases_name_a_voice_and_move_no_word():
    low = [_voice(110.0, 600.0, 2.5, seed=i) for i in range(3)]
    high = [_voice(230.0, 1200.0, 2.5, seed=10 + i) for i in range(3)]
    samples, truth = _turns_call(
        [
            ("customer", high[0], "Hello, is anyone there?"),
            ("agent", low[0], "Hi, sorry we got cut off."),
            ("customer", high[1], "No problem at all."),
            ("agent", low[1], "Please note this call may be recorded and monitored."),
            ("customer", high[2], "That is fine with me."),
            ("agent", low[2], "Great, how can I help?"),
        ]
    )
    segs = [s for _, s in truth]
    plain, info_plain = diarize.attribute_speakers(samples, segs)
    cued, info = diarize.attribute_speakers(samples, segs, agent_phrases=["this call may be recorded"])
    assert info_plain["agent_by"] == "first-speaker" and info["agent_by"] == "phrases"
    assert [s.speaker for s in cued] == [who for who, _ in truth]
    # The phrases chose which voice is the agent; the words of each voice are the same either way.
    flip = {"agent": "customer", "customer": "agent"}
    assert [flip[s.speaker] for s in plain] == [s.speaker for s in cued]
    assert [s.words for s in plain] == [s.words for s in cued]
