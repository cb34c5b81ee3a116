"""Where call inputs live: a local folder (the default) or an S3-compatible object store, behind one protocol.

    InputStore          put / open / local_copy / seal / delete what belongs to one call
    ├── LocalFolderStore   QA_STORAGE_DIR, as storage/inputs.py lays it out (files 0600, folders 0700)
    └── S3Store            QA_STORAGE_URL=s3://bucket/prefix: objects `<prefix>/calls/<call id>/<name>`

Both keep the same names for a call: `input<suffix>` (plain, while the call is queued or running),
`input<suffix>.sealed` (kept, encrypted a chunk at a time: storage/sealing.py) and `redacted<suffix>`
(the redacted audio for reviewers' players). A stored input is named by a reference the call's row keeps:
the file's absolute path, or `s3://bucket/key`.

Everything is streamed: an upload goes to the store in parts of at most `PART_BYTES`, a download comes
back in chunks, and only the decoder, which needs a file, gets a local copy (private, deleted when its
run ends). The object store is asked to encrypt what it keeps (`ServerSideEncryption=AES256`); a store
that refuses gets the objects without it and the refusal is logged once. The object store's client is
boto3 (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION and the rest of
the standard AWS settings apply); the measurements behind that choice are in
docs/decisions/0010-object-store-client.md.

A writer killed midway leaves a partial file (`.<name>.partial`) or an unfinished multipart upload; both
show in `list_call` under the partial name, and `remove_leftovers`, `delete_input` and `delete_call`
remove them. A bucket lifecycle rule that aborts incomplete multipart uploads after a day is a good
second net.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Protocol, cast
from urllib.parse import urlsplit

from qa_service.errors import ConfigError, InputError, TransientError
from qa_service.storage import inputs
from qa_service.storage.inputs import (
    CHUNK,
    PARTIAL_SUFFIX,
    REDACTED_STEM,
    RUN_COPY_PREFIX,
    SEALED_SUFFIX,
    EmptyInput,
    InputTooLarge,
    is_sealed,
)
from qa_service.storage.sealing import seal_chunks, unsealed_reader

log = logging.getLogger(__name__)

# Parts of a multipart upload: S3 takes 5 MiB at least (but for the last) and 10,000 parts at most, so
# 8 MiB parts carry objects up to 78 GiB while an upload holds one part in memory.
PART_BYTES = 8 * 1024 * 1024
# What stores answer when they do not do server-side encryption (MinIO without a KMS, some gateways).
SSE_REFUSED = frozenset({"NotImplemented", "InvalidArgument", "InvalidRequest", "KMS.NotConfigured",
                         "InvalidEncryptionAlgorithmError", "XMinioKMSNotConfigured"})
MISSING = frozenset({"NoSuchKey", "404", "NotFound"})
# A bucket that is not there, or credentials that are wrong: nothing a retry fixes.
MISCONFIGURED = frozenset({"NoSuchBucket", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                           "AuthorizationHeaderMalformed", "PermanentRedirect", "InvalidBucketName"})
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PREFIX_PART = re.compile(r"[A-Za-z0-9!_.*'()-]+")


class ObjectMissing(InputError):
    """The stored input is gone: deleted after processing, or kept somewhere this process cannot see."""


class InputStore(Protocol):
    """Where a call's input, its sealed form and its redacted audio live."""

    def put_input(self, call_id: str, source: BinaryIO, suffix: str, max_bytes: int) -> str:
        """Store a stream as the call's input, refusing more than max_bytes; returns its reference."""
        ...

    def put_redacted_audio(self, call_id: str, source: BinaryIO, suffix: str = ".wav") -> str:
        """Store a stream as the call's redacted audio; returns its reference."""
        ...

    def redacted_audio(self, call_id: str) -> str | None:
        """The reference of the call's redacted audio, or None when none is kept."""
        ...

    def open(self, ref: str, key: str | None = None) -> AbstractContextManager[BinaryIO]:
        """A stored object as a readable stream; a sealed one is decrypted on the way with `key`."""
        ...

    def size(self, ref: str) -> int:
        """The stored object's size in bytes (as stored: a sealed one's sealed size)."""
        ...

    def open_span(self, ref: str, first: int, last: int) -> AbstractContextManager[BinaryIO]:
        """Bytes first..last (inclusive) of a plain stored object as a readable stream (a player
        seeking in redacted audio); ValueError for a sealed one."""
        ...

    def local_copy(self, ref: str, key: str | None = None) -> AbstractContextManager[Path]:
        """A plain local file of a stored input for one run (for the decoder); removed when the run ends."""
        ...

    def seal(self, ref: str, key: str) -> str:
        """Encrypt a kept input with `key` and delete its plain form; returns the sealed reference."""
        ...

    def delete_input(self, call_id: str) -> None:
        """Delete the call's input (plain or sealed) and what a killed writer left; redacted audio stays."""
        ...

    def remove_leftovers(self, call_id: str) -> None:
        """Delete the local run copies and partial writes a killed run left; the input itself stays."""
        ...

    def delete_redacted_audio(self, call_id: str) -> bool:
        """Delete the call's redacted audio (retention); whether there was one."""
        ...

    def list_call(self, call_id: str) -> list[str]:
        """Names of everything stored for the call, partial writes included (as `.<name>.partial`)."""
        ...

    def delete_call(self, call_id: str) -> None:
        """Delete everything stored for the call."""
        ...

    def has_objects(self, call_id: str) -> bool:
        """Whether anything of the call remains in the store."""
        ...


class StoreSettings(Protocol):
    """The settings the factory reads (qa_service.settings.Settings has them)."""

    storage_dir: Path
    storage_url: str | None
    storage_endpoint: str | None


def input_store(settings: StoreSettings) -> InputStore:
    """The store QA_STORAGE_URL names (s3://bucket/prefix), or the local folder QA_STORAGE_DIR when unset."""
    if not settings.storage_url:
        return LocalFolderStore(settings.storage_dir)
    bucket, prefix = parse_storage_url(settings.storage_url)
    # Workers still need a local folder: the decoder reads files, so a run's copy is made there.
    return S3Store(bucket, prefix, scratch_dir=settings.storage_dir, endpoint=settings.storage_endpoint)


def parse_storage_url(url: str) -> tuple[str, str]:
    """(bucket, prefix) of `s3://bucket[/prefix]`; ConfigError naming what is wrong otherwise."""
    def wrong(why: str) -> ConfigError:
        return ConfigError(f"QA_STORAGE_URL {why}; give s3://bucket or s3://bucket/prefix (the endpoint "
                           "and credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, "
                           "AWS_SECRET_ACCESS_KEY)")

    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise wrong("is not a URL") from None
    if parts.scheme != "s3":
        raise wrong(f"has the scheme {parts.scheme or 'none'!r}, not 's3'")
    if parts.username is not None or parts.password is not None or port is not None:
        raise wrong("holds credentials or a port: put the endpoint in AWS_ENDPOINT_URL and the "
                    "credentials in AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY")
    if parts.query or parts.fragment:
        raise wrong("has a query or a fragment")
    bucket = parts.hostname or ""
    if not BUCKET_NAME.fullmatch(bucket) or ".." in bucket:
        raise wrong(f"names the bucket {bucket!r}, which is not a bucket name (3-63 lower-case letters, "
                    "digits, dots and hyphens)")
    segments = [s for s in parts.path.split("/") if s]
    for segment in segments:
        if segment in (".", "..") or not PREFIX_PART.fullmatch(segment):
            raise wrong(f"has the prefix part {segment!r}: use letters, digits and !_.*'()- only")
    return bucket, "/".join(segments)


# -- a local folder ------------------------------------------------------------------------------

class LocalFolderStore:
    """Inputs in QA_STORAGE_DIR, one private folder per call (storage/inputs.py); references are paths."""

    def __init__(self, storage_dir: Path) -> None:
        self.root = inputs.make_storage_dir(storage_dir)

    def put_input(self, call_id: str, source: BinaryIO, suffix: str, max_bytes: int) -> str:
        """Store a stream as the call's input, refusing more than max_bytes; returns its path."""
        return str(inputs.write_input(self.root, call_id, source, suffix, max_bytes))

    def put_redacted_audio(self, call_id: str, source: BinaryIO, suffix: str = ".wav") -> str:
        """Store a stream as the call's redacted audio; returns its path."""
        return str(inputs.write_redacted_stream(self.root, call_id, source, suffix))

    def redacted_audio(self, call_id: str) -> str | None:
        """The path of the call's redacted audio, or None when none is kept."""
        for name in self.list_call(call_id):
            if name.startswith(REDACTED_STEM + "."):
                return str(inputs.call_dir(self.root, call_id) / name)
        return None

    @contextmanager
    def open(self, ref: str, key: str | None = None) -> Iterator[BinaryIO]:
        """A stored file as a readable stream; a sealed one is decrypted on the way with `key`."""
        path = self._path(ref)
        try:
            raw = path.open("rb")
        except FileNotFoundError:
            raise ObjectMissing(f"the call's {path.name} is no longer stored") from None
        with raw:
            yield _plain(raw, ref, key)

    def size(self, ref: str) -> int:
        """The file's size in bytes."""
        try:
            return self._path(ref).stat().st_size
        except FileNotFoundError:
            raise ObjectMissing(f"the call's {Path(ref).name} is no longer stored") from None

    @contextmanager
    def open_span(self, ref: str, first: int, last: int) -> Iterator[BinaryIO]:
        """Bytes first..last of a plain stored file."""
        _plain_only(ref)
        with self.open(ref) as raw:
            raw.seek(first)
            yield cast(BinaryIO, _Limited(raw, last - first + 1))

    @contextmanager
    def local_copy(self, ref: str, key: str | None = None) -> Iterator[Path]:
        """The input's own file when plain; a sealed one decrypted into a run copy beside it for one run."""
        path = self._path(ref)
        if not path.is_file():
            raise ObjectMissing(f"the call's {path.name} is no longer stored")
        if not is_sealed(path):
            yield path
            return
        with inputs.unsealed(path, _need_key(key)) as copy:
            yield copy

    def seal(self, ref: str, key: str) -> str:
        """Encrypt the input in place (`<name>.sealed`) and delete the plain file; returns the sealed path."""
        path = self._path(ref)
        if is_sealed(path):
            return ref
        if not path.is_file():
            raise ObjectMissing(f"the call's {path.name} is no longer stored")
        return str(inputs.seal_input(path, key))

    def delete_input(self, call_id: str) -> None:
        """Delete the call's input and what a killed run left; the redacted audio stays."""
        inputs.remove_input(self.root, call_id)

    def remove_leftovers(self, call_id: str) -> None:
        """Delete run copies and partial files a killed run left in the call's folder."""
        inputs.remove_run_copies(self.root, call_id)

    def delete_redacted_audio(self, call_id: str) -> bool:
        """Delete the call's redacted audio file; whether there was one."""
        ref = self.redacted_audio(call_id)
        if ref is not None:
            Path(ref).unlink(missing_ok=True)
        return ref is not None

    def list_call(self, call_id: str) -> list[str]:
        """Names of the files in the call's folder."""
        folder = inputs.call_dir(self.root, call_id)
        return sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []

    def delete_call(self, call_id: str) -> None:
        """Delete the call's folder and everything in it."""
        import shutil

        shutil.rmtree(inputs.call_dir(self.root, call_id), ignore_errors=True)

    def has_objects(self, call_id: str) -> bool:
        """Whether the call's folder holds anything."""
        return bool(self.list_call(call_id))

    def _path(self, ref: str) -> Path:
        """The path a reference names, refused unless it is a file in a call's folder of this store."""
        path = Path(ref)
        try:
            call_id = str(uuid.UUID(path.parent.name))
        except ValueError:
            raise ValueError(f"{ref!r} is not a stored input of this store") from None
        if path.parent != inputs.call_dir(self.root, call_id):
            raise ValueError(f"{ref!r} is not a stored input of this store")
        return path


# -- an S3-compatible object store ---------------------------------------------------------------

class S3Store:
    """Inputs as objects `<prefix>/calls/<call id>/<name>` in one bucket; references are `s3://bucket/key`."""

    def __init__(self, bucket: str, prefix: str, scratch_dir: Path, client: Any = None,
                 endpoint: str | None = None) -> None:
        self.bucket = bucket
        self.endpoint = endpoint
        self.root = f"{prefix.strip('/')}/calls/" if prefix.strip("/") else "calls/"
        self.scratch_dir = Path(scratch_dir)
        self._client = client
        # Asked for on every write until the store refuses it once.
        self._sse: dict[str, str] = {"ServerSideEncryption": "AES256"}

    @property
    def client(self) -> Any:
        """The boto3 S3 client, made on first use (credentials and region from the standard AWS settings)."""
        if self._client is None:
            self._client = make_client(self.endpoint)
        return self._client

    def check(self) -> None:
        """Stop at start-up when the bucket is missing or the credentials are refused (ConfigError)."""
        try:
            with _errors(f"the bucket {self.bucket!r}"):
                self.client.head_bucket(Bucket=self.bucket)
        except ObjectMissing:  # HEAD answers carry no error code: a bare 404
            raise ConfigError(f"the bucket {self.bucket!r} of QA_STORAGE_URL does not exist "
                              "(NoSuchBucket): create it first") from None

    def put_input(self, call_id: str, source: BinaryIO, suffix: str, max_bytes: int) -> str:
        """Upload a stream as the call's input in parts, refusing more than max_bytes; returns its ref."""
        if not re.fullmatch(r"\.[a-z0-9]+", suffix):
            raise ValueError(f"{suffix!r} is not an input suffix")
        key = self._key(call_id, f"input{suffix}")
        first = source.read(CHUNK)
        if not first:
            raise EmptyInput("the uploaded file is empty")
        self._upload(key, _limited(first, source, max_bytes))
        return self._ref(key)

    def put_redacted_audio(self, call_id: str, source: BinaryIO, suffix: str = ".wav") -> str:
        """Upload a stream as the call's redacted audio; returns its reference."""
        key = self._key(call_id, f"{REDACTED_STEM}{suffix}")
        self._upload(key, iter(lambda: source.read(CHUNK), b""))
        return self._ref(key)

    def redacted_audio(self, call_id: str) -> str | None:
        """The reference of the call's redacted audio, or None when none is kept."""
        for name in self._object_names(call_id):
            if name.startswith(REDACTED_STEM + "."):
                return self._ref(self._key(call_id, name))
        return None

    @contextmanager
    def open(self, ref: str, key: str | None = None) -> Iterator[BinaryIO]:
        """A stored object as a readable stream; a sealed one is decrypted on the way with `key`."""
        body = self._get(self._object_key(ref))
        try:
            yield _plain(body, ref, key)
        finally:
            body.close()

    def size(self, ref: str) -> int:
        """The object's size in bytes (a HEAD request)."""
        key = self._object_key(ref)
        with _errors(f"the call's {key.rsplit('/', 1)[-1]}"):
            return int(self.client.head_object(Bucket=self.bucket, Key=key)["ContentLength"])

    @contextmanager
    def open_span(self, ref: str, first: int, last: int) -> Iterator[BinaryIO]:
        """Bytes first..last of a plain object: a ranged GET, so only they travel."""
        _plain_only(ref)
        key = self._object_key(ref)
        with _errors(f"the call's {key.rsplit('/', 1)[-1]}"):
            body = self.client.get_object(Bucket=self.bucket, Key=key, Range=f"bytes={first}-{last}")["Body"]
        try:
            yield body
        finally:
            body.close()

    @contextmanager
    def local_copy(self, ref: str, key: str | None = None) -> Iterator[Path]:
        """The input downloaded (and decrypted when sealed) into a private run copy under the scratch
        folder, deleted however the run ends."""
        object_key = self._object_key(ref)
        call_id, name = object_key[len(self.root):].split("/")
        folder = inputs.call_dir(self.scratch_dir, call_id)
        copy = folder / (RUN_COPY_PREFIX + name.removesuffix(SEALED_SUFFIX))
        try:
            with self.open(ref, key) as source:
                # The same private folder (0700) and file (0600) as a local store's run copy.
                inputs._call_folder(self.scratch_dir, call_id)
                with inputs._private_file(copy) as out:
                    while chunk := source.read(CHUNK):
                        out.write(chunk)
            yield copy
        finally:
            copy.unlink(missing_ok=True)
            _remove_empty(folder)

    def seal(self, ref: str, key: str) -> str:
        """Stream the input through the sealing into `<name>.sealed`, then delete the plain object."""
        object_key = self._object_key(ref)
        if is_sealed(object_key):
            return ref
        sealed = object_key + SEALED_SUFFIX
        body = self._get(object_key)
        try:
            self._upload(sealed, seal_chunks(body, key))
        finally:
            body.close()
        with _errors("the plain input"):
            self.client.delete_object(Bucket=self.bucket, Key=object_key)
        return self._ref(sealed)

    def delete_input(self, call_id: str) -> None:
        """Delete the call's input objects and unfinished uploads; the redacted audio stays."""
        self._delete(call_id, keep=lambda name: name.startswith(REDACTED_STEM + "."))
        self.remove_leftovers(call_id)

    def remove_leftovers(self, call_id: str) -> None:
        """Abort the call's unfinished uploads and delete local run copies in the scratch folder."""
        for upload_key, upload_id in self._unfinished(call_id):
            with _errors("an unfinished upload"):
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=upload_key, UploadId=upload_id)
        inputs.remove_run_copies(self.scratch_dir, call_id)
        _remove_empty(inputs.call_dir(self.scratch_dir, call_id))

    def delete_redacted_audio(self, call_id: str) -> bool:
        """Delete the call's redacted audio object; whether there was one."""
        names = [n for n in self._object_names(call_id) if n.startswith(REDACTED_STEM + ".")]
        for name in names:
            with _errors(f"the call's {name}"):
                self.client.delete_object(Bucket=self.bucket, Key=self._key(call_id, name))
        return bool(names)

    def list_call(self, call_id: str) -> list[str]:
        """Names of the call's objects, with unfinished uploads as `.<name>.partial`."""
        partial = {f".{k.rsplit('/', 1)[-1]}{PARTIAL_SUFFIX}" for k, _ in self._unfinished(call_id)}
        return sorted(set(self._object_names(call_id)) | partial)

    def delete_call(self, call_id: str) -> None:
        """Delete every object of the call and abort its unfinished uploads."""
        self._delete(call_id, keep=lambda name: False)
        self.remove_leftovers(call_id)

    def has_objects(self, call_id: str) -> bool:
        """Whether any object or unfinished upload of the call remains."""
        return bool(self.list_call(call_id))

    # -- helpers --

    def _key(self, call_id: str, name: str) -> str:
        # Call ids are UUIDs we make; refuse anything else so no key can leave the call's prefix.
        return f"{self.root}{uuid.UUID(call_id)}/{name}"

    def _ref(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _object_key(self, ref: str) -> str:
        """The key a reference names, refused unless it is an object of a call under this store's prefix."""
        head = f"s3://{self.bucket}/{self.root}"
        rest = ref.removeprefix(head) if ref.startswith(head) else ""
        parts = rest.split("/")
        try:
            valid = len(parts) == 2 and str(uuid.UUID(parts[0])) == parts[0] and bool(parts[1])
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"{ref!r} is not a stored input of this store")
        return self.root + rest

    def _get(self, key: str) -> Any:
        with _errors(f"the call's {key.rsplit('/', 1)[-1]}"):
            return self.client.get_object(Bucket=self.bucket, Key=key)["Body"]

    def _object_names(self, call_id: str) -> list[str]:
        prefix = self._key(call_id, "")
        names = []
        with _errors("the call's objects"):
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                               Prefix=prefix):
                names += [item["Key"][len(prefix):] for item in page.get("Contents", [])]
        return names

    def _unfinished(self, call_id: str) -> list[tuple[str, str]]:
        prefix = self._key(call_id, "")
        found = []
        with _errors("the call's unfinished uploads"):
            for page in self.client.get_paginator("list_multipart_uploads").paginate(Bucket=self.bucket,
                                                                                     Prefix=prefix):
                found += [(item["Key"], item["UploadId"]) for item in page.get("Uploads", [])]
        return found

    def _delete(self, call_id: str, keep: Callable[[str], bool]) -> None:
        for name in self._object_names(call_id):
            if not keep(name):
                with _errors(f"the call's {name}"):
                    self.client.delete_object(Bucket=self.bucket, Key=self._key(call_id, name))

    def _upload(self, key: str, chunks: Iterable[bytes]) -> None:
        """Upload a stream of chunks: one PUT when it fits in one part, else a multipart upload that holds
        one part in memory at a time and is aborted (its parts deleted) when anything goes wrong."""
        parts = _parts(chunks)
        body, last = next(parts)
        if last:
            with _errors("the upload"):
                self._with_sse(self.client.put_object, Bucket=self.bucket, Key=key, Body=body)
            return
        with _errors("the upload"):
            upload_id = self._with_sse(self.client.create_multipart_upload, Bucket=self.bucket,
                                       Key=key)["UploadId"]
        try:
            done: list[dict[str, Any]] = []
            while True:
                number = len(done) + 1
                with _errors("the upload"):
                    etag = self.client.upload_part(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                   PartNumber=number, Body=body)["ETag"]
                done.append({"PartNumber": number, "ETag": etag})
                if last:
                    break
                del body  # before the next part is gathered
                body, last = next(parts)
            with _errors("the upload"):
                self.client.complete_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id,
                                                      MultipartUpload={"Parts": done})
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # the upload's failure is what the caller needs; remove_leftovers retries
                log.warning("could not abort the unfinished upload of %s", key, exc_info=True)
            raise

    def _with_sse(self, method: Callable[..., Any], **kwargs: Any) -> Any:
        """Call a writing method asking for server-side encryption, without it once the store refused."""
        if self._sse:
            from botocore.exceptions import ClientError

            try:
                return method(**kwargs, **self._sse)
            except ClientError as exc:
                if _code(exc) not in SSE_REFUSED:
                    raise
                log.warning("the object store refuses server-side encryption (%s): call inputs are stored "
                            "there unencrypted by the store (kept inputs are still sealed with "
                            "QA_ENCRYPTION_KEY)", _code(exc))
                self._sse = {}
        return method(**kwargs)


def make_client(endpoint: str | None = None) -> Any:
    """A boto3 S3 client for an endpoint (Settings.storage_endpoint: AWS_ENDPOINT_URL_S3 or
    AWS_ENDPOINT_URL; None for AWS itself); boto3 reads the credentials and region from the standard
    AWS settings."""
    import boto3
    from botocore.config import Config

    # Stores other than AWS (MinIO, Ceph, moto) are reached by one host name: the bucket goes in the path.
    config = Config(retries={"mode": "standard", "max_attempts": 5}, connect_timeout=10, read_timeout=60,
                    s3={"addressing_style": "path" if endpoint else "auto"})
    return boto3.session.Session().client("s3", config=config, endpoint_url=endpoint)


@contextmanager
def _errors(what: str) -> Iterator[None]:
    """Map the client's errors onto the service's: missing, misconfigured, or worth retrying."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        yield
    except ClientError as exc:
        code = _code(exc)
        if code in MISSING:
            raise ObjectMissing(f"{what} is no longer stored") from None
        if code in MISCONFIGURED:
            raise ConfigError(f"the object store refused access to {what} ({code}): check QA_STORAGE_URL "
                              "and the AWS_* credentials") from exc
        raise TransientError(f"the object store failed on {what} ({code})") from exc
    except NoCredentialsError as exc:
        raise ConfigError("no credentials for the object store: set AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY") from exc
    except BotoCoreError as exc:
        raise TransientError(f"the object store did not answer on {what} ({type(exc).__name__})") from exc


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _plain(raw: BinaryIO, ref: str, key: str | None) -> BinaryIO:
    """A stored object's bytes as they were put, decrypted when it is sealed."""
    return unsealed_reader(raw, _need_key(key)) if is_sealed(ref) else raw


def _plain_only(ref: str) -> None:
    if is_sealed(ref):
        raise ValueError(f"{ref!r} is sealed: it is read whole, never by byte ranges")


class _Limited:
    """At most `left` bytes of a stream."""

    def __init__(self, raw: BinaryIO, left: int) -> None:
        self._raw = raw
        self._left = left

    def read(self, size: int = -1) -> bytes:
        want = self._left if size < 0 else min(size, self._left)
        data = self._raw.read(want) if want > 0 else b""
        self._left -= len(data)
        return data


def _need_key(key: str | None) -> str:
    if not key:
        raise ConfigError("the call's input is sealed: set QA_ENCRYPTION_KEY to the key that sealed it "
                          "and retry")
    return key


def _parts(chunks: Iterable[bytes]) -> Iterator[tuple[bytes, bool]]:
    """Chunks gathered into parts of PART_BYTES or a little more, each with whether it is the last.

    A list joined once per part, not a growing bytearray: deleting from a bytearray's front keeps its
    memory, so one would end up as large as the whole upload.
    """
    gathered: list[bytes] = []
    size = 0
    for chunk in chunks:
        if size >= PART_BYTES:  # and a chunk follows: not the last part
            part = b"".join(gathered)
            gathered.clear()
            yield part, False
            del part
            size = 0
        gathered.append(chunk)
        size += len(chunk)
    yield b"".join(gathered), True


def _limited(first: bytes, source: BinaryIO, max_bytes: int) -> Iterator[bytes]:
    """The chunks of an upload, InputTooLarge as soon as they pass max_bytes (before that part is sent)."""
    size = 0
    chunk = first
    while chunk:
        size += len(chunk)
        if size > max_bytes:
            raise InputTooLarge(f"the upload is larger than the limit of {max_bytes} bytes")
        yield chunk
        chunk = source.read(CHUNK)


def _remove_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:  # missing, or holds something
        pass
