"""Measure bytes per second of audio for low-bit-rate speech codecs and for silence.

    .venv/bin/python scripts/measure_bitrate_floor.py [--silence-s 600]

Encodes the sample calls (samples/audio/*.flac: 16 kHz stereo, agent left, customer right, each
channel silent while the other party speaks) with PyAV at the lowest bit rates call recorders use,
one party's channel and the mono mix each, and FLAC, Opus and AMR files of digital silence. Prints
one line per file: the numbers behind stages/decode.py MIN_BYTES_PER_S.
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import av
import numpy as np

from qa_service.stages.decode import MIN_BYTES_PER_S, decode

SAMPLES = Path(__file__).resolve().parent.parent / "samples" / "audio"
# (label, codec, container, rate, bit rate, codec options)
SPEECH_CODECS = [
    ("Opus 6 kbit/s VBR", "libopus", "ogg", 8000, 6000, {"application": "voip"}),
    ("AMR-NB 4.75 kbit/s", "libopencore_amrnb", "amr", 8000, 4750, {}),
    ("AMR-NB 4.75 kbit/s, DTX", "libopencore_amrnb", "amr", 8000, 4750, {"dtx": "1"}),
]
# GSM 06.10 has no encoder in PyAV's FFmpeg; its frames have a fixed size: 65 bytes per 40 ms in WAV.
GSM_BYTES_PER_S = 65 * 25


def resample(x: np.ndarray, rate: int) -> np.ndarray:
    """16 kHz mono float samples at another rate (FFmpeg's resampler)."""
    if rate == 16000:
        return x
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    frame = av.AudioFrame.from_ndarray(x.reshape(1, -1).astype(np.float32), format="flt", layout="mono")
    frame.sample_rate = 16000
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out)


def encode(x: np.ndarray, codec: str, container: str, rate: int, layout: str = "mono",
           bit_rate: int | None = None, options: dict[str, str] | None = None) -> bytes:
    """Encode float samples ((channels, n) or (n,)) with FFmpeg's encoder; the file's bytes."""
    data = np.atleast_2d(x)
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout, options=options or {})
        if bit_rate:
            stream.bit_rate = bit_rate
        size = stream.codec_context.frame_size or 4096
        for start in range(0, data.shape[1], size):
            chunk = data[:, start:start + size]
            if chunk.shape[1] < size and codec == "libopencore_amrnb":  # fixed 20 ms frames only
                chunk = np.pad(chunk, ((0, 0), (0, size - chunk.shape[1])))
            pcm = (np.clip(chunk, -1, 1) * 32767).astype(np.int16)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(pcm.T).reshape(1, -1), format="s16",
                                               layout=layout)
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def row(label: str, data: bytes, seconds: float) -> float:
    """Print and return one measurement."""
    rate = len(data) / seconds
    print(f"{label:58s} {len(data):9d} B {seconds:7.1f} s {rate:7.0f} B/s")  # noqa: T201
    return rate


def main() -> None:
    """Print the table and the margins of MIN_BYTES_PER_S."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--silence-s", type=float, default=600.0, help="length of the silent files")
    args = parser.parse_args()

    speech, silent = [], []
    for path in sorted(SAMPLES.glob("*.flac")):
        left, right = decode(path).channels
        for part, x in (("agent's channel", left), ("mono mix", (left + right) / 2)):
            for label, codec, container, rate, bit_rate, options in SPEECH_CODECS:
                data = encode(resample(x, rate), codec, container, rate, bit_rate=bit_rate, options=options)
                speech.append(row(f"{path.stem} {part}, {label}", data, len(x) / 16000))
    print(f"{'any speech, GSM 06.10 (13 kbit/s, fixed frames)':58s} {GSM_BYTES_PER_S:29d} B/s")  # noqa: T201

    # Where the floor refuses real speech: a call that is mostly digital silence (on hold, muted).
    left, right = decode(SAMPLES / "sample-001.flac").channels
    mix = (left + right) / 2
    for silent_share in (0.5, 0.8):
        x = np.concatenate([mix, np.zeros(int(len(mix) * silent_share / (1 - silent_share)), np.float32)])
        for label, codec, container, rate, bit_rate, options in SPEECH_CODECS:
            data = encode(resample(x, rate), codec, container, rate, bit_rate=bit_rate, options=options)
            row(f"sample-001 mix, {silent_share:.0%} silence, {label}", data, len(x) / 16000)

    seconds = args.silence_s
    for rate, layout in ((8000, "mono"), (16000, "mono"), (16000, "stereo"), (44100, "stereo"),
                         (48000, "stereo")):
        zeros = np.zeros((2 if layout == "stereo" else 1, int(seconds * rate)), np.float32)
        silent.append(row(f"silence, FLAC {rate} Hz {layout}", encode(zeros, "flac", "flac", rate, layout),
                          seconds))
    zeros = np.zeros(int(seconds * 8000), np.float32)
    for label, codec, container, rate, bit_rate, options in SPEECH_CODECS:
        row(f"silence, {label}", encode(zeros, codec, container, rate, bit_rate=bit_rate, options=options),
            seconds)

    print(f"\nMIN_BYTES_PER_S = {MIN_BYTES_PER_S}: lowest speech {min(speech):.0f} B/s "  # noqa: T201
          f"({min(speech) / MIN_BYTES_PER_S:.2f}x the floor), highest FLAC of silence {max(silent):.0f} B/s "
          f"({MIN_BYTES_PER_S / max(silent):.2f}x below it)")


if __name__ == "__main__":
    main()
