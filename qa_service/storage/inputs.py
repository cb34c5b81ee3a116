"""Call inputs on disk: one folder per call under QA_STORAGE_DIR, written and fsynced before enqueueing.

Inputs are raw recordings or transcripts: personal data. What happens to one follows the call:

- queued or processing: the input is on disk in plain form, where only the service's user can read
  it (files 0600 in folders 0700, the storage folder included, whatever the umask). A sealed input
  processed again (a retry) is decrypted into a run copy (`.unsealed-<name>`, 0600) that the run
  deletes on every way out; a worker killed mid-run leaves it to whoever ends the call.
- done: the input is deleted, or sealed (encrypted with `encryption_key` a chunk at a time,
  storage/sealing.py, `<name>.sealed`) when `keep_raw_audio` / `keep_raw_transcript` keep it.
- failed on bad input: as done, since there is nothing a retry could do with it.
- failed for any other reason (rules missing, job timeout, transient errors exhausted, a worker
  killed too often): the input stays for `failed_input_retention_hours`, so the call can be retried,
  sealed when `encryption_key` is set and otherwise plain (0600); after that the maintenance pass
  deletes it, sealed or not, and a retry says the input is gone. 0 hours deletes it at once.

Every way a call ends removes run copies and partial files. The redacted copy of a recording (every
personal-data span silenced, 0600 too) is kept for the call page's player unless `keep_redacted_audio`
is off.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import stat
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from qa_service.errors import InputError

if TYPE_CHECKING:
    from qa_service.records import Audio

log = logging.getLogger(__name__)

CHUNK = 1024 * 1024
# A redacted copy of a call's audio (`redacted.wav`) outlives the raw input in the call's folder.
REDACTED_STEM = "redacted"
AUDIO_SUFFIXES = frozenset({
    ".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".webm", ".amr", ".gsm",
    ".au", ".aif", ".aiff", ".wma", ".mka", ".mkv", ".caf", ".spx", ".3gp",
})
SEALED_SUFFIX = ".sealed"
# A sealed input decrypted for one run (`unsealed`), and a file being written (`_write_atomically`):
# both are left behind only by a process killed meanwhile, and removed when its call ends.
RUN_COPY_PREFIX = ".unsealed-"
PARTIAL_SUFFIX = ".partial"
# Only the service's own user may read call inputs, whatever the umask of the process that wrote them.
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


class EmptyInput(InputError):
    """The uploaded file has no bytes."""


class InputTooLarge(InputError):
    """The uploaded file is bigger than max_upload_bytes."""


def call_dir(storage_dir: Path, call_id: str) -> Path:
    """The folder that holds one call's input."""
    # Call ids are UUIDs we make; refuse anything else so no path can escape the storage folder.
    # Absolute, because the stored path is read by workers that may run from another directory.
    return Path(storage_dir).resolve() / str(uuid.UUID(call_id))


def make_storage_dir(storage_dir: Path) -> Path:
    """Create the storage folder if needed and make it private (0700); returns its absolute path."""
    root = Path(storage_dir).resolve()
    if not _private_root(root):
        log.warning("cannot make QA_STORAGE_DIR private (0700): it belongs to another user")
    return root


def input_suffix(filename: str | None, kind: str) -> str:
    """A safe file suffix for a stored input: a known audio extension, .json or .txt, else .bin."""
    suffix = Path(filename or "").suffix.lower()
    if kind == "transcript":
        return ".json" if suffix == ".json" else ".txt"
    return suffix if suffix in AUDIO_SUFFIXES and re.fullmatch(r"\.[a-z0-9]+", suffix) else ".bin"


def write_input(storage_dir: Path, call_id: str, source: BinaryIO, suffix: str, max_bytes: int) -> Path:
    """Copy a stream into the call's folder, counting bytes; fsync file and folder so a crash keeps it."""
    folder = _call_folder(storage_dir, call_id)
    path = folder / f"input{suffix}"
    size = 0
    try:
        with _private_file(path) as out:
            while chunk := source.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise InputTooLarge(f"the upload is larger than the limit of {max_bytes} bytes")
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if size == 0:
            raise EmptyInput("the uploaded file is empty")
        _fsync_dir(folder)
        _fsync_dir(folder.parent)
    except BaseException:
        remove_input(storage_dir, call_id)
        raise
    return path


def write_bytes(storage_dir: Path, call_id: str, data: bytes, suffix: str) -> Path:
    """Store bytes already in memory as the call's input (fsynced)."""
    return write_input(storage_dir, call_id, io.BytesIO(data), suffix, max_bytes=max(len(data), 1))


def remove_input(storage_dir: Path, call_id: str) -> None:
    """Delete the call's raw input; a redacted copy of its audio stays, an otherwise empty folder goes."""
    folder = call_dir(storage_dir, call_id)
    if not folder.is_dir():
        return
    kept = [p for p in folder.iterdir() if p.name.startswith(REDACTED_STEM + ".")]
    if not kept:
        shutil.rmtree(folder, ignore_errors=True)
        return
    for path in folder.iterdir():
        if path not in kept:
            shutil.rmtree(path, ignore_errors=True) if path.is_dir() else path.unlink(missing_ok=True)


def remove_run_copies(storage_dir: Path, call_id: str) -> None:
    """Delete what a killed run left in the call's folder: decrypted run copies and partly written files."""
    folder = call_dir(storage_dir, call_id)
    if not folder.is_dir():
        return
    for path in folder.iterdir():
        if path.name.startswith(RUN_COPY_PREFIX) or path.name.endswith(PARTIAL_SUFFIX):
            path.unlink(missing_ok=True)


def is_sealed(path: str | Path) -> bool:
    """Whether a stored input path names a sealed (encrypted) input."""
    return str(path).endswith(SEALED_SUFFIX)


def seal_input(path: Path, key: str) -> Path:
    """Encrypt a kept raw input in place, a chunk at a time (storage/sealing.py: Fernet, AES-128-CBC +
    HMAC); returns the sealed file's path."""
    from qa_service.storage.sealing import seal_chunks

    with path.open("rb") as plain:
        sealed = _write_atomically(path.with_name(path.name + SEALED_SUFFIX), seal_chunks(plain, key))
    path.unlink()
    _fsync_dir(path.parent)
    return sealed


@contextmanager
def unsealed(sealed: Path, key: str) -> Iterator[Path]:
    """Decrypt a sealed input into a private run copy for one run; the copy is deleted however the run ends.

    The sealed file stays as it is, so a run that fails leaves the input as sealed as before.
    """
    from qa_service.storage.sealing import unseal_chunks

    # Named after the input, so readers that go by the suffix (.json, .wav) see the same name.
    copy = sealed.with_name(RUN_COPY_PREFIX + sealed.name.removesuffix(SEALED_SUFFIX))
    try:
        with sealed.open("rb") as source, _private_file(copy) as out:
            for chunk in unseal_chunks(source, key):
                out.write(chunk)
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def write_redacted_audio(storage_dir: Path, call_id: str, audio: Audio) -> Path:
    """Store the call's redacted audio as `redacted.wav` beside its input (atomically, fsynced)."""
    from qa_service.stages.redact_audio import encode_wav

    return write_redacted_stream(storage_dir, call_id, io.BytesIO(encode_wav(audio)), ".wav")


def write_redacted_stream(storage_dir: Path, call_id: str, source: BinaryIO, suffix: str) -> Path:
    """Store a stream as the call's redacted audio, `redacted<suffix>` (atomically, fsynced)."""
    folder = _call_folder(storage_dir, call_id)
    return _write_atomically(folder / f"{REDACTED_STEM}{suffix}", iter(lambda: source.read(CHUNK), b""))


def _call_folder(storage_dir: Path, call_id: str) -> Path:
    """The call's folder, made (with the storage folder) private and created when missing."""
    folder = call_dir(storage_dir, call_id)
    _private_root(folder.parent)
    folder.mkdir(exist_ok=True, mode=PRIVATE_DIR)
    _make_private(folder, PRIVATE_DIR)
    return folder


def _private_root(root: Path) -> bool:
    """Create the storage folder when missing and make it 0700; False when it belongs to another user."""
    root.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    try:
        _make_private(root, PRIVATE_DIR)
    except PermissionError:
        # A volume mounted by another user: the call folders inside are private all the same.
        return False
    return True


def _make_private(path: Path, mode: int) -> None:
    # mkdir's mode is cut by the umask, and a folder made by an older version may be open to all.
    if stat.S_IMODE(path.stat().st_mode) != mode:
        os.chmod(path, mode)


def _private_file(path: Path) -> BinaryIO:
    """Open a file for writing that only the service's user can read, whatever the umask."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)  # os.open's mode is cut by the umask; an existing file keeps its own
        return os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        raise


def _write_atomically(path: Path, chunks: Iterable[bytes]) -> Path:
    """Write a private file under a partial name, fsync it and rename it into place."""
    partial = path.with_name("." + path.name + PARTIAL_SUFFIX)
    try:
        with _private_file(partial) as out:
            for chunk in chunks:
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    os.replace(partial, path)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
