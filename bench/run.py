#!/usr/bin/env python3
"""`make bench`: how fast the service is, against the bare parts it is made of.

pipeline   whole pipeline (decode, transcribe, redact, score) against bare faster-whisper on the same
           audio with the same model, threads and decoding options, each file in turn, the fastest
           of --repeat runs counting; prints both throughputs (audio seconds per wall-clock second)
           and their ratio. Where Whisper falls back to sampling (noisy 8 kHz calls, base) the two
           draw different samples, and a file's time moves by up to a third from run to run.
           Audio: samples/audio, plus any folders given with --audio (e.g. long stereo telephone
           calls).
real       the same on the real recordings in ../shared/real when they are there (bench/real_calls.py,
           sample rubric): per file, mono and stereo, word error rate where a reference exists,
           and faster-whisper's batched pipeline beside the two.
storage    the pipeline as a worker runs it (upload into the input store, score, redacted audio stored,
           input deleted) with inputs in the local folder and in an S3-compatible object store (moto's
           S3 server, started here), same files and engines; both throughputs and their ratio (target:
           the object store within 5%); see bench/storage.py.
rescore    10,000 generated stored transcripts rescored with a changed rubric (target < 60 s).
rescan     100,000 stored, scored calls rescanned on publish of a policy pack version with a changed
           fee, as the worker does it (target < 60 s); see bench/rescore.py.
load       GET scorecard at 200 requests/s for 60 s against 2 API workers, SQLite and PostgreSQL
           (p50/p99, target p99 < 25 ms), and the agent aggregate over 100,000 scorecards
           (target < 150 ms); see bench/load.py.
readside   agent, team and vendor aggregates (whole year, a month, a scoped key) and list pages half a
           million calls deep by cursor over 1,000,000 scorecards on PostgreSQL (target < 150 ms each);
           with --before also as computed from the scorecards without the rollup; see bench/readside.py.

Usage: python bench/run.py [--audio DIR ...] [--model tiny.en] [--quick] [--repeat 2]
                           [--only pipeline|real|storage|rescore|rescan|load|readside]
                           [--readside-calls 1000000] [--before]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from qa_service.pipeline import load_engines, process_audio, vocabulary  # noqa: E402
from qa_service.records import CallMeta  # noqa: E402
from qa_service.rules.load import load_policy_pack, load_rubric  # noqa: E402
from qa_service.settings import Settings  # noqa: E402
from qa_service.stages.bandfill import band_edge  # noqa: E402

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus"}


def bare_whisper(transcriber, path: Path, vocabulary: list[str]) -> float:
    """Transcribe every channel of one file with faster-whisper alone, with the options the pipeline
    gives it (the vocabulary where the pipeline biases that channel); returns the audio seconds."""
    from faster_whisper import decode_audio

    channels = decode_audio(str(path), split_stereo=True)
    channels = channels if isinstance(channels, tuple) else (channels,)
    for samples in channels:
        biased = transcriber.biased(telephone=band_edge(samples) is not None, one_party=len(channels) == 2)
        options = transcriber.whisper_options(vocabulary=vocabulary if biased else ())
        segments, _ = transcriber.model.transcribe(samples, **options)
        list(segments)
    return len(channels[0]) / 16000


def bench_pipeline(files: list[Path], model: str, repeat: int = 2) -> dict:
    """Pipeline and bare faster-whisper throughput on the same files, same model and options.

    Each file is run bare and through the pipeline in turn, `repeat` times, and the fastest of each
    counts: on a shared machine the same decode can take a third longer from one run to the next,
    and interleaving keeps a slow spell from landing on one side only.
    """
    settings = Settings(asr_model=model)
    engines = load_engines(settings)
    rubric = load_rubric(ROOT / "samples/rubric.yaml")
    policies = load_policy_pack(ROOT / "samples/policies.yaml")
    words = vocabulary(rubric, policies)
    bare_whisper(engines.transcriber, files[0], words)  # warm-up: first call pays one-off costs
    audio_s = bare_s = pipe_s = 0.0
    for f in files:
        meta = CallMeta(f.stem, "bench", date(2026, 10, 1), "stereo")
        bare, pipe = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            seconds = bare_whisper(engines.transcriber, f, words)
            bare.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            process_audio(f, meta, rubric, policies, engines)
            pipe.append(time.perf_counter() - t0)
        audio_s += seconds
        bare_s += min(bare)
        pipe_s += min(pipe)
    result = {
        "model": model, "files": len(files), "audio_s": round(audio_s, 1), "repeat": repeat,
        "bare_whisper_x_realtime": round(audio_s / bare_s, 2),
        "pipeline_x_realtime": round(audio_s / pipe_s, 2),
        "ratio_pipeline_to_bare": round(bare_s / pipe_s, 3),
    }
    print(f"pipeline [{model}] {len(files)} files, {audio_s:.0f} s of audio, fastest of {repeat}: "
          f"bare faster-whisper {result['bare_whisper_x_realtime']}x real time, "
          f"pipeline {result['pipeline_x_realtime']}x real time, ratio {result['ratio_pipeline_to_bare']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", type=Path, action="append", default=[], help="extra folder of calls")
    ap.add_argument("--model", action="append", help="speech model(s) (default: tiny.en)")
    ap.add_argument("--only", choices=["pipeline", "real", "storage", "rescore", "rescan", "load",
                                       "readside"],
                    help="run one benchmark")
    ap.add_argument("--quick", action="store_true", help="shorter load run (10 s, 20,000 aggregate rows)")
    ap.add_argument("--repeat", type=int, default=2, help="pipeline bench: runs per file, the fastest counts")
    ap.add_argument("--transcripts", type=int, default=10_000, help="how many calls the rescore bench makes")
    ap.add_argument("--rescan-calls", type=int, default=100_000, help="how many calls the rescan bench makes")
    ap.add_argument("--readside-calls", type=int, default=1_000_000,
                    help="how many scored calls the read-side bench makes")
    ap.add_argument("--before", action="store_true",
                    help="read-side bench: also time the aggregates without the rollup")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    files = sorted(p for d in [ROOT / "samples/audio", *args.audio] for p in d.iterdir()
                   if p.suffix in AUDIO_SUFFIXES)
    results: dict[str, object] = {}
    if args.only in (None, "pipeline"):
        results["pipeline"] = [bench_pipeline(files, m, args.repeat) for m in (args.model or ["tiny.en"])]
    if args.only in (None, "real"):
        import real_calls

        if real_calls.SHARED.joinpath("real").is_dir():
            rubrics = {"sample": real_calls.default_rubrics()["sample"]}
            files = real_calls.recordings(real_calls.SHARED / "real", [])
            results["real"] = [real_calls.run(files, m, rubrics) for m in (args.model or ["tiny.en"])]
        else:
            print(f"real: not run: no recordings at {real_calls.SHARED / 'real'}")
    if args.only in (None, "storage"):
        import storage

        results["storage"] = [storage.run(files, m, max(args.repeat, 3)) for m in (args.model or ["tiny.en"])]
    if args.only in (None, "rescore"):
        import rescore

        results["rescore"] = rescore.run(args.transcripts)
    if args.only in (None, "rescan"):
        import rescore

        results["rescan"] = rescore.run_rescan(args.rescan_calls)
    if args.only in (None, "load"):
        import load

        results["load"] = figures = load.run(argparse.Namespace(quick=args.quick))
        for r in figures["results"]:
            if "error" in r:
                print(f"load [{r['backend']}]: not run: {r['error']}")
                continue
            lo = r["load"]
            print(f"load [{r['backend']}] {lo['rate']:.0f} req/s for {lo['duration_s']:.0f} s: "
                  f"p50 {lo.get('latency_ms_p50')} ms, p99 {lo.get('latency_ms_p99')} ms, "
                  f"errors {lo['errors']}, "
                  f"server CPU {lo['server_cpu_ms_per_request']} ms/request; agent aggregate over "
                  f"{r['aggregate_rows']} scorecards {r['aggregate_http_all']['median_ms']} ms (HTTP), "
                  f"{r['aggregate_repo_all']['median_ms']} ms (repository)")
    if args.only in (None, "readside"):
        import readside

        results["readside"] = side = readside.run(argparse.Namespace(calls=args.readside_calls,
                                                                     before=args.before))
        print(f"readside over {side['data']['scorecards']} scorecards ({side['data']['rollup_rows']} rollup "
              f"rows), median ms: " + ", ".join(f"{k} {v['median_ms']}" for k, v in side["rollup"].items()))
        if side["before"]:
            print("  without the rollup / by OFFSET: "
                  + ", ".join(f"{k} {v['median_ms']}" for k, v in side["before"].items()))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
