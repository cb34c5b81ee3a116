"""Call inputs on disk: one folder per call under QA_STORAGE_DIR, written and fsynced before enqueueing.

Inputs are raw recordings or transcripts (personal data): the worker deletes them after
processing unless `keep_raw_audio` / `keep_raw_transcript` say otherwise, and then seals them
(encrypted with `encryption_key`, `<name>.sealed`). The redacted copy of
a recording (every personal-data span silenced) is kept for the call page's player unless
`keep_redacted_audio` is off. Only the service's user can read any of them: files are 0600 in
folders 0700, the storage folder included, whatever the umask.
"""

from __future__ import annotations

import io
import logging
import os
import re
import shutil
import stat
import uuid
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
# A file being written (`_write_atomically`) is renamed into place once complete.
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


def seal_input(path: Path, key: str) -> Path:
    """Encrypt a kept raw input in place (Fernet: AES-128-CBC + HMAC); returns the sealed file's path."""
    from cryptography.fernet import Fernet

    sealed = _write_atomically(path.with_name(path.name + SEALED_SUFFIX),
                               Fernet(key).encrypt(path.read_bytes()))
    path.unlink()
    _fsync_dir(path.parent)
    return sealed


def unseal_input(sealed: Path, key: str) -> Path:
    """Decrypt a sealed input back beside it (to process the call again); returns the plain path."""
    from cryptography.fernet import Fernet, InvalidToken

    plain = sealed.with_name(sealed.name.removesuffix(SEALED_SUFFIX))
    try:
        data = Fernet(key).decrypt(sealed.read_bytes())
    except InvalidToken:
        raise InputError("the kept input cannot be decrypted with QA_ENCRYPTION_KEY (was the key changed?)") \
            from None
    with _private_file(plain) as out:
        out.write(data)
    sealed.unlink()
    return plain


def write_redacted_audio(storage_dir: Path, call_id: str, audio: Audio) -> Path:
    """Store the call's redacted audio as `redacted.wav` beside its input (atomically, fsynced)."""
    from qa_service.stages.redact_audio import encode_wav

    folder = _call_folder(storage_dir, call_id)
    return _write_atomically(folder / f"{REDACTED_STEM}.wav", encode_wav(audio))


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


def _write_atomically(path: Path, data: bytes) -> Path:
    """Write a private file under a partial name, fsync it and rename it into place."""
    partial = path.with_name("." + path.name + PARTIAL_SUFFIX)
    with _private_file(partial) as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    _fsync_dir(path.parent)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
