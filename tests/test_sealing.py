"""Sealed inputs: streamed a chunk at a time, refused when cut, reordered or altered, and inputs sealed
by earlier versions (one Fernet token) still open."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest

from qa_service.errors import ConfigError
from qa_service.storage.sealing import CHUNK, BrokenSeal, seal_chunks, unseal_chunks

KEY = "m3LQ0lOQ4B0Yl7I1tq3yJ0o9cXb2oF8kZb8oQm3x2zU="  # Fernet keys for tests
OTHER_KEY = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="
SECRET = b"my card number is 4111 1111 1111 1111 and I live at 12 Harbour Road. " * 40


def sealed(data: bytes) -> bytes:
    return b"".join(seal_chunks(io.BytesIO(data), KEY))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK])
def test_sealing_round_trips_at_chunk_edges(size):
    data = os.urandom(size)
    assert b"".join(unseal_chunks(io.BytesIO(sealed(data)), KEY)) == data


def test_inputs_sealed_by_earlier_versions_still_open():
    from cryptography.fernet import Fernet

    old = Fernet(KEY).encrypt(SECRET)
    assert b"".join(unseal_chunks(io.BytesIO(old), KEY)) == SECRET
    with pytest.raises(ConfigError, match="was the key changed"):
        b"".join(unseal_chunks(io.BytesIO(old), OTHER_KEY))


def frames(blob: bytes) -> Iterator[bytes]:
    rest = blob[8:]
    while rest:
        size = int.from_bytes(rest[:4], "big")
        yield rest[:4 + size]
        rest = rest[4 + size:]


def test_a_cut_or_reordered_seal_is_refused():
    blob = sealed(os.urandom(3 * CHUNK))
    head, parts = blob[:8], list(frames(blob))
    assert len(parts) == 3
    broken = {
        "cut after a frame": head + b"".join(parts[:2]),
        "cut inside a frame": blob[:-100],
        "reordered": head + parts[1] + parts[0] + parts[2],
        "frame dropped": head + parts[0] + parts[2],
        "bytes appended": blob + b"x",
        "altered": blob[:-40] + bytes([blob[-40] ^ 1]) + blob[-39:],
    }
    for what, data in broken.items():
        with pytest.raises(BrokenSeal):
            b"".join(unseal_chunks(io.BytesIO(data), KEY))
            pytest.fail(what)
    with pytest.raises(ConfigError, match="was the key changed"):
        b"".join(unseal_chunks(io.BytesIO(blob), OTHER_KEY))
    # Fernet tokens are stored decoded from their base64: a sealed input is barely larger than the plain one.
    assert len(blob) < 3 * CHUNK * 1.001
