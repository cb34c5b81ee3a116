"""Decoding real files in many formats, and refusing bad input with clear messages."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np
import pytest

from qa_service.errors import AudioError
from qa_service.records import SAMPLE_RATE
from qa_service.stages.decode import decode

AUDIO = Path(__file__).parent / "data" / "audio"
PHRASE_S = 1.707  # length of "Testing one two three." in the short_* fixtures


@pytest.mark.parametrize(
    ("name", "codec", "rate", "channels", "duration"),
    [
        ("short_8k.wav", "pcm_s16le", 8000, 1, PHRASE_S),
        ("short_16k.wav", "pcm_s16le", 16000, 1, PHRASE_S),
        ("short_44k.wav", "pcm_s16le", 44100, 1, PHRASE_S),
        ("short_48k_s24.wav", "pcm_s24le", 48000, 1, 0.5),
        ("short_16k.flac", "flac", 16000, 1, PHRASE_S),
        ("short_22k.mp3", "mp3", 22050, 1, PHRASE_S),
        ("short_16k.ogg", "vorbis", 16000, 1, PHRASE_S),
        ("short_opus.ogg", "opus", 48000, 1, PHRASE_S),
        ("short_8k_mulaw.wav", "pcm_mulaw", 8000, 1, PHRASE_S),
        ("short_8k_alaw.wav", "pcm_alaw", 8000, 1, PHRASE_S),
        ("short_8k_u8.wav", "pcm_u8", 8000, 1, PHRASE_S),
        ("short_8k_stereo_left.wav", "pcm_s16le", 8000, 2, PHRASE_S),
    ],
)
def test_decodes_format_to_16k_float32(name, codec, rate, channels, duration):
    audio = decode(AUDIO / name)
    assert codec in audio.source_format
    assert audio.source_rate == rate
    assert audio.source_channels == channels
    assert audio.sample_rate == SAMPLE_RATE
    assert len(audio.channels) == channels
    for ch in audio.channels:
        assert ch.dtype == np.float32
        assert ch.ndim == 1
        assert ch.shape[0] == audio.channels[0].shape[0]
    # Lossy codecs pad a little at the ends; the length must still match the spoken phrase.
    assert audio.duration_s == pytest.approx(duration, abs=0.08)
    peak = float(np.abs(audio.channels[0]).max())
    assert 0.3 < peak <= 1.0, "speech should survive decoding at a sensible level"


def test_stereo_channels_stay_separate():
    left, right = decode(AUDIO / "short_8k_stereo_left.wav").channels
    assert np.abs(left).max() > 0.3
    assert np.abs(right).max() < 1e-3


def test_more_than_two_channels_keeps_the_first_two():
    audio = decode(AUDIO / "short_8k_6ch.wav")
    assert audio.source_channels == 6
    assert len(audio.channels) == 2
    first, second = (float(np.abs(c).max()) for c in audio.channels)
    # The fixture puts the phrase on channel 1 and a half-level copy on channel 2.
    assert second == pytest.approx(first / 2, rel=0.1)


def test_bytes_and_path_decode_the_same():
    path = AUDIO / "short_16k.flac"
    a, b = decode(path), decode(path.read_bytes())
    np.testing.assert_array_equal(a.channels[0], b.channels[0])


def test_silence_decodes_fine():
    audio = decode(_wav_bytes(np.zeros(SAMPLE_RATE * 2, dtype=np.int16)))
    assert audio.duration_s == pytest.approx(2.0)
    assert float(np.abs(audio.channels[0]).max()) == 0.0


def test_truncated_wav_keeps_what_is_there():
    data = (AUDIO / "short_16k.wav").read_bytes()
    audio = decode(data[: len(data) // 2])
    assert 0.5 < audio.duration_s < PHRASE_S


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: b"", "empty"),
        (lambda: np.random.default_rng(7).bytes(20_000), "not a readable audio file"),
        (lambda: (AUDIO / "short_16k.wav").read_bytes()[:30], "not a readable audio file"),
        (lambda: (AUDIO / "short_16k.wav").read_bytes()[:44], "no audio samples"),
        (lambda: _wav_bytes(np.zeros(0, dtype=np.int16)), "no audio samples"),
        (lambda: b"%PDF-1.4\n" + b"x" * 4000, "not a readable audio file"),
    ],
    ids=["empty", "random-bytes", "truncated-header", "header-only", "zero-length", "not-audio"],
)
def test_bad_input_is_refused_clearly(make, message):
    with pytest.raises(AudioError, match=message):
        decode(make())


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(AudioError, match="does not exist"):
        decode(tmp_path / "nope.wav")
    empty = tmp_path / "secret-customer-name.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioError, match="empty") as info:
        decode(empty)
    assert "secret" not in str(info.value), "messages must not carry file names"


def test_over_max_duration_is_refused():
    with pytest.raises(AudioError, match="limit"):
        decode(AUDIO / "short_16k.wav", max_duration_s=0.5)
    assert decode(AUDIO / "short_16k.wav", max_duration_s=5).duration_s > 1


def test_over_max_duration_without_declared_length():
    # Raw streams (Ogg here) may not declare a length up front; decoding must still stop at the limit.
    with pytest.raises(AudioError, match="limit"):
        decode((AUDIO / "short_opus.ogg").read_bytes(), max_duration_s=0.2)


def _wav_bytes(samples: np.ndarray, rate: int = SAMPLE_RATE) -> bytes:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return buf.getvalue()


@pytest.mark.parametrize("expected", [1, 7, 1000])
def test_sample_buffer_grows_past_a_wrong_declared_length(expected):
    from qa_service.stages.decode import _Samples

    rng = np.random.default_rng(2)
    chunks = [rng.normal(size=(2, n)).astype(np.float32) for n in (5, 0, 9, 300, 1)]
    buffer = _Samples(expected)
    for c in chunks:
        buffer.add(c)
    np.testing.assert_array_equal(buffer.array(), np.concatenate(chunks, axis=1))


def test_decoded_length_does_not_depend_on_the_declared_one():
    # The WAV header declares the length; the Ogg/Opus stream may not: both decode to about 1.3 s.
    wav = decode(AUDIO / "short_16k.wav").duration_s
    assert decode((AUDIO / "short_opus.ogg").read_bytes()).duration_s == pytest.approx(wav, abs=0.1)


# -- audio absurdly long for its size ------------------------------------------------------------

def _flac_silence(seconds: int, rate: int = SAMPLE_RATE) -> bytes:
    """Digital silence as 16-bit stereo FLAC, written by FFmpeg's encoder with its defaults."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format="flac") as out:
        stream = out.add_stream("flac", rate=rate, layout="stereo")
        second = np.zeros((1, 2 * rate), np.int16)
        for i in range(seconds):
            frame = av.AudioFrame.from_ndarray(second, format="s16", layout="stereo")
            frame.sample_rate, frame.pts = rate, i * rate
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _without_total_samples(flac: bytes) -> bytes:
    """The same FLAC with STREAMINFO's total sample count set to 0, which means 'unknown'."""
    info = bytearray(flac[8:42])  # after "fLaC" and the metadata block header
    info[13] &= 0xF0  # the count is the last 36 bits of bytes 13-17
    info[14:18] = bytes(4)
    return flac[:8] + bytes(info) + flac[42:]


@pytest.fixture(scope="module")
def hour_of_flac_silence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sparse") / "hour.flac"
    path.write_bytes(_flac_silence(3600))
    return path


def test_an_hour_of_silence_in_806_kb_is_refused_before_decoding(hour_of_flac_silence):
    import time
    import tracemalloc

    assert hour_of_flac_silence.stat().st_size < 810_000
    tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(AudioError, match=r"declares 3600 s in \d+ bytes, fewer than 250 bytes a second"):
            decode(hour_of_flac_silence, max_duration_s=4 * 3600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # Decoding it would hold 460 MB of samples; refusing reads the header only.
    assert time.monotonic() - started < 1.0
    assert peak < 5 * 1024 * 1024, f"refusing by the header should not decode: peak {peak / 1e6:.0f} MB"


def test_a_file_that_hides_its_length_is_held_to_the_floor_while_decoding(hour_of_flac_silence, monkeypatch):
    import tracemalloc

    from qa_service.stages import decode as decode_module

    hidden = _without_total_samples(hour_of_flac_silence.read_bytes())
    # The bound starts after FLOOR_AFTER_S of audio; a shorter one keeps the test quick.
    monkeypatch.setattr(decode_module, "FLOOR_AFTER_S", 20.0)
    tracemalloc.start()
    try:
        with pytest.raises(AudioError, match=r"decodes to 2\d s from its first \d+ bytes, fewer than 250"):
            decode(hidden, max_duration_s=4 * 3600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 30 * 1024 * 1024, f"decoding went on past the floor: peak {peak / 1e6:.0f} MB"


def test_a_short_silent_recording_is_not_held_to_the_floor():
    # 60 s of FLAC silence is below the floor too, but costs little: it decodes (and ends as 'no speech').
    audio = decode(_flac_silence(60))
    assert audio.duration_s == pytest.approx(60.0, abs=0.1)


@pytest.mark.parametrize(("codec", "container", "options"), [
    ("libopencore_amrnb", "amr", {"bit_rate": 4750}),
    ("libopus", "ogg", {"bit_rate": 6000, "options": {"application": "voip"}}),
], ids=["amr-4.75k", "opus-6k"])
def test_speech_at_the_lowest_bit_rates_is_above_the_floor(codec, container, options, monkeypatch):
    from qa_service.stages import decode as decode_module
    from tests.test_bad_inputs import encode

    # One party's channel of a sample call: silent while the other speaks, the sparsest speech there is.
    agent = decode(Path(__file__).parent.parent / "samples" / "audio" / "sample-002.flac").channels[0]
    data = encode(container, codec, agent[::2].copy(), rate=8000, **options)  # 8 kHz by decimation
    monkeypatch.setattr(decode_module, "FLOOR_AFTER_S", 0.0)  # held to the floor whatever its length
    audio = decode(data)
    assert audio.duration_s == pytest.approx(len(agent) / SAMPLE_RATE, abs=0.1)
    assert len(data) / audio.duration_s < 3 * decode_module.MIN_BYTES_PER_S  # close enough to matter


def test_the_worker_fails_such_a_call_with_the_reason_and_scores_no_one(hour_of_flac_silence, make_settings,
                                                                        redis_url):
    import time
    import uuid
    from datetime import date

    from qa_service.pipeline import Engines
    from qa_service.storage import NewCall, open_repository
    from qa_service.storage.inputs import write_bytes
    from qa_service.worker import jobs
    from qa_service.worker.context import WorkerContext, activate
    from tests.chaos_support import seed_rules

    settings = make_settings(redis_url=redis_url)
    repo = open_repository(settings.database_url)
    seed_rules(repo)
    # No models are loaded: decoding refuses the file before any of them would be used.
    activate(WorkerContext(settings=settings, store=repo, engines_loaded=Engines(
        transcriber=None, redactor=None, nlp=None, max_duration_s=settings.max_duration_s)))
    try:
        call_id = str(uuid.uuid4())
        path = write_bytes(settings.storage_dir, call_id, hour_of_flac_silence.read_bytes(), ".flac")
        repo.add_call(NewCall(id=call_id, agent_id="agent-mira", call_date=date(2026, 10, 14),
                              rubric_id="harbourline-intake", rubric_version="2026.10",
                              policy_pack_id="valdoria-residence", policy_pack_version="2026-10-01",
                              input_kind="audio", input_path=str(path)))
        started = time.monotonic()
        jobs.process_call(call_id)
        assert time.monotonic() - started < 5.0
        call = repo.get_call(call_id)
        assert call.status == "failed"
        assert "fewer than 250 bytes a second" in (call.failure_reason or "")
        cards, summary = repo.agent_scorecards("agent-mira")
        assert cards == [] and summary.count == 0  # the agent is not scored on it
        assert not path.exists()  # the input is discarded like any unusable one
    finally:
        activate(None)
        repo.dispose()
