"""The input stores' contract, run against a local folder and against a real S3 server (moto's, started
by the s3_endpoint fixture), plus the factory and QA_STORAGE_URL's validation."""

from __future__ import annotations

import hashlib
import io
import logging
import stat
import tracemalloc
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qa_service.errors import ConfigError
from qa_service.services.exports import RangeNotSatisfiable, byte_range
from qa_service.storage.inputs import EmptyInput, InputTooLarge
from qa_service.storage.objects import (
    PART_BYTES,
    InputStore,
    LocalFolderStore,
    ObjectMissing,
    S3Store,
    input_store,
    parse_storage_url,
)
from qa_service.storage.sealing import CHUNK

KEY = "m3LQ0lOQ4B0Yl7I1tq3yJ0o9cXb2oF8kZb8oQm3x2zU="  # Fernet keys for tests
OTHER_KEY = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="
SECRET = b"my card number is 4111 1111 1111 1111 and I live at 12 Harbour Road. " * 40


class Generated(io.RawIOBase):
    """`size` bytes made on the fly (never held whole), as an upload arriving over the network."""

    def __init__(self, size: int, seed: bytes = b"call") -> None:
        self.left = size
        self.block = hashlib.sha256(seed).digest() * (CHUNK // 32)
        self.counter = 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        size = min(len(target), self.left, len(self.block))
        # Vary the blocks so a part stored twice or out of order shows in the digest.
        self.counter += 1
        data = self.counter.to_bytes(8, "big") + self.block[8:size]
        target[:size] = data[:size]
        self.left -= size
        return size


def digest(stream: Any) -> str:
    h = hashlib.sha256()
    while chunk := stream.read(CHUNK):
        h.update(chunk)
    return h.hexdigest()


@pytest.fixture(params=["local", "s3"])
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bucket(kind: str, request: pytest.FixtureRequest) -> str | None:
    """A fresh bucket on the private S3 server for S3 tests; None for the local folder."""
    if kind == "local":
        return None
    endpoint = request.getfixturevalue("s3_env")
    from qa_service.storage.objects import make_client

    name = f"qa-{uuid.uuid4().hex[:20]}"
    make_client(endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def store(kind: str, bucket: str | None, make_settings: Callable[..., Any]) -> InputStore:
    """Each contract test runs on the local folder and on the S3 server, built by the factory."""
    url = f"s3://{bucket}/tenant-a" if bucket else None
    return input_store(make_settings(storage_url=url))


def everything(store: InputStore, bucket: str | None, tmp_path: Path) -> list[str]:
    """What is left anywhere: every file under the storage folder, and for S3 every object and
    unfinished upload in the whole bucket."""
    left = [str(p) for p in (tmp_path / "storage").rglob("*") if p.is_file()]
    if bucket is not None:
        assert isinstance(store, S3Store)
        client = store.client
        left += [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
        uploads = client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        left += [f"unfinished {u['Key']}" for u in uploads]
    return left


def leave_partial(store: InputStore, call_id: str) -> None:
    """What a writer killed midway leaves behind."""
    if isinstance(store, S3Store):
        key = f"{store.root}{call_id}/input.wav"
        upload = store.client.create_multipart_upload(Bucket=store.bucket, Key=key)["UploadId"]
        store.client.upload_part(Bucket=store.bucket, Key=key, UploadId=upload, PartNumber=1, Body=SECRET)
    else:
        assert isinstance(store, LocalFolderStore)
        folder = store.root / call_id
        folder.mkdir(mode=0o700, exist_ok=True)
        (folder / ".input.wav.partial").write_bytes(SECRET)


# -- the contract ----------------------------------------------------------------------------------

def test_round_trip(store: InputStore, kind: str):
    call_id = str(uuid.uuid4())
    ref = store.put_input(call_id, io.BytesIO(SECRET), ".wav", max_bytes=len(SECRET))
    assert ref.endswith(f"{call_id}/input.wav")
    assert ref.startswith("s3://") == (kind == "s3")
    with store.open(ref) as stream:
        assert stream.read() == SECRET
    with store.local_copy(ref) as path:
        assert path.read_bytes() == SECRET and path.suffix == ".wav"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert path.exists() == (kind == "local")  # a local plain input is its own copy; a download is not kept
    assert store.list_call(call_id) == ["input.wav"] and store.has_objects(call_id)

    redacted = store.put_redacted_audio(call_id, io.BytesIO(b"RIFF-silenced"))
    assert store.redacted_audio(call_id) == redacted
    with store.open(redacted) as stream:
        assert stream.read() == b"RIFF-silenced"
    assert store.list_call(call_id) == ["input.wav", "redacted.wav"]
    assert store.redacted_audio(str(uuid.uuid4())) is None


def test_byte_spans_of_redacted_audio(store: InputStore):
    call_id = str(uuid.uuid4())
    audio = bytes(range(256)) * 40
    ref = store.put_redacted_audio(call_id, io.BytesIO(audio))
    assert store.size(ref) == len(audio)
    for first, last in ((0, 99), (1000, 1000), (len(audio) - 10, len(audio) - 1)):
        with store.open_span(ref, first, last) as stream:
            assert stream.read() == audio[first:last + 1]
    with store.open_span(ref, 5, 5000) as stream:  # read a chunk at a time, as a response does
        assert b"".join(iter(lambda: stream.read(777), b"")) == audio[5:5001]
    sealed = store.seal(store.put_input(call_id, io.BytesIO(SECRET), ".wav", len(SECRET)), KEY)
    with pytest.raises(ValueError, match="sealed"), store.open_span(sealed, 0, 9):
        pass
    store.delete_call(call_id)
    with pytest.raises(ObjectMissing):
        store.size(ref)


@pytest.mark.parametrize(("header", "span"), [
    (None, None), ("bytes=0-99", (0, 99)), ("bytes=100-", (100, 999)), ("bytes=-10", (990, 999)),
    ("bytes=-5000", (0, 999)), ("bytes=990-5000", (990, 999)), ("bytes = 7 - 8", (7, 8)),
    ("bytes=0-1,5-6", None), ("items=0-1", None), ("bytes=9-3", None), ("bytes=-", None), ("junk", None),
])
def test_range_headers_read_as_a_player_sends_them(header: str | None, span: tuple[int, int] | None):
    assert byte_range(header, 1000) == span


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_a_range_outside_the_object_is_not_satisfiable(header: str):
    with pytest.raises(RangeNotSatisfiable) as caught:
        byte_range(header, 1000)
    assert caught.value.size == 1000


def test_a_large_input_streams_through_in_bounded_memory(store: InputStore):
    size = 5 * PART_BYTES + 12345  # a multipart upload, parts and a short last one
    bound = 3 * PART_BYTES
    call_id = str(uuid.uuid4())
    expected = digest(Generated(size))
    assert not store.has_objects(call_id)  # the client is made (and its API model loaded) before measuring

    tracemalloc.start()
    try:
        ref = store.put_input(call_id, Generated(size), ".wav", max_bytes=size)
        with store.open(ref) as stream:
            assert digest(stream) == expected
        with store.local_copy(ref) as path, path.open("rb") as copy:
            assert digest(copy) == expected
        sealed = store.seal(ref, KEY)
        with store.open(sealed, KEY) as stream:
            assert digest(stream) == expected
        with store.local_copy(sealed, KEY) as path, path.open("rb") as copy:
            assert digest(copy) == expected
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # Two parts at most (one gathered while the last is joined) and a few chunks, whatever the size.
    assert peak < bound, f"peak {peak / 2**20:.1f} MiB for a {size / 2**20:.0f} MiB input"


@pytest.mark.parametrize("size", [1000, PART_BYTES + CHUNK])  # refused in the first part, or midway
def test_an_input_over_the_limit_is_refused_and_nothing_stays(store: InputStore, bucket, tmp_path, size):
    call_id = str(uuid.uuid4())
    with pytest.raises(InputTooLarge, match=f"limit of {size - 1} bytes"):
        store.put_input(call_id, Generated(size), ".wav", max_bytes=size - 1)
    assert not store.has_objects(call_id)
    assert everything(store, bucket, tmp_path) == []


def test_an_empty_input_is_refused_and_nothing_stays(store: InputStore, bucket, tmp_path):
    call_id = str(uuid.uuid4())
    with pytest.raises(EmptyInput):
        store.put_input(call_id, io.BytesIO(b""), ".txt", max_bytes=100)
    assert not store.has_objects(call_id)
    assert everything(store, bucket, tmp_path) == []


def test_sealing_leaves_no_plain_input(store: InputStore, bucket, tmp_path):
    call_id = str(uuid.uuid4())
    ref = store.put_input(call_id, io.BytesIO(SECRET), ".txt", max_bytes=len(SECRET))
    sealed = store.seal(ref, KEY)
    assert sealed == ref + ".sealed" and store.seal(sealed, KEY) == sealed
    assert store.list_call(call_id) == ["input.txt.sealed"]
    stored = b""
    if bucket is None:
        stored = Path(sealed).read_bytes()
        assert stat.S_IMODE(Path(sealed).stat().st_mode) == 0o600
    else:
        assert isinstance(store, S3Store)
        head = store.client.head_object(Bucket=bucket, Key=sealed.removeprefix(f"s3://{bucket}/"))
        assert head["ServerSideEncryption"] == "AES256"
        stored = store.client.get_object(Bucket=bucket, Key=sealed.removeprefix(f"s3://{bucket}/"))["Body"].read()
    assert stored and b"4111" not in stored and b"Harbour" not in stored

    with store.open(sealed, KEY) as stream:
        assert stream.read() == SECRET
    with store.local_copy(sealed, KEY) as path:
        assert path.read_bytes() == SECRET and path.name == ".unsealed-input.txt"
    assert not path.exists()
    with pytest.raises(RuntimeError), store.local_copy(sealed, KEY) as path:
        raise RuntimeError("the run failed")
    assert not path.exists() and store.list_call(call_id) == ["input.txt.sealed"]

    with pytest.raises(ConfigError, match="set QA_ENCRYPTION_KEY"), store.open(sealed) as raw:
        raw.read()
    with pytest.raises(ConfigError, match="was the key changed"), store.local_copy(sealed, OTHER_KEY):
        pass
    assert not [p for p in (tmp_path / "storage").rglob("*") if p.is_file() and b"4111" in p.read_bytes()]


def test_deleting_leaves_nothing(store: InputStore, bucket, tmp_path):
    call_id, other = str(uuid.uuid4()), str(uuid.uuid4())
    ref = store.put_input(call_id, io.BytesIO(SECRET), ".wav", max_bytes=len(SECRET))
    store.seal(store.put_input(other, io.BytesIO(SECRET), ".txt", max_bytes=len(SECRET)), KEY)
    store.put_redacted_audio(call_id, io.BytesIO(b"RIFF-silenced"))
    leave_partial(store, call_id)
    assert store.list_call(call_id) == [".input.wav.partial", "input.wav", "redacted.wav"]

    store.remove_leftovers(call_id)
    assert store.list_call(call_id) == ["input.wav", "redacted.wav"]
    leave_partial(store, call_id)
    store.delete_input(call_id)
    assert store.list_call(call_id) == ["redacted.wav"]
    with pytest.raises(ObjectMissing):
        store.local_copy(ref).__enter__()

    store.delete_call(call_id)
    store.delete_call(other)
    assert not store.has_objects(call_id) and not store.has_objects(other)
    assert everything(store, bucket, tmp_path) == []
    store.delete_call(call_id)  # nothing to delete is no error
    store.delete_input(call_id)


def test_missing_objects_and_foreign_references(store: InputStore):
    call_id = str(uuid.uuid4())
    ref = store.put_input(call_id, io.BytesIO(SECRET), ".wav", max_bytes=len(SECRET))
    store.delete_call(call_id)
    with pytest.raises(ObjectMissing, match="no longer stored"), store.open(ref):
        pass
    with pytest.raises(ObjectMissing), store.local_copy(ref):
        pass
    with pytest.raises(ObjectMissing):
        store.seal(ref, KEY)
    foreign = ["/etc/passwd", "s3://elsewhere/calls/x/input.wav", ref.replace(call_id, "not-a-call"),
               ref.replace("input.wav", "../../input.wav")]
    for bad in foreign:
        with pytest.raises(ValueError, match="not a stored input"), store.open(bad):
            pass
    with pytest.raises(ValueError):
        store.put_input("../elsewhere", io.BytesIO(SECRET), ".wav", max_bytes=len(SECRET))


# -- S3 only --------------------------------------------------------------------------------------

def test_objects_sit_under_the_prefix_and_are_encrypted_by_the_store(s3_env, make_settings):
    from qa_service.storage.objects import make_client

    client = make_client(s3_env)
    client.create_bucket(Bucket="qa-layout")
    store = input_store(make_settings(storage_url="s3://qa-layout/site/a/"))
    call_id = str(uuid.uuid4())
    store.put_input(call_id, Generated(PART_BYTES + 1), ".wav", max_bytes=PART_BYTES + 1)
    store.put_redacted_audio(call_id, io.BytesIO(b"RIFF"))
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket="qa-layout")["Contents"])
    assert keys == [f"site/a/calls/{call_id}/input.wav", f"site/a/calls/{call_id}/redacted.wav"]
    for key in keys:
        assert client.head_object(Bucket="qa-layout", Key=key)["ServerSideEncryption"] == "AES256"


class RefusesEncryption:
    """A client of a store without server-side encryption (as MinIO without a KMS answers)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.refused = 0

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.client, name)
        if name not in ("put_object", "create_multipart_upload"):
            return method

        def call(**kwargs: Any) -> Any:
            if "ServerSideEncryption" in kwargs:
                from botocore.exceptions import ClientError

                self.refused += 1
                raise ClientError({"Error": {"Code": "NotImplemented", "Message": "no KMS"}}, name)
            return method(**kwargs)

        return call


def test_a_store_without_encryption_gets_the_objects_with_a_notice(s3_env, tmp_path, caplog):
    from qa_service.storage.objects import make_client

    client = RefusesEncryption(make_client(s3_env))
    client.create_bucket(Bucket="qa-plain")
    store = S3Store("qa-plain", "", scratch_dir=tmp_path / "scratch", client=client)
    call_id = str(uuid.uuid4())
    with caplog.at_level(logging.WARNING, logger="qa_service.storage.objects"):
        ref = store.put_input(call_id, io.BytesIO(SECRET), ".txt", max_bytes=len(SECRET))
        store.seal(ref, KEY)
        store.put_input(call_id, Generated(PART_BYTES + 1), ".wav", max_bytes=PART_BYTES + 1)
    assert client.refused == 1
    assert [r.message for r in caplog.records if "refuses server-side encryption" in r.message]
    assert store.list_call(call_id) == ["input.txt.sealed", "input.wav"]


def test_a_missing_bucket_is_a_configuration_error(s3_env, tmp_path):
    store = S3Store("qa-never-made", "", scratch_dir=tmp_path, endpoint=s3_env)
    with pytest.raises(ConfigError, match="'qa-never-made' of QA_STORAGE_URL does not exist"):
        store.check()
    with pytest.raises(ConfigError, match="NoSuchBucket"):
        store.put_input(str(uuid.uuid4()), io.BytesIO(SECRET), ".txt", max_bytes=len(SECRET))


# -- the factory and QA_STORAGE_URL -------------------------------------------------------------------

def test_the_factory_picks_the_store_from_the_url(make_settings, tmp_path):
    local = input_store(make_settings())
    assert isinstance(local, LocalFolderStore) and local.root == (tmp_path / "storage").resolve()
    assert isinstance(input_store(make_settings(storage_url="  ")), LocalFolderStore)
    s3 = input_store(make_settings(storage_url="s3://qa-inputs/site-a/"))
    assert isinstance(s3, S3Store)
    assert (s3.bucket, s3.root, s3.scratch_dir) == ("qa-inputs", "site-a/calls/", tmp_path / "storage")
    assert s3._client is None  # no client is made, and nothing reached, until first use


@pytest.mark.parametrize(("url", "parsed"), [
    ("s3://qa-inputs", ("qa-inputs", "")),
    ("s3://qa-inputs/", ("qa-inputs", "")),
    ("s3://qa.inputs.example/a/b/", ("qa.inputs.example", "a/b")),
    ("s3://qa-inputs//a//b", ("qa-inputs", "a/b")),
])
def test_good_storage_urls(url, parsed):
    assert parse_storage_url(url) == parsed


@pytest.mark.parametrize(("url", "problem"), [
    ("/var/lib/qa", "scheme 'none'"),
    ("https://s3.amazonaws.com/qa-inputs", "scheme 'https'"),
    ("s3:qa-inputs", "not a bucket name"),
    ("s3://", "not a bucket name"),
    ("s3://QA_Inputs/x", "not a bucket name"),
    ("s3://ab", "not a bucket name"),
    ("s3://qa-inputs:9000/x", "credentials or a port"),
    ("s3://key:secret@qa-inputs", "credentials or a port"),
    ("s3://qa-inputs/x?region=eu", "query"),
    ("s3://qa-inputs/a/../b", "prefix part '..'"),
    ("s3://qa-inputs/a b", "prefix part 'a b'"),
    ("s3://qa-inputs:x", "is not a URL"),
])
def test_malformed_storage_urls_are_refused(url, problem, make_settings):
    with pytest.raises(ConfigError, match=problem):
        parse_storage_url(url)
    with pytest.raises(ValidationError, match="QA_STORAGE_URL") as caught:
        make_settings(storage_url=url)
    assert "secret" not in str(caught.value)  # a URL holding credentials is not echoed
