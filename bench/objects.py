"""Object-store clients compared: streamed upload and download of one large object, time and memory.

Starts moto's S3 server (`moto[server]`) on a free localhost port, writes a file of random bytes
(50 MB by default) and, for each client (boto3, minio), in a fresh process per measurement:

- upload: the file read through a non-seekable reader (as an HTTP upload arrives), sent as a
  multipart upload with 8 MiB parts and server-side encryption (AES256) requested;
- download: the object streamed back into a file in 1 MiB reads.

Each measurement reports wall seconds (median of --repeat runs), MB/s, the process's peak resident
memory above what it held before the transfer (VmHWM, reset through /proc/self/clear_refs), and the
peak of Python allocations (tracemalloc, in a separate run since tracing slows the transfer).
The weight of each client is its import time, its resident memory after import and the installed size
of its dependency closure.

    python bench/objects.py                 # 50 MB, 3 timed runs per measurement
    python bench/objects.py --mb 20 --repeat 1

moto keeps objects in its own memory and answers slower than a real store, so the absolute MB/s are
the server's as much as the client's; the comparison between clients holds since both talk to it.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, BinaryIO

MiB = 1024 * 1024
PART = 8 * MiB
READ = 1 * MiB
BUCKET = "bench"
# minio's put_object uploads 3 parts at once by default; "minio-1" sends one part at a time, as the
# boto3 loop does.
CLIENTS = ("boto3", "minio", "minio-1")


# -- the child: one client, one operation --------------------------------------------------------

class Reader:
    """A file seen as a plain stream: read() only, no seek or size, like an upload arriving."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw

    def read(self, size: int = -1) -> bytes:
        return self._raw.read(size)


def _vm(field: str) -> int:
    """A VmRSS/VmHWM figure of this process in bytes (0 where /proc is missing)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _reset_peak() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
    except OSError:
        pass


def _boto3(endpoint: str) -> tuple[Any, Any, Any]:
    import boto3
    from botocore.config import Config

    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                          aws_access_key_id="bench", aws_secret_access_key="bench",
                          config=Config(retries={"max_attempts": 3, "mode": "standard"}))

    def upload(path: Path, key: str) -> None:
        with path.open("rb") as f:
            source = Reader(f)
            upload_id = client.create_multipart_upload(Bucket=BUCKET, Key=key,
                                                       ServerSideEncryption="AES256")["UploadId"]
            parts = []
            while chunk := source.read(PART):
                number = len(parts) + 1
                etag = client.upload_part(Bucket=BUCKET, Key=key, UploadId=upload_id, PartNumber=number,
                                          Body=chunk)["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
                del chunk
            client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload_id,
                                             MultipartUpload={"Parts": parts})

    def download(key: str, path: Path) -> None:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"]
        with path.open("wb") as out:
            for chunk in body.iter_chunks(READ):
                out.write(chunk)
        body.close()

    return client, upload, download


def _minio(endpoint: str, parallel: int = 3) -> tuple[Any, Any, Any]:
    from urllib.parse import urlsplit

    from minio import Minio
    from minio.sse import SseS3

    client = Minio(urlsplit(endpoint).netloc, access_key="bench", secret_key="bench", secure=False,
                   region="us-east-1")

    def upload(path: Path, key: str) -> None:
        with path.open("rb") as f:
            client.put_object(BUCKET, key, Reader(f), length=-1, part_size=PART, sse=SseS3(),
                              num_parallel_uploads=parallel)

    def download(key: str, path: Path) -> None:
        response = client.get_object(BUCKET, key)
        try:
            with path.open("wb") as out:
                for chunk in response.stream(READ):
                    out.write(chunk)
        finally:
            response.close()
            response.release_conn()

    return client, upload, download


def child(client_name: str, op: str, endpoint: str, path: Path, trace: bool) -> dict[str, Any]:
    """Run one transfer in this process and measure it."""
    started = time.perf_counter()
    clients = {"boto3": _boto3, "minio": _minio, "minio-1": lambda e: _minio(e, parallel=1)}
    _, upload, download = clients[client_name](endpoint)
    import_s = time.perf_counter() - started
    rss_after_import = _vm("VmRSS")
    key = f"calls/{client_name}/object"
    if op == "download":
        upload(path, key)  # the object to read back; not measured
    if trace:
        import tracemalloc

        tracemalloc.start()
    _reset_peak()
    before = _vm("VmRSS")
    t0 = time.perf_counter()
    if op == "upload":
        upload(path, key)
    else:
        download(key, Path(str(path) + f".{client_name}.out"))
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = {"seconds": seconds, "peak_rss_above_start": max(_vm("VmHWM") - before, 0),
                              "import_s": import_s, "rss_after_import": rss_after_import}
    if trace:
        result["traced_peak"] = tracemalloc.get_traced_memory()[1]
    if op == "download":
        Path(str(path) + f".{client_name}.out").unlink()
    return result


# -- the parent: server, data, runs, table --------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    """moto's S3 server on a free localhost port, answering."""
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return proc, endpoint
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                raise SystemExit("moto's server did not start (pip install 'moto[server]')") from None
            time.sleep(0.1)


def closure_size(root: str) -> tuple[int, list[str]]:
    """Installed bytes of a distribution and everything it requires (extras left out)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    seen: dict[str, int] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen[key] = sum(f.size or 0 for f in dist.files or [])
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return sum(seen.values()), sorted(seen)


def run_child(client_name: str, op: str, endpoint: str, path: Path, trace: bool) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--child", client_name, op, endpoint, str(path)]
                         + (["--trace"] if trace else []), check=True, capture_output=True, text=True)
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=50, help="object size in MB (default 50)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement (default 3)")
    parser.add_argument("--child", nargs=4, metavar=("CLIENT", "OP", "ENDPOINT", "FILE"),
                        help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        client_name, op, endpoint, path = args.child
        print(json.dumps(child(client_name, op, endpoint, Path(path), args.trace)))
        return

    proc, endpoint = start_moto()
    results: dict[str, Any] = {"mb": args.mb, "repeat": args.repeat, "clients": {}}
    try:
        import urllib.request

        urllib.request.urlopen(urllib.request.Request(f"{endpoint}/{BUCKET}", method="PUT")).close()
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "object.bin"
            with path.open("wb") as f:
                for _ in range(args.mb):
                    f.write(os.urandom(1_000_000))
            for name in CLIENTS:
                row: dict[str, Any] = {}
                for op in ("upload", "download"):
                    timed = [run_child(name, op, endpoint, path, trace=False) for _ in range(args.repeat)]
                    traced = run_child(name, op, endpoint, path, trace=True)
                    seconds = statistics.median(r["seconds"] for r in timed)
                    row[op] = {"seconds": round(seconds, 3), "mb_per_s": round(args.mb / seconds, 1),
                               "peak_rss_mib": round(max(r["peak_rss_above_start"] for r in timed) / MiB, 1),
                               "traced_peak_mib": round(traced["traced_peak"] / MiB, 1)}
                    row["import_s"] = round(statistics.median(r["import_s"] for r in timed), 3)
                    row["rss_after_import_mib"] = round(timed[0]["rss_after_import"] / MiB, 1)
                size, dists = closure_size(name.split("-")[0])
                row["installed_mib"] = round(size / MiB, 1)
                row["distributions"] = dists
                results["clients"][name] = row
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    print(f"{args.mb} MB object, median of {args.repeat} runs, moto server on localhost")
    print("| client | upload MB/s | upload peak RSS | upload traced peak | download MB/s | download peak RSS "
          "| download traced peak | import | RSS after import | installed (closure) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, row in results["clients"].items():
        up, down = row["upload"], row["download"]
        print(f"| {name} | {up['mb_per_s']} | {up['peak_rss_mib']} MiB | {up['traced_peak_mib']} MiB "
              f"| {down['mb_per_s']} | {down['peak_rss_mib']} MiB | {down['traced_peak_mib']} MiB "
              f"| {row['import_s']} s | {row['rss_after_import_mib']} MiB | {row['installed_mib']} MiB "
              f"({len(row['distributions'])} distributions) |")
    print(json.dumps(results))


if __name__ == "__main__":
    main()
