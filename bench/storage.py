"""Pipeline throughput with call inputs in the local folder and in an S3-compatible object store.

Each call goes the way a deployed call goes, minus the queue: the upload streamed into the input store
(`submit_call`), then the worker's job (`score_stored_call`): the input copied out for the run, the
pipeline, the scorecard stored, the redacted audio written back to the store, the input deleted.
Both backends share one SQLite database, one set of engines (loaded once) and the same files; the
object store is moto's S3 server (`moto[server]`) on a free localhost port, started here.

Each file is run on both backends in turn, `repeat` times, alternating which goes first, and the
fastest run of each counts, so a slow spell on the shared machine does not land on one side only.
Reports audio seconds per wall-clock second on each backend and their ratio (the bar: the object store
within 5% of the local folder), and checks that no input is left in either store afterwards.

    python bench/storage.py [--audio DIR ...] [--repeat 3] [--model tiny.en]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

AUDIO_SUFFIXES = {".wav", ".flac", ".mp3", ".ogg", ".opus"}
BUCKET = "bench-inputs"


def audio_seconds(path: Path) -> float:
    from faster_whisper import decode_audio

    return len(decode_audio(str(path))) / 16000


def one_call(context: Any, path: Path, agent: str) -> float:
    """Upload one file into the context's input store and score it as a worker does; returns seconds."""
    from qa_service.services.calls import CallInput, CallRequest, submit_call
    from qa_service.worker.calls import score_stored_call

    request = CallRequest(agent_id=agent, call_date=date(2026, 10, 1), rubric_id="harbourline-intake",
                          policy_pack_id="valdoria-residence", channels="auto")
    started = time.perf_counter()
    with path.open("rb") as f:
        call = submit_call(store=context.store, settings=context.settings, queue=None, request=request,
                           upload=CallInput("audio", f, path.name), inputs=context.inputs).call
    score_stored_call(context, call.id)
    seconds = time.perf_counter() - started
    done = context.store.get_call(call.id)
    if done.status != "done":
        raise SystemExit(f"{path.name} on {type(context.inputs).__name__}: {done.status} ({done.error})")
    return seconds


def run(files: list[Path], model: str = "tiny.en", repeat: int = 3) -> dict[str, Any]:
    from objects import start_moto

    from qa_service.pipeline import load_engines
    from qa_service.services.rules import add_rules
    from qa_service.settings import Settings
    from qa_service.storage import open_repository
    from qa_service.storage.objects import LocalFolderStore, S3Store, make_client
    from qa_service.worker.context import WorkerContext

    proc, endpoint = start_moto()
    for name, value in (("AWS_ACCESS_KEY_ID", "bench"), ("AWS_SECRET_ACCESS_KEY", "bench"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        os.environ.setdefault(name, value)  # moto takes any credentials
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            settings = Settings(asr_model=model, storage_dir=base / "local", database_url=f"sqlite:///{base}/bench.db")
            repo = open_repository(settings.database_url)
            add_rules(store=repo, kind="rubric", text=(ROOT / "samples/rubric.yaml").read_text())
            add_rules(store=repo, kind="policy_pack", text=(ROOT / "samples/policies.yaml").read_text())
            client = make_client(endpoint)
            client.create_bucket(Bucket=BUCKET)
            stores = {
                "local": LocalFolderStore(base / "local"),
                "s3": S3Store(BUCKET, "bench", scratch_dir=base / "scratch", client=client),
            }
            engines = load_engines(settings)
            contexts = {name: WorkerContext(settings=settings, store=repo, inputs=store,
                                            engines_loaded=engines)
                        for name, store in stores.items()}
            one_call(contexts["local"], files[0], "warm-up")  # first call pays one-off costs
            one_call(contexts["s3"], files[0], "warm-up")
            best: dict[str, float] = {name: 0.0 for name in stores}
            audio_s = 0.0
            for i, path in enumerate(files):
                audio_s += audio_seconds(path)
                times: dict[str, list[float]] = {name: [] for name in stores}
                for r in range(repeat):
                    order = list(stores) if (i + r) % 2 == 0 else list(reversed(stores))
                    for name in order:
                        times[name].append(one_call(contexts[name], path, f"agent-{name}"))
                for name in stores:
                    best[name] += min(times[name])
            left = {"local": sorted(str(p) for p in (base / "local").rglob("*") if p.is_file()
                                    and "redacted" not in p.name),
                    "s3": sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", [])
                                 if "redacted" not in o["Key"])}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    result = {
        "model": model, "files": len(files), "audio_s": round(audio_s, 1), "repeat": repeat,
        "local_x_realtime": round(audio_s / best["local"], 2),
        "s3_x_realtime": round(audio_s / best["s3"], 2),
        "ratio_s3_to_local": round(best["local"] / best["s3"], 3),
        "inputs_left": {name: len(keys) for name, keys in left.items()},
    }
    print(f"storage [{model}] {len(files)} files, {audio_s:.0f} s of audio, fastest of {repeat}: "
          f"local folder {result['local_x_realtime']}x real time, object store (moto S3) "
          f"{result['s3_x_realtime']}x real time, ratio {result['ratio_s3_to_local']} (bar >= 0.95); "
          f"inputs left: {result['inputs_left']}")
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--audio", type=Path, action="append", default=[], help="extra folder of calls")
    ap.add_argument("--model", default="tiny.en")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    files = sorted(p for d in [ROOT / "samples/audio", *args.audio] for p in d.iterdir()
                   if p.suffix in AUDIO_SUFFIXES)
    run(files, args.model, args.repeat)


if __name__ == "__main__":
    main()
