#!/usr/bin/env python3
"""The service on real recordings (../shared/real) against bare faster-whisper: word error rate and time.

For every recording there (or each FILE given), bare faster-whisper (the same model, int8, its
default options, every channel) and the whole pipeline (decode, transcribe, redact, score) with each
rubric; word error rate where a reference transcript sits beside the recording (FILE.txt; a stereo
file's reference has a line a channel, so its errors are the words missing or extra, in any order),
and the time of each. Bare and pipeline take turns on a file, so the machine's load falls on both.

  python bench/real_calls.py [--real ../shared/real] [--model tiny.en] [--narrowband-model NAME|same]
                             [--rubric NAME=PATH[,PACK] ...] [--only-rubric NAME] [--repeat N] [FILE ...]

Prints one table row a file and rubric (with faster-whisper's batched pipeline, batch 8, beside them),
then a JSON line of the totals. `make bench` runs it with the sample rubric when ../shared/real is
there. `--narrowband-model` is QA_ASR_MODEL_NARROWBAND (the settings' default unless given); bare
faster-whisper runs the model that decoded the file's first channel in the pipeline (the `model`
column). The three rubrics by default: the sample rubric, the development rubric (../shared/eval) and
bench/real/unfit-rubric.yaml, written for another business.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qa_service.pipeline import load_engines, process_audio  # noqa: E402
from qa_service.records import CallMeta  # noqa: E402
from qa_service.rules.load import load_policy_pack, load_rubric  # noqa: E402
from qa_service.settings import Settings  # noqa: E402
from qa_service.spoken import number_to_words  # noqa: E402

AUDIO = {".wav", ".flac", ".mp3", ".m4a", ".ogg", ".opus"}
SHARED = ROOT.parent / "shared"


def default_rubrics() -> dict[str, tuple[Path, Path]]:
    rubrics = {"sample": (ROOT / "samples/rubric.yaml", ROOT / "samples/policies.yaml"),
               "unfit": (ROOT / "bench/real/unfit-rubric.yaml", ROOT / "samples/policies.yaml")}
    dev = SHARED / "eval/rubrics/visa-intake.yaml"
    if dev.exists():
        rubrics["development"] = (dev, SHARED / "eval/policies/freedonia.yaml")
    return rubrics


def normalise(text: str) -> list[str]:
    """Lower-case words, numbers written out, punctuation and "and" dropped (Whisper writes "$595",
    references "five hundred and ninety-five dollars" or the other way round). What the redactor
    replaced ("<PERSON>") becomes "*", which matches any one word: redaction is not a recognition error."""
    text = re.sub(r"<[A-Z_]+>", " * ", text)
    text = text.lower().replace("%", " percent").replace("$", " ")
    text = re.sub(r"(\d),(\d{3})", r"\1\2", text)
    text = re.sub(r"\d+", lambda m: f" {number_to_words(int(m.group()))} ", text)
    text = re.sub(r"[^a-z'* ]+", " ", text.replace("-", " "))
    return [w.strip("'") for w in text.split() if w.strip("'") and w != "and"]


def reference(path: Path) -> list[str] | None:
    ref = path.with_suffix(".txt")
    if not ref.exists():
        return None
    lines = [re.sub(r"^[^\t]*\t", "", ln) for ln in ref.read_text().splitlines()]
    lines = [re.sub(r"^[A-Za-z][\w ]{0,20}:\s*", "", ln) for ln in lines]
    return normalise(" ".join(lines))


def errors(ref: list[str], hyp: list[str]) -> int:
    """Word-level edit distance."""
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row = row, [i] + [0] * len(hyp)
        for j, h in enumerate(hyp, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (r != h and h != "*"))
    return row[-1]


def bag_errors(ref: list[str], hyp: list[str]) -> int:
    """For a stereo file, whose channels' words interleave in time: words missing or extra, as bags."""
    from collections import Counter

    missing = Counter(ref) - Counter(hyp)
    extra = Counter(hyp) - Counter(ref)
    redacted = extra.pop("*", 0)
    return max(sum(missing.values()) - redacted, sum(extra.values()))


def bare(model, path: Path, batch_size: int = 0) -> tuple[str, float]:
    """faster-whisper alone with its default options on every channel, or its batched pipeline (with
    its own voice detector) at `batch_size`: the text and the seconds it took."""
    from faster_whisper import BatchedInferencePipeline, decode_audio

    t0 = time.perf_counter()
    channels = decode_audio(str(path), split_stereo=True)
    if (channels[0] == channels[1]).all():  # a mono file, duplicated
        channels = channels[:1]
    text = []
    for samples in channels:
        if batch_size:
            segments, _ = BatchedInferencePipeline(model).transcribe(samples, batch_size=batch_size)
        else:
            segments, _ = model.transcribe(samples)
        text += [s.text for s in segments]
    return " ".join(text), time.perf_counter() - t0


def pipeline(engines, path: Path, rubric, policies) -> tuple[str, float, dict]:
    t0 = time.perf_counter()
    meta = CallMeta(call_id=path.stem, agent_id="bench", call_date=date(2026, 12, 1))
    card = process_audio(path, meta, rubric, policies, engines)
    took = time.perf_counter() - t0
    text = " ".join(s.text for s in card.transcript)
    result = card.to_dict()
    verdicts = {c["id"]: c["passed"] for c in result["criteria"]}
    return text, took, {"score": result["score"], "passed": result["passed"], "criteria": verdicts,
                        "duration_s": result["duration_s"]}


def decoder(engines, path: Path):
    """The transcriber the pipeline gives the file's first channel (by its line)."""
    from qa_service.stages.decode import decode
    from qa_service.stages.transcribe import model_for_line

    return model_for_line(decode(path).channels[0], engines.transcriber, engines.narrowband)[0]


def recordings(real: Path, files: list[str]) -> list[Path]:
    if files:
        return [Path(f) for f in files]
    skip = {"chinese", "pii_text", "callcenter_text", "licenses"}
    return sorted(p for p in real.rglob("*") if p.suffix in AUDIO and p.parent.name not in skip)


def run(files: list[Path], model: str, rubrics: dict[str, tuple[Path, Path]], repeat: int = 1,
        show: bool = False, narrowband: str | None = None) -> dict:
    """Each file through bare faster-whisper, its batched pipeline and the service (once a rubric), in
    turn, `repeat` times; the fastest run of each counts. Prints a row a file and rubric."""
    loaded = {n: (load_rubric(r), load_policy_pack(p)) for n, (r, p) in rubrics.items()}
    settings = Settings(asr_model=model, **({"asr_model_narrowband": narrowband} if narrowband else {}))
    engines = load_engines(settings)
    if files:  # warm-up: the first call in a process pays one-off costs (spaCy, Presidio, the models)
        rubric, policies = next(iter(loaded.values()))
        pipeline(engines, files[0], rubric, policies)
        bare(decoder(engines, files[0]).model, files[0])
    rows = []
    print(f"{'file':44s} {'rubric':11s} {'model':7s} {'audio_s':>7s} {'s':>6s} {'bare_s':>6s} {'ratio':>5s} "
          f"{'batch_s':>7s} {'WER':>6s} {'bare':>6s} {'batch':>6s}")
    for path in files:
        ref = reference(path)
        count = bag_errors if "stereo" in path.parent.name else errors
        used = decoder(engines, path)
        whisper = used.model
        for name, (rubric, policies) in loaded.items():
            runs = []
            for _ in range(repeat):
                bare_text, bare_s = bare(whisper, path)
                batch_text, batch_s = bare(whisper, path, batch_size=8)
                text, took, card = pipeline(engines, path, rubric, policies)
                runs.append((bare_s, batch_s, took))
            bare_s, batch_s, took = (min(r[i] for r in runs) for i in range(3))
            row = {"file": path.name, "rubric": name, "model": used.name, "audio_s": card.pop("duration_s"),
                   "seconds": round(took, 1), "bare_seconds": round(bare_s, 1),
                   "batched_seconds": round(batch_s, 1), "ratio": round(took / bare_s, 2), **card}
            if ref:
                row["words"] = len(ref)
                for key, said in (("wer", text), ("bare_wer", bare_text), ("batched_wer", batch_text)):
                    row[key] = round(count(ref, normalise(said)) / len(ref), 3)
            rows.append(row)
            nan = float("nan")
            print(f"{path.name[:44]:44s} {name:11s} {used.name[:7]:7s}"
                  f" {row['audio_s']:7.1f} {took:6.1f} {bare_s:6.1f} "
                  f"{took / bare_s:5.2f} {batch_s:7.1f} {row.get('wer', nan):6.3f} "
                  f"{row.get('bare_wer', nan):6.3f} {row.get('batched_wer', nan):6.3f}", flush=True)
            if show:
                print(f"  pipeline: {text}\n  bare:     {bare_text}", flush=True)
    worst = max((r["wer"] - r["bare_wer"] for r in rows if "wer" in r), default=0.0)
    return {"model": model, "narrowband_model": settings.asr_model_narrowband, "rows": rows,
            "worst_wer_over_bare": round(worst, 3),
            "worst_ratio": max((r["ratio"] for r in rows), default=0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="*")
    ap.add_argument("--real", type=Path, default=SHARED / "real")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--narrowband-model", help="QA_ASR_MODEL_NARROWBAND: a model name, or same")
    ap.add_argument("--rubric", action="append", default=[], metavar="NAME=PATH[,POLICIES]")
    ap.add_argument("--only-rubric", action="append", default=[], metavar="NAME", help="of the three")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each, the fastest counts")
    ap.add_argument("--show", action="store_true", help="print each transcript")
    args = ap.parse_args()
    rubrics = {n: r for n, r in default_rubrics().items() if not args.only_rubric or n in args.only_rubric}
    for item in args.rubric:
        name, _, paths = item.partition("=")
        rubric, _, pack = paths.partition(",")
        rubrics[name] = (Path(rubric), Path(pack or ROOT / "samples/policies.yaml"))
    result = run(recordings(args.real, args.files), args.model, rubrics, args.repeat, args.show,
                 args.narrowband_model)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
