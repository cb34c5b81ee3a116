"""Remove personal data from call audio: silence (or a tone over) every redacted span.

The spans come from the text redaction (`Redaction.start` / `end`, seconds in the call, and the
speaker who said them). A guard on each side covers word timestamps that are a little early or
late. On a stereo recording only the speaker's own channel is cleared by default; `bleed=True`
clears every channel, for recordings where each side also carries the other's voice (echo).
"""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Literal

import numpy as np

from qa_service.errors import InputError
from qa_service.records import Audio, ChannelLayout, Redaction

Mode = Literal["silence", "tone"]

TONE_HZ = 1000.0
TONE_LEVEL = 0.1  # -20 dBFS: clearly a bleep, not loud enough to hurt on headphones
_FADE_S = 0.005  # a hard cut clicks: the audio just outside a span fades out and back in


def channel_map(layout: ChannelLayout, n_channels: int) -> dict[str, tuple[int, ...]]:
    """Which channels carry each speaker, for a channel layout (every channel when unknown)."""
    every = tuple(range(n_channels))
    if n_channels >= 2 and layout == "stereo":
        return {"agent": (0,), "customer": (1,), "unknown": every}
    if n_channels >= 2 and layout == "stereo-agent-right":
        return {"agent": (1,), "customer": (0,), "unknown": every}
    return {"agent": every, "customer": every, "unknown": every}


def redact_audio(
    audio: Audio,
    redactions: Sequence[Redaction],
    layout: ChannelLayout | Mapping[str, Sequence[int]] = "mono",
    *,
    guard_s: float = 0.25,
    mode: Mode = "silence",
    bleed: bool = False,
) -> Audio:
    """Return a copy of the audio with every redacted span silenced (or replaced by a tone)."""
    if mode not in ("silence", "tone"):
        raise ValueError(f"mode must be 'silence' or 'tone', not {mode!r}")
    if guard_s < 0:
        raise ValueError("guard_s must not be negative")
    n_ch = len(audio.channels)
    if isinstance(layout, str):
        mapping = channel_map(layout, n_ch)
    else:
        mapping = {k: tuple(v) for k, v in layout.items()}
        bad = [c for chans in mapping.values() for c in chans if not 0 <= c < n_ch]
        if bad:
            raise InputError(f"channel {bad[0]} does not exist in audio with {n_ch} channel(s)")
    every = tuple(range(n_ch))
    rate = audio.sample_rate
    out = [np.array(c, dtype=np.float32, copy=True) for c in audio.channels]
    for r in redactions:
        if not (np.isfinite(r.start) and np.isfinite(r.end)) or r.end < r.start:
            raise InputError("a redaction has no valid time span")
        chans = every if bleed else mapping.get(r.speaker, every)
        for c in chans:
            n = len(out[c])
            a = max(0, int(np.floor((r.start - guard_s) * rate)))
            b = min(n, int(np.ceil((r.end + guard_s) * rate)))
            if b > a:
                _clear(out[c], a, b, rate, mode)
    return replace(audio, channels=tuple(out))


def _clear(x: np.ndarray, a: int, b: int, rate: int, mode: Mode) -> None:
    """Replace x[a:b] entirely; soften the cut with short fades of the audio just outside it."""
    fade = int(_FADE_S * rate)
    fill = np.zeros(b - a, dtype=np.float32)
    if mode == "tone":
        t = np.arange(a, b) / rate
        fill = (TONE_LEVEL * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)
        k = min(fade, (b - a) // 2)
        if k > 0:
            ramp = np.linspace(0.0, 1.0, k, dtype=np.float32)
            fill[:k] *= ramp
            fill[-k:] *= ramp[::-1]
    x[a:b] = fill
    before = x[max(0, a - fade) : a]
    before *= np.linspace(1.0, 0.0, len(before) + 1, dtype=np.float32)[1:]
    after = x[b : b + fade]
    after *= np.linspace(0.0, 1.0, len(after) + 1, dtype=np.float32)[1:]


def encode_wav(audio: Audio) -> bytes:
    """The audio as a 16-bit PCM WAV file (channels interleaved) in memory."""
    if not audio.channels:
        raise InputError("audio has no channels")
    length = min(len(c) for c in audio.channels)
    data = np.stack([np.asarray(c[:length], dtype=np.float32) for c in audio.channels], axis=1)
    pcm = (np.clip(data, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(len(audio.channels))
        w.setsampwidth(2)
        w.setframerate(audio.sample_rate)
        w.writeframes(pcm.tobytes())
    return buf.getvalue()


def write_wav(audio: Audio, path: str | Path) -> Path:
    """Write the audio as a 16-bit PCM WAV file and return its path."""
    path = Path(path)
    path.write_bytes(encode_wav(audio))
    return path
