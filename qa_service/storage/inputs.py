"""Call inputs on disk: one folder per call under QA_STORAGE_DIR, written and fsynced before enqueueing.

Inputs are raw recordings or transcripts (personal data): the worker deletes them after
processing unless `keep_raw_audio` / `keep_raw_transcript` say otherwise, and then seals them
(encrypted with `encryption_key`, `<name>.sealed`). The redacted copy of
a recording (every personal-data span silenced) is kept for the call page's player unless
`keep_redacted_audio` is off.
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from qa_service.errors import InputError

if TYPE_CHECKING:
    from qa_service.records import Audio

CHUNK = 1024 * 1024
# A redacted copy of a call's audio (`redacted.wav`) outlives the raw input in the call's folder.
REDACTED_STEM = "redacted"
AUDIO_SUFFIXES = frozenset({
    ".wav", ".mp3", ".flac", ".ogg", ".oga", ".opus", ".m4a", ".mp4", ".aac", ".webm", ".amr", ".gsm",
    ".au", ".aif", ".aiff", ".wma", ".mka", ".mkv", ".caf", ".spx", ".3gp",
})


class EmptyInput(InputError):
    """The uploaded file has no bytes."""


class InputTooLarge(InputError):
    """The uploaded file is bigger than max_upload_bytes."""


def call_dir(storage_dir: Path, call_id: str) -> Path:
    """The folder that holds one call's input."""
    # Call ids are UUIDs we make; refuse anything else so no path can escape the storage folder.
    # Absolute, because the stored path is read by workers that may run from another directory.
    return Path(storage_dir).resolve() / str(uuid.UUID(call_id))


def input_suffix(filename: str | None, kind: str) -> str:
    """A safe file suffix for a stored input: a known audio extension, .json or .txt, else .bin."""
    suffix = Path(filename or "").suffix.lower()
    if kind == "transcript":
        return ".json" if suffix == ".json" else ".txt"
    return suffix if suffix in AUDIO_SUFFIXES and re.fullmatch(r"\.[a-z0-9]+", suffix) else ".bin"


def write_input(storage_dir: Path, call_id: str, source: BinaryIO, suffix: str, max_bytes: int) -> Path:
    """Copy a stream into the call's folder, counting bytes; fsync file and folder so a crash keeps it."""
    folder = call_dir(storage_dir, call_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"input{suffix}"
    size = 0
    try:
        with open(path, "wb") as out:
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
    import io

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


SEALED_SUFFIX = ".sealed"


def seal_input(path: Path, key: str) -> Path:
    """Encrypt a kept raw input in place (Fernet: AES-128-CBC + HMAC); returns the sealed file's path."""
    from cryptography.fernet import Fernet

    sealed = path.with_name(path.name + SEALED_SUFFIX)
    partial = path.with_name("." + sealed.name + ".partial")
    with open(partial, "wb") as out:
        out.write(Fernet(key).encrypt(path.read_bytes()))
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, sealed)
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
    plain.write_bytes(data)
    sealed.unlink()
    return plain


def write_redacted_audio(storage_dir: Path, call_id: str, audio: Audio) -> Path:
    """Store the call's redacted audio as `redacted.wav` beside its input (atomically, fsynced)."""
    from qa_service.stages.redact_audio import encode_wav

    folder = call_dir(storage_dir, call_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{REDACTED_STEM}.wav"
    partial = folder / f".{REDACTED_STEM}.wav.partial"
    with open(partial, "wb") as out:
        out.write(encode_wav(audio))
        out.flush()
        os.fsync(out.fileno())
    os.replace(partial, path)
    _fsync_dir(folder)
    return path


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
