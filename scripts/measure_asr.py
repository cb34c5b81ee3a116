#!/usr/bin/env python3
"""Measure transcription and speaker attribution on rendered and real calls (a measuring tool, not a test).

  measure_asr.py calls --truth DIR --kind stereo|mono --rubrics DIR [--options JSON] [--vocab-from RUBRIC]
      transcribe DIR/NAME.KIND.wav, write NAME.scorecard.json (transcript only) and run judge.py on them:
      speaker_accuracy and word_keep_rate.
  measure_asr.py wer FILE.wav... [--options JSON] [--baseline] [--vocab-from RUBRIC [--policies PACK]]
      word error rate against the FILE.txt beside each recording; --baseline runs bare faster-whisper
      (default options, same model) instead of the service's transcriber.
  measure_asr.py turns FILE.wav --stm FILE.stm
      share of reference turns whose overlapping segments carry the right speaker (clusters mapped
      to the reference speakers in the best way).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import sys
import tempfile
import time
from dataclasses import replace
from itertools import permutations
from pathlib import Path

import numpy as np
import yaml

from qa_service.pipeline import transcribe_call
from qa_service.records import Segment, Transcription
from qa_service.stages.decode import decode
from qa_service.stages.transcribe import DecodeOptions, load_transcriber
from qa_service.stages.voiceprint import VoiceEncoder, load_voice_encoder

ONES = "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " \
       "sixteen seventeen eighteen nineteen".split()
TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()


def number_words(n: int) -> str:
    if n < 20:
        return ONES[n]
    if n < 100:
        return TENS[n // 10] + ("" if n % 10 == 0 else " " + ONES[n % 10])
    if n < 1000:
        rest = n % 100
        return ONES[n // 100] + " hundred" + ("" if rest == 0 else " and " + number_words(rest))
    if n < 10000:
        rest = n % 1000
        return number_words(n // 1000) + " thousand" + ("" if rest == 0 else " " + number_words(rest))
    return " ".join(ONES[int(d)] for d in str(n))


def normalise(text: str) -> list[str]:
    text = text.lower().replace("%", " percent").replace("$", " ")
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    text = re.sub(r"\d+", lambda m: " " + number_words(int(m.group())) + " ", text)
    text = re.sub(r"[^a-z' ]+", " ", text.replace("-", " "))
    return [w.strip("'") for w in text.split() if w.strip("'") and w not in ("and",)]


def wer(ref: list[str], hyp: list[str]) -> tuple[int, int]:
    d = np.arange(len(hyp) + 1)
    for i, r in enumerate(ref, 1):
        prev, d[0] = d.copy(), i
        for j, h in enumerate(hyp, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (r != h))
    return int(d[len(hyp)]), len(ref)


def reference_text(path: Path) -> str:
    raw = path.read_text()
    # "Speaker: text" transcripts and Custom Speech "file<TAB>text" lines keep only the text.
    lines = [re.sub(r"^[^\t]*\t", "", ln) for ln in raw.splitlines()]
    lines = [re.sub(r"^[A-Z][\w ]{0,20}:\s", "", ln) for ln in lines]
    return " ".join(lines)


def load_options(text: str | None, base: DecodeOptions) -> DecodeOptions:
    return replace(base, **json.loads(text)) if text else base


def load_voices(name: str) -> VoiceEncoder | None:
    from qa_service.modelstore import resolve_voice_model

    return None if name == "none" else load_voice_encoder(resolve_voice_model(name))


class BareWhisper:
    """faster-whisper with its default options and its own segment times: the "before" of every number."""

    def __init__(self, model):
        self.model = model

    def transcribe(self, samples, vocabulary=(), *, one_party=False):
        segs, _ = self.model.transcribe(samples)
        return Transcription(tuple(Segment("unknown", s.start, s.end, s.text.strip()) for s in segs))


def rules_vocabulary(rubric_path: str, policies_path: str | None) -> list[str]:
    """The vocabulary qa_service.pipeline gives the recogniser: criteria phrases (never prohibited ones)
    and policy topics."""
    rubric = yaml.safe_load(Path(rubric_path).read_text())
    vocab = [p for c in rubric["criteria"] for p in c.get("phrases", [])]
    if policies_path:
        facts = yaml.safe_load(Path(policies_path).read_text())["facts"]
        vocab += [t for f in facts for t in f.get("topic", [])]
    return list(dict.fromkeys(vocab))


def cmd_calls(args) -> None:
    spec = importlib.util.spec_from_file_location("judge", args.judge)
    judge = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(judge)
    tr = load_transcriber(args.model, cache_dir=Path(args.cache))
    tr.options = load_options(args.options, tr.options)
    rubric = yaml.safe_load(Path(args.rubric).read_text())
    # The same cues that qa_service.pipeline derives from a rubric.
    cues = list(dict.fromkeys(p for c in rubric["criteria"] if c.get("speaker") == "agent"
                              for p in c.get("phrases", [])))
    vocab = rules_vocabulary(args.rubric, args.policies) if args.vocab else []
    engine = BareWhisper(tr.model) if args.baseline else tr
    cards = Path(tempfile.mkdtemp(prefix="asr-cards-"))
    layout = "auto" if args.kind == "mono" else "stereo"
    total_audio = total_time = 0.0
    voices = load_voices(args.voices)
    for truth in sorted(Path(args.truth).glob("*.truth.json")):
        name = truth.name.removesuffix(".truth.json")
        audio = decode(Path(args.truth) / f"{name}.{args.kind}.wav")
        t0 = time.time()
        t = transcribe_call(audio, engine, layout=layout, vocabulary=vocab, agent_phrases=cues,
                            voices=voices)
        total_time += time.time() - t0
        total_audio += audio.duration_s
        card = {"call_id": name, "passed": False, "criteria": [], "violations": [],
                "transcript": [{"speaker": s.speaker, "start": s.start, "end": s.end, "text": s.text}
                               for s in t.segments]}
        (cards / f"{name}.scorecard.json").write_text(json.dumps(card))
    res = judge.judge(args.truth, cards, args.rubrics)
    print(json.dumps({"kind": args.kind, "baseline": args.baseline,
                      "options": json.loads(args.options or "{}"), "vocab": bool(vocab),
                      "speaker_accuracy": res["speaker_accuracy"], "word_keep_rate": res["word_keep_rate"],
                      "x_realtime": round(total_audio / total_time, 1), "cards": str(cards)}))


def cmd_wer(args) -> None:
    tr = load_transcriber(args.model, cache_dir=Path(args.cache))
    tr.options = load_options(args.options, tr.options)
    vocab = rules_vocabulary(args.vocab_from, args.policies) if args.vocab_from else []
    errs = n = 0
    for f in args.files:
        f = Path(f)
        audio = decode(f)
        t0 = time.time()
        if args.baseline:
            segs, _ = tr.model.transcribe(audio.channels[0])
            hyp = " ".join(s.text for s in segs)
        else:
            segments = transcribe_call(audio, tr, layout="mono", vocabulary=vocab).segments
            hyp = " ".join(s.text for s in segments)
        e, m = wer(normalise(reference_text(f.with_suffix(".txt"))), normalise(hyp))
        errs, n = errs + e, n + m
        print(f"{f.name}: WER {e / m:.3f} ({e}/{m}) {time.time() - t0:.1f}s", file=sys.stderr)
        if args.show:
            print(hyp, file=sys.stderr)
    print(json.dumps({"baseline": args.baseline, "options": json.loads(args.options or "{}"),
                      "vocab_from": args.vocab_from, "wer": round(errs / n, 4), "words": n}))


def turn_accuracy(segments: list[Segment], turns: list[tuple[str, float, float]]) -> float:
    refs = sorted({sp for sp, _, _ in turns})
    hyps = sorted({s.speaker for s in segments})
    best = 0.0
    for perm in permutations(hyps, min(len(hyps), len(refs))):
        mapping = dict(zip(perm, refs, strict=False))
        ok = 0
        for sp, a, b in turns:
            dur: dict[str, float] = {}
            for s in segments:
                ov = min(s.end, b) - max(s.start, a)
                if ov > 0:
                    dur[s.speaker] = dur.get(s.speaker, 0.0) + ov
            ok += bool(dur) and mapping.get(max(dur, key=dur.get)) == sp
        best = max(best, ok / len(turns))
    return best


def cmd_turns(args) -> None:
    tr = load_transcriber(args.model, cache_dir=Path(args.cache))
    tr.options = load_options(args.options, tr.options)
    turns = []
    for line in Path(args.stm).read_text().splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) >= 5 and not line.startswith(";;"):
            turns.append((parts[2], float(parts[3]), float(parts[4])))
    t = transcribe_call(decode(Path(args.file)), tr, layout="mono", voices=load_voices(args.voices))
    for s in t.segments:
        print(f"{s.speaker:9s} {s.start:6.2f} {s.end:6.2f} {s.confidence or 0:.2f} {s.text}", file=sys.stderr)
    print(json.dumps({"turn_accuracy": round(turn_accuracy(list(t.segments), turns), 4),
                      "turns": len(turns), "speakers": t.model.get("speakers")}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--cache", default="var/models")
    ap.add_argument("--options", help="JSON object of DecodeOptions overrides")
    ap.add_argument("--voices", default="resemblyzer", help="voice model for mono calls, or none")
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calls")
    c.add_argument("--truth", required=True)
    c.add_argument("--kind", choices=["stereo", "mono"], required=True)
    c.add_argument("--rubrics", required=True)
    c.add_argument("--rubric", required=True, help="rubric whose agent phrases tell the agent's voice")
    c.add_argument("--judge", required=True)
    c.add_argument("--policies", help="policy pack whose topics join the vocabulary")
    c.add_argument("--vocab", action="store_true", help="pass the rubric's phrases as vocabulary")
    c.add_argument("--baseline", action="store_true", help="bare faster-whisper, default options")
    w = sub.add_parser("wer")
    w.add_argument("files", nargs="+")
    w.add_argument("--baseline", action="store_true")
    w.add_argument("--vocab-from", help="rubric whose phrases are the recogniser's vocabulary")
    w.add_argument("--policies", help="policy pack whose topics join that vocabulary")
    w.add_argument("--show", action="store_true")
    t = sub.add_parser("turns")
    t.add_argument("file")
    t.add_argument("--stm", required=True)
    args = ap.parse_args()
    {"calls": cmd_calls, "wer": cmd_wer, "turns": cmd_turns}[args.cmd](args)


if __name__ == "__main__":
    main()
