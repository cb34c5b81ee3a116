#!/usr/bin/env python3
"""Measure speaker roles on real mono calls, word by word, and the time diarization takes (a measuring
tool, not a test).

  measure_speakers.py words FILE.wav... --out DIR [--vocab-from RUBRIC]
      transcribe each recording once (no diarization) and keep its segments and words in
      DIR/NAME.json with the recogniser's time, so that `score` can rerun diarization alone.
  measure_speakers.py score DIR [--rubric RUBRIC] [--voices resemblyzer|none] [--ref NAME=STM ...]
      label the kept words (diarize.attribute_speakers, the rubric's agent phrases as cues) and
      print per call: word accuracy against the STM beside the recording (or given by --ref; each
      word's reference speaker is the turn holding its midpoint, words outside every turn are not
      scored; clusters mapped to reference speakers the best way, and "roles" when the reference
      speakers are named agent and customer, with "turn_roles" as the development judge counts
      them), seconds in the voice model and in all of diarization,
      and the recogniser's seconds.

  The references: ../shared/real/conversations/pyannote_sample_phonecall.stm (human) and
  bench/real/azure_sales_call_120s.stm (made by reading the text); for a development call rendered
  by ../shared/eval/synth.py (NAME.mono.wav), its NAME.truth.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from itertools import permutations
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa_service.records import Segment, Word  # noqa: E402
from qa_service.stages import diarize, voiceprint  # noqa: E402
from qa_service.stages.decode import decode  # noqa: E402

REFS = {"azure_sales_call_120s": ROOT / "bench/real/azure_sales_call_120s.stm"}


def read_stm(path: Path) -> list[tuple[str, float, float]]:
    turns = []
    for line in path.read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) >= 5 and not line.startswith(";;"):
            turns.append((parts[2], float(parts[3]), float(parts[4])))
    return turns


def read_truth(path: Path) -> list[tuple[str, float, float]]:
    """The turns of a development call rendered by ../shared/eval/synth.py (NAME.truth.json)."""
    return [(t["speaker"], t["start"], t["end"]) for t in json.loads(path.read_text())["turns"]]


def turn_roles(segments: list[Segment], turns: list[tuple[str, float, float]]) -> float:
    """Share of reference turns whose overlapping segments carry the right role, by duration (as the
    development judge counts speaker accuracy)."""
    ok = 0
    for sp, a, b in turns:
        dur: dict[str, float] = {}
        for s in segments:
            ov = min(s.end, b) - max(s.start, a)
            if ov > 0:
                dur[s.speaker] = dur.get(s.speaker, 0.0) + ov
        ok += bool(dur) and max(dur, key=lambda k: dur[k]) == sp
    return round(ok / max(1, len(turns)), 4)


def agent_cues(rubric: Path) -> list[str]:
    """The cues qa_service.pipeline derives from a rubric: the phrases of its agent criteria."""
    data = yaml.safe_load(rubric.read_text())
    return list(dict.fromkeys(p for c in data["criteria"] if c.get("speaker") == "agent"
                              for p in c.get("phrases", [])))


def word_accuracy(segments: list[Segment], turns: list[tuple[str, float, float]]) -> dict[str, float | int]:
    """Share of scored words labelled right, under the best mapping of labels to reference speakers."""
    pairs = []
    for s in segments:
        for w in s.words or (Word(s.text, s.start, s.end),):
            mid = (w.start + w.end) / 2
            ref = next((sp for sp, a, b in turns if a <= mid < b), None)
            if ref is not None:
                pairs.append((s.speaker, ref))
    refs = sorted({r for _, r in pairs})
    hyps = sorted({h for h, _ in pairs})
    best = 0
    for perm in permutations(refs + [None] * len(hyps), len(hyps)):
        mapping = dict(zip(hyps, perm, strict=True))
        best = max(best, sum(mapping[h] == r for h, r in pairs))
    out: dict[str, float | int] = {"words": len(pairs), "mapped": round(best / max(1, len(pairs)), 4)}
    if set(refs) <= {"agent", "customer"}:
        out["roles"] = round(sum(h == r for h, r in pairs) / max(1, len(pairs)), 4)
    return out


def cmd_words(args) -> None:
    from qa_service.pipeline import transcribe_call
    from qa_service.stages.transcribe import load_transcriber

    tr = load_transcriber(args.model, cache_dir=Path(args.cache))
    vocab = []
    if args.vocab_from:
        rubric = yaml.safe_load(Path(args.vocab_from).read_text())
        vocab = list(dict.fromkeys(p for c in rubric["criteria"] for p in c.get("phrases", [])))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    keep = diarize.attribute_speakers
    diarize.attribute_speakers = lambda samples, segs, **kw: (list(segs), {"method": "none"})
    try:
        for f in map(Path, args.files):
            audio = decode(f)
            t0, w0 = time.process_time(), time.perf_counter()
            t = transcribe_call(audio, tr, layout="mono", vocabulary=vocab)
            cpu, wall = time.process_time() - t0, time.perf_counter() - w0
            segs = [{"start": s.start, "end": s.end, "text": s.text,
                     "words": [[w.text, w.start, w.end, w.probability] for w in s.words]} for s in t.segments]
            (out / f"{f.stem}.json").write_text(json.dumps(
                {"audio": str(f.resolve()), "recogniser_cpu_s": round(cpu, 1), "recogniser_s": round(wall, 1),
                 "vocab_from": args.vocab_from, "segments": segs}))
            print(f"{f.name}: {len(segs)} segments, recogniser {wall:.1f} s ({cpu:.1f} s of CPU)",
                  file=sys.stderr)
    finally:
        diarize.attribute_speakers = keep


def cmd_score(args) -> None:
    voices = None
    if args.voices != "none":
        from qa_service.modelstore import resolve_voice_model

        voices = voiceprint.load_voice_encoder(resolve_voice_model(args.voices))
    cues = agent_cues(Path(args.rubric))
    refs = dict(REFS)
    refs.update(dict(r.split("=", 1) for r in args.ref))
    spent = {"voice": 0.0}
    embed = voiceprint.VoiceEncoder.embed

    def timed_embed(self, *args):
        t0 = time.process_time()
        try:
            return embed(self, *args)
        finally:
            spent["voice"] += time.process_time() - t0

    voiceprint.VoiceEncoder.embed = timed_embed  # type: ignore[method-assign]
    rows = []
    for path in sorted(Path(args.dir).glob("*.json")):
        kept = json.loads(path.read_text())
        audio = Path(kept["audio"])
        segs = [Segment("unknown", s["start"], s["end"], s["text"], tuple(Word(*w) for w in s["words"]))
                for s in kept["segments"]]
        samples = decode(audio).channels[0]
        spent["voice"] = 0.0
        t0, w0 = time.process_time(), time.perf_counter()
        out, info = diarize.attribute_speakers(samples, segs, agent_phrases=cues, voices=voices)
        cpu, wall = time.process_time() - t0, time.perf_counter() - w0
        stm = Path(refs.get(audio.stem, audio.with_suffix(".stm")))
        truth = audio.with_name(audio.name.split(".")[0] + ".truth.json")
        row = {"call": audio.stem, "speakers": info.get("speakers"), "agent_by": info.get("agent_by"),
               "voice_cpu_s": round(spent["voice"], 2), "diarize_cpu_s": round(cpu, 2),
               "diarize_s": round(wall, 2), "recogniser_cpu_s": kept["recogniser_cpu_s"],
               "recogniser_s": kept.get("recogniser_s")}
        turns = read_stm(stm) if stm.exists() else read_truth(truth) if truth.exists() else None
        if turns:
            row.update(word_accuracy(out, turns))
            if "roles" in row:
                row["turn_roles"] = turn_roles(out, turns)
        print(json.dumps(row))
        rows.append(row)
        if args.show:
            for s in out:
                print(f"  {s.speaker:9s} {s.start:6.2f} {s.end:6.2f} {s.confidence or 0:.2f} {s.text}",
                      file=sys.stderr)
    scored = [r for r in rows if "words" in r]
    if len(scored) > 1:  # word-weighted over the calls, turn accuracy averaged over them as the judge does
        n = sum(r["words"] for r in scored)
        total: dict[str, object] = {"call": "all", "calls": len(scored), "words": n,
                                    "diarize_cpu_s": round(sum(r["diarize_cpu_s"] for r in rows), 2)}
        for key in ("mapped", "roles"):
            if all(key in r for r in scored):
                total[key] = round(sum(r[key] * r["words"] for r in scored) / n, 4)
        if all("turn_roles" in r for r in scored):
            total["turn_roles"] = round(sum(r["turn_roles"] for r in scored) / len(scored), 4)
        print(json.dumps(total))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    w = sub.add_parser("words")
    w.add_argument("files", nargs="+")
    w.add_argument("--out", required=True)
    w.add_argument("--model", default="tiny.en")
    w.add_argument("--cache", default="var/models")
    w.add_argument("--vocab-from", help="rubric whose phrases are the recogniser's vocabulary")
    s = sub.add_parser("score")
    s.add_argument("dir")
    s.add_argument("--rubric", default=str(ROOT / "samples/rubric.yaml"))
    s.add_argument("--voices", default="resemblyzer", help="voice model, or none")
    s.add_argument("--ref", action="append", default=[], help="NAME=STM: reference turns for a recording")
    s.add_argument("--show", action="store_true", help="print the labelled segments")
    args = ap.parse_args()
    {"words": cmd_words, "score": cmd_score}[args.cmd](args)


if __name__ == "__main__":
    main()
