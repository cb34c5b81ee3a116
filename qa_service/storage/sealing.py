"""Sealed inputs, encrypted with QA_ENCRYPTION_KEY (Fernet) a chunk at a time, so no input is ever whole
in memory while it is sealed or read back.

A sealed input is `MAGIC` followed by frames: a 4-byte big-endian length, then a Fernet token (stored
decoded from its base64, a third smaller) whose plain text is the frame's index (8 bytes), a last-frame
flag (1 byte) and up to `CHUNK` bytes of the input. Fernet authenticates each frame, and the index and
the flag inside it refuse frames reordered, dropped or cut off at the end. Inputs sealed by earlier
versions (one Fernet token for the whole file) are still read.
"""

from __future__ import annotations

import base64
import io
import struct
from collections.abc import Iterator
from typing import BinaryIO

from qa_service.errors import ConfigError, InputError

MAGIC = b"QASEAL1\n"
CHUNK = 1024 * 1024
_LENGTH = struct.Struct(">I")
_HEADER = struct.Struct(">QB")
# A frame is CHUNK bytes of input plus Fernet's version, time, IV, padding and HMAC: refuse far larger.
_MAX_FRAME = CHUNK + 4096


class BrokenSeal(InputError):
    """A sealed input that is cut short or altered: no key can open it."""


def _wrong_key() -> ConfigError:
    # Not the caller's fault and not lost: the call stays retryable once the right key is set.
    return ConfigError("the call's kept input cannot be decrypted with QA_ENCRYPTION_KEY (was the key "
                       "changed?); set the key that sealed it and retry")


def seal_chunks(source: BinaryIO, key: str) -> Iterator[bytes]:
    """The sealed form of a stream, a frame at a time."""
    from cryptography.fernet import Fernet

    fernet = Fernet(key)
    yield MAGIC
    index = 0
    chunk = source.read(CHUNK)
    while True:
        following = source.read(CHUNK) if chunk else b""
        last = not following
        token = base64.urlsafe_b64decode(fernet.encrypt(_HEADER.pack(index, last) + chunk))
        yield _LENGTH.pack(len(token)) + token
        if last:
            return
        chunk, index = following, index + 1


def unseal_chunks(source: BinaryIO, key: str) -> Iterator[bytes]:
    """The plain input of a sealed stream, a chunk at a time; ConfigError when the key is not the one
    that sealed it, BrokenSeal when the stream was cut or altered."""
    from cryptography.fernet import Fernet, InvalidToken

    fernet = Fernet(key)
    head = _read_exactly(source, len(MAGIC))
    if head != MAGIC:
        # Sealed by an earlier version: one token for the whole input (as small as the limits on uploads).
        try:
            yield fernet.decrypt(head + source.read())
        except InvalidToken:
            raise _wrong_key() from None
        return
    expected = 0
    while True:
        size_bytes = _read_exactly(source, _LENGTH.size)
        if len(size_bytes) < _LENGTH.size:
            raise BrokenSeal("the sealed input is cut short: its last part is missing")
        (size,) = _LENGTH.unpack(size_bytes)
        token = _read_exactly(source, size) if size <= _MAX_FRAME else b""
        if len(token) != size or size < _HEADER.size:
            raise BrokenSeal("the sealed input is cut short or altered")
        try:
            plain = fernet.decrypt(base64.urlsafe_b64encode(token))
        except InvalidToken:
            # The first frame tells a wrong key from damage: a wrong key fails there already.
            if expected == 0:
                raise _wrong_key() from None
            raise BrokenSeal("the sealed input is altered") from None
        index, last = _HEADER.unpack_from(plain)
        if index != expected:
            raise BrokenSeal("the sealed input's parts are out of order")
        yield plain[_HEADER.size:]
        if last:
            if source.read(1):
                raise BrokenSeal("the sealed input has bytes after its last part")
            return
        expected += 1


class ChunkReader(io.RawIOBase):
    """A readable binary stream over an iterator of byte chunks (holds one chunk at a time)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._buffer:
            try:
                self._buffer = memoryview(next(self._chunks))
            except StopIteration:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size] = self._buffer[:size]
        self._buffer = self._buffer[size:]
        return size


def unsealed_reader(source: BinaryIO, key: str) -> BinaryIO:
    """A readable stream of a sealed input's plain bytes."""
    return io.BufferedReader(ChunkReader(unseal_chunks(source, key)), buffer_size=CHUNK)  # type: ignore[return-value]


def _read_exactly(source: BinaryIO, size: int) -> bytes:
    """`size` bytes, fewer only at the end of the stream (a raw stream may return short reads)."""
    parts, left = [], size
    while left:
        part = source.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)
