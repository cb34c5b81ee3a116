"""Decode a recording into 16 kHz float32 samples, one array per channel (PyAV / FFmpeg).

Anything FFmpeg reads is accepted: WAV (PCM 8/16/24/32-bit, mu-law, A-law), FLAC, MP3, Ogg
Vorbis/Opus, and so on, at any rate. Channels are kept apart because telephone systems record
the agent and the customer on separate channels. Recordings with more than two channels keep
the first two (front left/right in every standard layout): call recorders put the parties there.

Work is bounded before decoding and while it runs: a declared duration over the limit, or one
absurdly long for the size of the file (an hour of silence fits in 806 KB of FLAC and decodes to
460 MB), is refused before any decoding; a file that declares no duration, or less than it holds,
is held to the same bounds as it decodes.

Error messages describe the problem with the audio, never the file name or its contents.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import av
import numpy as np

from qa_service.errors import AudioError
from qa_service.records import SAMPLE_RATE, Audio

log = logging.getLogger(__name__)

MAX_CHANNELS = 2
# Fewer bytes than this per second of audio is not a recording of a call: speech at the lowest bit
# rates measured (AMR 4.75 kbit/s with DTX on one party's channel: 399 B/s; Opus 6 kbit/s: 642; GSM:
# 1625) stays above it, FFmpeg's FLAC of silence (163-232 B/s) does not. The measurements and the
# command that repeats them: docs/decisions/0001-audio-bitrate-floor.md.
MIN_BYTES_PER_S = 250
# Audio up to this long is not held to the floor: it costs little to decode (5 min of 16 kHz stereo
# is 38 MB), and a short recording may be mostly silence (a voicemail nobody spoke on).
FLOOR_AFTER_S = 300.0


def decode(source: Path | bytes, *, max_duration_s: float | None = None) -> Audio:
    """Decode a file or bytes into an Audio record at 16 kHz, refusing empty, corrupt or over-long input."""
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise AudioError("the audio is empty (0 bytes)")
        opened: str | io.BytesIO = io.BytesIO(bytes(source))
        size = len(source)
    else:
        path = Path(source)
        if not path.is_file():
            raise AudioError("the audio file does not exist")
        size = path.stat().st_size
        if size == 0:
            raise AudioError("the audio is empty (0 bytes)")
        opened = str(path)

    try:
        container = av.open(opened, mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioError(f"the data is not a readable audio file ({_reason(exc)})") from None
    with container:
        if not container.streams.audio:
            raise AudioError("the file has no audio stream")
        stream = container.streams.audio[0]
        fmt = f"{container.format.name}/{stream.codec_context.name}"
        source_rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        source_channels = int(stream.channels or 0)
        if source_rate <= 0 or source_channels <= 0:
            raise AudioError(f"the audio stream ({fmt}) has no sample rate or channels")
        declared = _declared_duration(container, stream)
        if max_duration_s is not None and declared is not None and declared > max_duration_s + 1.0:
            raise AudioError(
                f"the audio lasts {declared:.1f} s, more than the limit of {max_duration_s:g} s"
            )
        if declared is not None and _too_sparse(size, declared):
            raise AudioError(_sparse_message(f"declares {declared:.0f} s in {size} bytes"))
        samples = _decode_stream(container, stream, fmt, max_duration_s, declared)

    if samples.size == 0:
        raise AudioError(f"the file ({fmt}) contains no audio samples")
    kept = samples[:MAX_CHANNELS] if samples.shape[0] > MAX_CHANNELS else samples
    if samples.shape[0] > MAX_CHANNELS:
        log.info("audio has %d channels; keeping the first %d", samples.shape[0], MAX_CHANNELS)
    # Float sources can carry NaN or infinities (a broken encoder); the speech model hears nothing in
    # a channel with even a few of them, so they become silence and the rest of the call is kept.
    kept = np.nan_to_num(kept, copy=False, nan=0.0, posinf=1.0, neginf=-1.0)
    np.clip(kept, -1.0, 1.0, out=kept)
    channels = tuple(np.ascontiguousarray(c, dtype=np.float32) for c in kept)
    duration = channels[0].shape[0] / SAMPLE_RATE
    if duration <= 0:
        raise AudioError(f"the file ({fmt}) contains no audio samples")
    return Audio(
        channels=channels,
        duration_s=duration,
        source_format=fmt,
        source_rate=source_rate,
        source_channels=source_channels,
    )


def _decode_stream(container, stream, fmt: str, max_duration_s: float | None,
                   declared: float | None) -> np.ndarray:
    """All samples as one (channels, n) array, written into place as they are decoded."""
    # fltp keeps one plane per channel, which is the layout Audio wants.
    resampler = av.AudioResampler(format="fltp", layout=stream.layout, rate=SAMPLE_RATE)
    limit = None if max_duration_s is None else int(max_duration_s * SAMPLE_RATE)
    buffer = _Samples(int((declared or 60.0) * SAMPLE_RATE) + SAMPLE_RATE)
    read = 0  # bytes of the audio stream's packets so far
    try:
        for packet in container.demux(stream):
            read += packet.size
            for frame in packet.decode():
                frame.pts = None  # timestamps from odd containers can confuse the resampler; order is enough
                for out in resampler.resample(frame):
                    buffer.add(out.to_ndarray())
            if limit is not None and buffer.n > limit + SAMPLE_RATE:
                raise AudioError(f"the audio lasts more than the limit of {max_duration_s:g} s")
            # The header may say nothing or too little; what has been decoded so far is held to the floor.
            seconds = buffer.n / SAMPLE_RATE
            if _too_sparse(read, seconds):
                raise AudioError(_sparse_message(f"decodes to {seconds:.0f} s from its first {read} bytes"))
        for out in resampler.resample(None):
            buffer.add(out.to_ndarray())
    except av.error.FFmpegError as exc:
        # A truncated or partly corrupt file: keep what decoded cleanly, refuse if nothing did.
        if not buffer.n:
            raise AudioError(f"the audio ({fmt}) could not be decoded ({_reason(exc)})") from None
        log.warning("audio (%s) is damaged after %.1f s; keeping the part that decoded",
                    fmt, buffer.n / SAMPLE_RATE)
    return buffer.array()


class _Samples:
    """A (channels, n) float32 buffer sized from the declared duration and grown by half when short:
    an hour of audio is 230 MB per channel, and joining decoded chunks would hold it twice."""

    def __init__(self, expected: int):
        self.expected = expected
        self.data: np.ndarray | None = None
        self.n = 0

    def add(self, chunk: np.ndarray) -> None:
        if chunk.shape[1] == 0:
            return
        if self.data is None:
            self.data = np.empty((chunk.shape[0], max(self.expected, chunk.shape[1])), np.float32)
        need = self.n + chunk.shape[1]
        if need > self.data.shape[1]:
            grown = np.empty((self.data.shape[0], max(need, self.data.shape[1] * 3 // 2)), np.float32)
            grown[:, : self.n] = self.data[:, : self.n]
            self.data = grown
        self.data[:, self.n : need] = chunk
        self.n = need

    def array(self) -> np.ndarray:
        return np.zeros((0, 0), np.float32) if self.data is None else self.data[:, : self.n]


def _declared_duration(container, stream) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _too_sparse(size: int, seconds: float) -> bool:
    return seconds > FLOOR_AFTER_S and size < seconds * MIN_BYTES_PER_S


def _sparse_message(found: str) -> str:
    return (f"the audio {found}, fewer than {MIN_BYTES_PER_S} bytes a second: silence or a damaged "
            "header, not a call recording; send the recording as it was made")


def _reason(exc: Exception) -> str:
    # FFmpeg messages can carry the file name; keep only the error kind.
    return type(exc).__name__
