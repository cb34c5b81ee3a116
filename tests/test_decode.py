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
