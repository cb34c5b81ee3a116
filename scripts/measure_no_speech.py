#!/usr/bin/env python3
"""Measure what the recogniser hears in recordings with and without speech (a measuring tool, not a test).

  measure_no_speech.py render DIR [--speech FILE...]
      write recordings without speech into DIR: silence, noise of three colours and levels, telephone
      tones, hum, clicks, music-like notes, sung vowels, random bytes behind a WAV header, and each
      --speech recording reversed and cut into shuffled 80 ms pieces (speech sounds, no words).
  measure_no_speech.py measure FILE... [--layout auto|mono|stereo] [--rubric R --policies P]
      decode and transcribe each file as the pipeline does (the settings' models, the rubric's
      vocabulary) and print one JSON line per file: seconds, voice-like seconds, words, words the
      recogniser was sure of, mean confidence, and whether `require_speech` lets it through.
  measure_no_speech.py random N
      decode N files of random bytes of each size and name: how many the decoder refuses, and why.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import struct
import sys
import wave
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000


def _wav(path: Path, channels: list[np.ndarray], rate: int = RATE) -> None:
    frames = np.stack(channels, 1) if len(channels) > 1 else channels[0]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(len(channels))
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes())
    path.write_bytes(buf.getvalue())


def _coloured(rng: np.random.Generator, n: int, colour: float) -> np.ndarray:
    spectrum = np.fft.rfft(rng.normal(0, 1, n))
    spectrum /= np.maximum(np.arange(spectrum.size), 1) ** (colour / 2)
    x = np.fft.irfft(spectrum, n)
    return x / x.std()


def _voice(rng: np.random.Generator, pitches: list[float], vowels: str, each_s: float) -> np.ndarray:
    """Sung vowels: harmonics of each pitch shaped by the vowel's three formants, with vibrato."""
    formants = {"a": (800, 1200, 2500), "e": (400, 2000, 2600), "i": (300, 2300, 3000),
                "o": (500, 900, 2400), "u": (350, 800, 2300)}
    out = []
    for f0, vowel in zip(pitches, vowels, strict=True):
        t = np.arange(int(each_s * RATE)) / RATE
        phase = 2 * np.pi * np.cumsum(f0 * (1 + 0.02 * np.sin(2 * np.pi * 5.5 * t))) / RATE
        gain = [sum(1 / (1 + ((h * f0 - fc) / 90) ** 2) for fc in formants[vowel]) / h ** 0.5
                for h in range(1, int(3800 // f0))]
        y = sum(g * np.sin((h + 1) * phase) for h, g in enumerate(gain))
        edge = np.minimum(1, np.minimum(t / 0.05, (each_s - t) / 0.05))
        out.append(0.3 * y / (np.abs(y).max() + 1e-9) * edge)
    return np.concatenate(out)


def render(out: Path, speech: list[Path]) -> None:
    """Write the recordings without speech."""
    from qa_service.stages.decode import decode

    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    n = 15 * RATE
    t = np.arange(n) / RATE
    for level in (0.01, 0.1, 0.5):
        _wav(out / f"white_{level}.wav", [rng.normal(0, level, n)])
    _wav(out / "pink.wav", [0.1 * _coloured(rng, n, 1)])
    _wav(out / "brown.wav", [0.1 * _coloured(rng, n, 2)])
    _wav(out / "white_8k_stereo.wav", [rng.normal(0, 0.01, n), rng.normal(0, 0.01, n)], rate=8000)
    _wav(out / "silence.wav", [np.zeros(n)])
    _wav(out / "dither.wav", [rng.normal(0, 3e-5, n)])
    _wav(out / "tone_440.wav", [0.3 * np.sin(2 * np.pi * 440 * t)])
    def pair(lo: float, hi: float) -> np.ndarray:
        return 0.2 * (np.sin(2 * np.pi * lo * t) + np.sin(2 * np.pi * hi * t))

    _wav(out / "ringback.wav", [pair(440, 480) * (t % 6 < 2)])
    _wav(out / "busy.wav", [pair(480, 620) * (t % 1 < 0.5)])
    _wav(out / "fax.wav", [0.3 * np.sin(2 * np.pi * 1100 * t) * (t % 3.5 < 0.5)])
    dtmf = np.zeros(n)
    for i, (lo, hi) in enumerate([(697, 1209), (770, 1336), (852, 1477), (941, 1336)] * 7):
        s = int(i * 0.5 * RATE)
        tt = np.arange(int(0.2 * RATE)) / RATE
        dtmf[s:s + tt.size] = 0.2 * (np.sin(2 * np.pi * lo * tt) + np.sin(2 * np.pi * hi * tt))
    _wav(out / "dtmf.wav", [dtmf])
    _wav(out / "hum_50hz.wav", [sum(0.05 / h * np.sin(2 * np.pi * 50 * h * t) for h in range(1, 8))
                                + rng.normal(0, 0.003, n)])
    clicks = np.zeros(n)
    clicks[rng.integers(0, n, 60)] = 0.8
    _wav(out / "clicks.wav", [clicks])
    music = np.zeros(n)
    for beat in range(int(n / RATE * 4)):
        s = beat * RATE // 4
        tt = np.arange(min(int(0.4 * RATE), n - s)) / RATE
        f0 = [262, 294, 330, 349, 392, 440, 494, 523][rng.integers(8)]
        music[s:s + tt.size] += sum(0.08 / h * np.sin(2 * np.pi * f0 * h * tt + h) for h in range(1, 7)) \
            * np.exp(-4 * tt)
        if beat % 2 == 0:
            k = min(1600, tt.size)
            music[s:s + k] += 0.15 * rng.normal(0, 1, k) * np.exp(-np.arange(k) / 200)
    _wav(out / "music.wav", [music])
    _wav(out / "chords.wav", [sum(0.05 * np.sin(2 * np.pi * f * t) for f in (220, 277, 330, 440))
                              * (0.6 + 0.4 * np.sin(2 * np.pi * 0.25 * t))])
    shaped = np.fft.rfft(_coloured(rng, n, 1))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    shaped[(freqs < 100) | (freqs > 4000)] = 0
    speechlike = np.fft.irfft(shaped, n)
    _wav(out / "speech_shaped_noise_4hz.wav", [0.2 * speechlike / speechlike.std()
                                                * np.clip(np.sin(2 * np.pi * 4 * t), 0, None)])
    notes = [220, 247, 262, 294, 330, 349, 392, 440]
    for k in range(4):
        pitches = [notes[i] * (1 if k % 2 else 0.5) for i in rng.integers(0, 8, 20)]
        _wav(out / f"sung_{k}.wav", [_voice(rng, pitches, "".join(rng.choice(list("aeiou"), 20)), 0.5)])
    _wav(out / "hum_u.wav", [_voice(rng, [150] * 10, "u" * 10, 1.0)])
    laugh = []
    for i in range(20):
        laugh += [_voice(rng, [280 + float(rng.integers(-40, 40))], "a", 0.12), np.zeros(int(0.08 * RATE))]
        if i % 5 == 4:
            laugh.append(np.zeros(int(0.6 * RATE)))
    _wav(out / "laughter_like.wav", [np.concatenate(laugh)])
    # Random bytes behind a WAV header: every byte pair is a sample.
    body = rng.integers(0, 256, 2 * 8000 * 10, dtype=np.uint8).tobytes()
    for name, tag, bits, data in (("random_pcm16", 1, 16, body), ("random_mulaw", 7, 8, body[: 8000 * 10])):
        fmt = struct.pack("<HHIIHH", tag, 1, 8000, 8000 * bits // 8, bits // 8, bits)
        chunk = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt
        chunk += b"data" + struct.pack("<I", len(data)) + data
        (out / f"{name}.wav").write_bytes(b"RIFF" + struct.pack("<I", len(chunk)) + chunk)
    for source in speech:
        audio = decode(source)
        channels = [c[: 60 * RATE] for c in audio.channels]
        _wav(out / f"reversed_{source.stem}.wav", [c[::-1].copy() for c in channels])
        pieces = [c[: c.size // 1280 * 1280].reshape(-1, 1280) for c in channels]
        _wav(out / f"shuffled_{source.stem}.wav", [p[rng.permutation(len(p))].reshape(-1) for p in pieces])


def measure(files: list[Path], layout: str, rubric_path: Path, policies_path: Path) -> None:
    """One JSON line per file with the figures `require_speech` reads."""
    from qa_service.errors import NoSpeech, QAServiceError
    from qa_service.pipeline import agent_cues, load_engines, transcribe_call, vocabulary
    from qa_service.rules.load import load_policy_pack, load_rubric
    from qa_service.settings import Settings
    from qa_service.stages.decode import decode
    from qa_service.stages.transcribe import require_speech, words_heard

    settings = Settings()
    engines = load_engines(settings)
    rubric, policies = load_rubric(rubric_path), load_policy_pack(policies_path)
    for path in files:
        row: dict[str, object] = {"file": str(path)}
        try:
            audio = decode(path, max_duration_s=settings.max_duration_s)
        except QAServiceError as exc:
            print(json.dumps({**row, "refused": str(exc)}), flush=True)  # noqa: T201
            continue
        transcript = transcribe_call(
            audio, engines.transcriber, layout, vocabulary=vocabulary(rubric, policies),  # type: ignore[arg-type]
            agent_phrases=agent_cues(rubric), voices=engines.voices, other_languages=engines.other_languages,
            vocabulary_language=rubric.language)
        words, sure, mean = words_heard(transcript)
        try:
            require_speech(transcript)
            speech = True
        except NoSpeech:
            speech = False
        row.update(seconds=round(audio.duration_s, 1), voice_s=transcript.model.get("voice_activity_s"),
                   words=words, sure=sure, mean=round(mean, 3), language=transcript.language, speech=speech)
        print(json.dumps(row), flush=True)  # noqa: T201


def random_bytes(n: int) -> None:
    """Count how the decoder ends on files of random bytes, by size and file name."""
    import collections
    import os
    import tempfile

    from qa_service.errors import AudioError
    from qa_service.stages.decode import decode

    logging.disable(logging.WARNING)  # "damaged after 0.0 s" for each partly decoded file
    outcomes: collections.Counter[tuple[int, str, str]] = collections.Counter()
    with tempfile.TemporaryDirectory() as tmp:
        for size in (20_000, 200_000, 2_000_000):
            for _ in range(n):
                data = os.urandom(size)
                for name in ("noise", *(f"noise.{ext}" for ext in
                                        ("wav", "mp3", "ogg", "flac", "m4a", "aac", "opus", "amr", "bin"))):
                    path = Path(tmp) / name
                    path.write_bytes(data)
                    try:
                        audio = decode(path)
                        outcome = f"decoded {audio.source_format}, {audio.duration_s:.2f} s"
                    except AudioError as exc:
                        outcome = str(exc)
                    outcomes[size, name, outcome] += 1
    for (size, name, outcome), count in sorted(outcomes.items()):
        print(f"{size:>9} {name:<11} {count:>5}  {outcome}")  # noqa: T201


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("render")
    r.add_argument("out", type=Path)
    r.add_argument("--speech", type=Path, nargs="*", default=[])
    m = sub.add_parser("measure")
    m.add_argument("files", type=Path, nargs="+")
    m.add_argument("--layout", default="auto", choices=["auto", "mono", "stereo", "stereo-agent-right"])
    m.add_argument("--rubric", type=Path, default=ROOT / "samples" / "rubric.yaml")
    m.add_argument("--policies", type=Path, default=ROOT / "samples" / "policies.yaml")
    sub.add_parser("random").add_argument("n", type=int)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    if args.command == "render":
        render(args.out, args.speech)
    elif args.command == "random":
        random_bytes(args.n)
    else:
        measure(args.files, args.layout, args.rubric, args.policies)


if __name__ == "__main__":
    main()
