"""Measure how far the scorecards of a call move when its recording is stored in another codec.

    PYTHONPATH=. .venv/bin/python scripts/measure_codecs.py /tmp/eval16 [--quick] [--out DIR]

Reads every NAME.stereo.wav (16-bit PCM, agent left, customer right) with its NAME.truth.json from
the folder that the evaluation kit's synth.py wrote, encodes it with PyAV into each codec below,
runs the service's pipeline on the original and on every encoding, and prints one row per codec:

  criterion agreement  share of (call, criterion) verdicts equal to those of the WAV scorecard
  verdict agreement    share of calls whose pass/fail equals the WAV scorecard's
  violation agreement  share of calls whose set of violations equals the WAV scorecard's
  flagged agreement    the same, a violation counted when the card lists it under to_check (for a
                       reviewer to listen to) as well
  criteria accuracy    share of (call, criterion) verdicts equal to the truth (judge.py's measure)

With --out, every scorecard is written to DIR/CODEC/NAME.scorecard.json, for judge.py and for
reading which words moved; the rows that differ from WAV are listed after the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import wave
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import av
import numpy as np

from qa_service.pipeline import load_engines, process_audio
from qa_service.records import CallMeta
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.settings import Settings

EVAL = Path("/work/shared/eval")


@dataclass(frozen=True)
class Codec:
    """One way a recorder stores a call: FFmpeg encoder, container, rate and bit rate."""

    name: str
    encoder: str
    container: str
    suffix: str
    rate: int | None = None  # None keeps the render's rate
    bit_rate: int | None = None
    options: dict[str, str] = field(default_factory=dict)
    note: str = ""
    dither_lsb: float = 0.0  # triangular noise added before writing, in 16-bit steps (controls only)


CODECS = [
    Codec("wav", "pcm_s16le", "wav", ".wav", note="the render itself, the reference"),
    Codec("flac", "flac", "flac", ".flac", note="lossless: the same samples, a check that runs repeat"),
    Codec("mp3-128k", "libmp3lame", "mp3", ".mp3", bit_rate=128_000,
          note="LAME CBR; at 8 kHz LAME caps it at 64 kbit/s"),
    Codec("mp3-32k", "libmp3lame", "mp3", ".mp3", bit_rate=32_000, note="LAME CBR, joint stereo"),
    Codec("aac-m4a-64k", "aac", "ipod", ".m4a", bit_rate=64_000, note="FFmpeg's AAC-LC in M4A"),
    Codec("opus-24k", "libopus", "ogg", ".opus", bit_rate=24_000, options={"application": "voip"},
          note="VBR, voip mode, both channels in one stream"),
    Codec("mulaw-8k", "pcm_mulaw", "wav", ".wav", rate=8000, note="G.711 mu-law, 8 kHz, both channels"),
    Codec("alaw-8k", "pcm_alaw", "wav", ".wav", rate=8000, note="G.711 A-law, 8 kHz, both channels"),
    Codec("gsm-8k", "libgsm", "wav", ".wav", rate=8000, note="GSM 06.10, 8 kHz"),
]
# Not codecs: controls that tell a codec's own loss from any change at all to the samples (dither)
# and, for G.711, from the 8 kHz band limit (plain 16-bit PCM at 8 kHz). Run them with --codecs.
CONTROLS = [
    Codec("wav-dither", "pcm_s16le", "wav", ".wav", dither_lsb=1.0,
          note="control: the render plus 1 LSB of triangular dither"),
    Codec("pcm-8k", "pcm_s16le", "wav", ".wav", rate=8000, note="control: 16-bit PCM at 8 kHz"),
]
QUICK_CALLS = 2
QUICK_CODECS = ("wav", "mp3-32k", "opus-24k", "mulaw-8k")


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """16-bit PCM WAV as float32 (channels, n) and its rate."""
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2:
            raise SystemExit(f"{path}: expected 16-bit PCM, got {8 * w.getsampwidth()}-bit")
        raw = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
        x = raw.reshape(-1, w.getnchannels()).T.astype(np.float32) / 32768.0
        return x, w.getframerate()


def resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    """Float (channels, n) at another rate, by FFmpeg's resampler (as a recorder's would)."""
    if rate == to:
        return x
    layout = "stereo" if x.shape[0] == 2 else "mono"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=to)
    planes = np.ascontiguousarray(x, dtype=np.float32)
    frame = av.AudioFrame.from_ndarray(planes, format="fltp", layout=layout)
    frame.sample_rate = rate
    out = [f.to_ndarray() for f in resampler.resample(frame)]
    out += [f.to_ndarray() for f in resampler.resample(None)]
    return np.concatenate(out, axis=1)


def writable(codec: Codec) -> str | None:
    """Why PyAV's FFmpeg cannot write this codec, or None when it can."""
    try:
        av.codec.Codec(codec.encoder, "w")
    except Exception as exc:  # noqa: BLE001 - FFmpeg names a missing encoder in several ways
        return f"no {codec.encoder} encoder in PyAV's FFmpeg ({type(exc).__name__})"
    return None


def encode(x: np.ndarray, rate: int, codec: Codec, path: Path) -> None:
    """Write float (channels, n) samples with the codec's encoder to path, every channel kept."""
    layout = "stereo" if x.shape[0] == 2 else "mono"
    rate_out = codec.rate or rate
    x = resample(x, rate, rate_out)
    if codec.dither_lsb:
        noise = np.random.default_rng(0)
        x = x + (noise.random(x.shape) - noise.random(x.shape)).astype(np.float32) * codec.dither_lsb / 32768
    with av.open(str(path), "w", format=codec.container) as out:
        stream = out.add_stream(codec.encoder, rate=rate_out, layout=layout, options=codec.options)
        if codec.bit_rate:
            stream.bit_rate = codec.bit_rate
        fmt = stream.codec_context.format
        size = stream.codec_context.frame_size or 4096
        for start in range(0, x.shape[1], size):
            chunk = np.clip(x[:, start:start + size], -1, 1)
            if fmt.name.startswith("s16"):
                chunk = (chunk * 32767).astype(np.int16)
            elif fmt.name.startswith("s32"):
                chunk = (chunk * 2147483000).astype(np.int32)
            else:
                chunk = chunk.astype(np.float32)
            # planar formats take (channels, n); packed ones one row of interleaved samples
            data = chunk if fmt.is_planar else chunk.T.reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(data), format=fmt.name, layout=layout)
            frame.sample_rate = rate_out
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)


def violations(card: dict[str, Any], fields: tuple[str, ...] = ("violations",)) -> set[str]:
    """The card's violations (or other lists of the same shape) as judge.py names them."""
    return {f"outdated:{v.get('policy_id') or v['id']}"
            if v.get("kind") == "outdated_policy" or v.get("policy_id") else v["id"]
            for f in fields for v in card.get(f, [])}


def criteria(card: dict[str, Any]) -> dict[str, bool]:
    """Criterion id -> passed."""
    return {c["id"]: bool(c["passed"]) for c in card.get("criteria", [])}


def said(card: dict[str, Any], start: float, end: float, speaker: str | None) -> str:
    """What the card's transcript has for that speaker around that time."""
    return " / ".join(seg["text"] for seg in card.get("transcript", [])
                      if seg["end"] >= start - 1 and seg["start"] <= end + 1
                      and (speaker is None or seg.get("speaker") == speaker)) or "(nothing)"


def evidence(passed: dict[str, Any], failed: dict[str, Any], cid: str) -> str:
    """The words that passed a criterion on one card, and what the other card heard there."""
    item = next((c for c in passed.get("criteria", []) if c["id"] == cid), {})
    found = (item.get("evidence") or [{}])[0]
    if "start" not in found:
        return ""
    return (f"\n      passed on {found['text']!r}"
            f"\n      failed on {said(failed, found['start'], found['end'], found.get('speaker'))!r}")


def compare(cards: dict[str, dict[str, Any]], reference: dict[str, dict[str, Any]],
            truths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Agreement of one codec's cards with the reference cards, and accuracy against the truth."""
    crit_same = crit_n = verdict_same = viol_same = flag_same = truth_ok = truth_n = 0
    flips: list[str] = []
    for name, card in cards.items():
        want = truths[name]["expect"]["criteria"]
        got = criteria(card)
        truth_n += len(want)
        truth_ok += sum(got.get(cid) == ok for cid, ok in want.items())
        ref = reference.get(name)
        if ref is None:
            continue
        ref_crit = criteria(ref)
        for cid in want:
            crit_n += 1
            if got.get(cid) == ref_crit.get(cid):
                crit_same += 1
            else:
                why = evidence(ref, card, cid) if ref_crit.get(cid) else evidence(card, ref, cid)
                flips.append(f"{name} {cid}: wav {ref_crit.get(cid)} -> {got.get(cid)} "
                             f"(truth {want[cid]}){why}")
        verdict_same += bool(card.get("passed")) == bool(ref.get("passed"))
        both = ("violations", "to_check")
        flag_same += violations(card, both) == violations(ref, both)
        if violations(card) != violations(ref):
            flips.append(f"{name} violations: wav {sorted(violations(ref))} -> {sorted(violations(card))} "
                         f"(truth {sorted(truths[name]['expect'].get('violations', []))})")
            for flagged, other in ((ref, card), (card, ref)):
                for v in flagged.get("violations", []):
                    if ({v["id"], f"outdated:{v.get('policy_id')}"} & violations(other)) or "start" not in v:
                        continue
                    where = "wav" if flagged is ref else "this codec"
                    flips.append(f"  {v['id']} flagged by {where} on {v['text']!r}; the other heard "
                                 f"{said(other, v['start'], v['end'], v.get('speaker'))!r}")
        else:
            viol_same += 1
    calls = sum(name in reference for name in cards)
    return {"criterion_agreement": crit_same / crit_n if crit_n else None,
            "verdict_agreement": verdict_same / calls if calls else None,
            "violation_agreement": viol_same / calls if calls else None,
            "flagged_agreement": flag_same / calls if calls else None,
            "criteria_accuracy": truth_ok / truth_n if truth_n else None,
            "flips": flips}


def pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:5.1f}%"


def main() -> int:
    """Encode, score and print the agreement table."""
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("renders", type=Path, help="folder with NAME.stereo.wav and NAME.truth.json")
    parser.add_argument("--rubric", type=Path, default=EVAL / "rubrics" / "visa-intake.yaml")
    parser.add_argument("--policies", type=Path, default=EVAL / "policies" / "freedonia.yaml")
    parser.add_argument("--codecs", help="comma-separated codec names (default: all codecs): "
                        + ",".join(c.name for c in CODECS) + "; controls: "
                        + ",".join(c.name for c in CONTROLS))
    parser.add_argument("--quick", action="store_true",
                        help=f"the first {QUICK_CALLS} calls and {', '.join(QUICK_CODECS)} only")
    parser.add_argument("--out", type=Path, help="write every scorecard to OUT/CODEC/NAME.scorecard.json")
    parser.add_argument("--json", action="store_true", help="print the results as JSON after the table")
    parser.add_argument("--cards", type=Path, help="compare the scorecards an earlier --out run wrote to "
                        "CARDS/CODEC/ instead of encoding and scoring again (no bit rates or timings)")
    args = parser.parse_args()

    truths = {t.name.removesuffix(".truth.json"): json.loads(t.read_text())
              for t in sorted(args.renders.glob("*.truth.json"))}
    names = [n for n in truths if (args.renders / f"{n}.stereo.wav").is_file()]
    wanted = args.codecs.split(",") if args.codecs else [c.name for c in CODECS]
    if args.quick:
        names, wanted = names[:QUICK_CALLS], [w for w in wanted if w in QUICK_CODECS]
    unknown = set(wanted) - {c.name for c in CODECS + CONTROLS}
    if unknown:
        parser.error(f"unknown codecs: {', '.join(sorted(unknown))}")
    if "wav" not in wanted:
        wanted.insert(0, "wav")  # the reference every other row is compared with
    codecs = [c for c in CODECS + CONTROLS if c.name in wanted]
    if not names:
        parser.error(f"no NAME.stereo.wav with NAME.truth.json in {args.renders}")

    cards: dict[str, dict[str, dict[str, Any]]] = {c.name: {} for c in codecs}
    stats: dict[str, dict[str, float]] = {c.name: {"bytes": 0, "seconds": 0, "cpu_s": 0, "wall_s": 0}
                                          for c in codecs}
    skipped = {c.name: reason for c in codecs if (reason := writable(c))}
    if args.cards:
        for codec in codecs:
            for name in names:
                path = args.cards / codec.name / f"{name}.scorecard.json"
                if path.is_file():
                    cards[codec.name][name] = json.loads(path.read_text())
    else:
        score_encodings(args, names, codecs, truths, cards, stats, skipped)
    print_table(args, names, codecs, truths, cards, stats, skipped)
    return 0


def score_encodings(args: argparse.Namespace, names: list[str], codecs: list[Codec], truths: dict[str, Any],
                    cards: dict[str, dict[str, Any]], stats: dict[str, dict[str, float]],
                    skipped: dict[str, str]) -> None:
    """Encode every call in every codec and score it; fills cards and stats."""
    settings = Settings()
    started = time.perf_counter()
    engines = load_engines(settings)
    rubric, policies = load_rubric(args.rubric), load_policy_pack(args.policies)
    print(f"models loaded in {time.perf_counter() - started:.1f} s ({settings.asr_model})", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="codecs-") as tmp:
        for name in names:
            x, rate = read_wav(args.renders / f"{name}.stereo.wav")
            truth = truths[name]
            meta = CallMeta(name, truth["agent_id"], date.fromisoformat(truth["call_date"]),
                            channels="stereo")
            for codec in codecs:
                if codec.name in skipped:
                    continue
                path = Path(tmp) / f"{name}.{codec.name}{codec.suffix}"
                encode(x, rate, codec, path)
                wall, cpu = time.perf_counter(), time.process_time()
                card = process_audio(path, meta, rubric, policies, engines).to_dict()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                s = stats[codec.name]
                s["bytes"] += path.stat().st_size
                s["seconds"] += x.shape[1] / rate
                s["wall_s"] += wall
                s["cpu_s"] += cpu
                cards[codec.name][name] = card
                if args.out:
                    (args.out / codec.name).mkdir(parents=True, exist_ok=True)
                    (args.out / codec.name / f"{name}.scorecard.json").write_text(json.dumps(card, indent=2))
                print(f"{name} {codec.name:12s} {path.stat().st_size / 1024:7.0f} KiB  {wall:5.1f} s  "
                      f"passed={card.get('passed')}", file=sys.stderr)



def print_table(args: argparse.Namespace, names: list[str], codecs: list[Codec], truths: dict[str, Any],
                cards: dict[str, dict[str, Any]], stats: dict[str, dict[str, float]],
                skipped: dict[str, str]) -> None:
    """One row per codec, then every verdict that differs from the WAV scorecard's."""
    results: dict[str, Any] = {}
    header = (f"{'codec':12s} {'kbit/s':>7s} {'criterion':>9s} {'verdict':>8s} {'violation':>9s} "
              f"{'flagged':>8s} {'criteria':>8s} {'s/call':>7s}  note")
    print(f"{len(names)} calls from {args.renders}; agreement with the WAV scorecards, "
          "accuracy against the truth")
    print(f"{'':12s} {'':>7s} {'agree':>9s} {'agree':>8s} {'agree':>9s} {'agree':>8s} {'accuracy':>8s}")
    print(header)
    for codec in codecs:
        if codec.name in skipped or not cards[codec.name]:
            skipped.setdefault(codec.name, "no scorecards")
            print(f"{codec.name:12s} {'-':>7s} {'-':>9s} {'-':>8s} {'-':>9s} {'-':>8s} {'-':>8s} {'-':>7s}  "
                  f"not written: {skipped[codec.name]}")
            results[codec.name] = {"skipped": skipped[codec.name]}
            continue
        r = compare(cards[codec.name], cards["wav"], truths)
        s = stats[codec.name]
        n = len(cards[codec.name])
        kbits = round(8 * s["bytes"] / s["seconds"] / 1000, 1) if s["seconds"] else None
        per_call = round(s["wall_s"] / n, 1) if s["seconds"] else None
        print(f"{codec.name:12s} {kbits or '-':>7} {pct(r['criterion_agreement']):>9s} "
              f"{pct(r['verdict_agreement']):>8s} {pct(r['violation_agreement']):>9s} "
              f"{pct(r['flagged_agreement']):>8s} "
              f"{pct(r['criteria_accuracy']):>8s} {per_call or '-':>7}  {codec.note}")
        results[codec.name] = {**r, "kbit_s": kbits, "wall_s_per_call": per_call,
                               "cpu_s_per_call": round(s["cpu_s"] / n, 1) if s["seconds"] else None}
    for codec_name, r in results.items():
        for flip in r.get("flips", []):
            print(f"  {codec_name}: {flip}")
    if args.json:
        print(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
