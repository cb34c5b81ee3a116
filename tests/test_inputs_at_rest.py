"""Call inputs at rest: only the service's user can read them, whatever the umask."""

from __future__ import annotations

import os
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from qa_service.api import create_app
from qa_service.storage.inputs import call_dir, write_bytes

KEY = "m3LQ0lOQ4B0Yl7I1tq3yJ0o9cXb2oF8kZb8oQm3x2zU="  # a Fernet key for tests
CALL = b"""Agent: Thanks for calling Harbourline, my name is Mira, and this call is recorded.
Customer: Hi, this is Adaeze Okonkwo-Baptiste, my phone number is 415 555 0132.
Agent: Thank you Adaeze. Is there anything else I can help you with?
"""


@pytest.fixture
def open_umask() -> Iterator[None]:
    """Files and folders get their modes from the service, not from a strict umask of the test run."""
    old = os.umask(0o000)
    yield
    os.umask(old)


def loose_modes(root: Path) -> list[str]:
    """Folders not 0700 and files not 0600 under (and including) the storage folder."""
    loose = []
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.lstat().st_mode)
        if mode != (0o700 if path.is_dir() else 0o600):
            loose.append(f"{path.relative_to(root.parent)} {oct(mode)}")
    return loose


def test_inputs_are_private_whatever_the_umask(make_settings, open_umask):
    import numpy as np

    from qa_service.records import Audio
    from qa_service.storage.inputs import seal_input, unseal_input, write_redacted_audio

    settings = make_settings()
    storage, call_id = settings.storage_dir, str(uuid.uuid4())
    # Folders an earlier version left open to everyone are closed again by the next write.
    call_dir(storage, call_id).mkdir(parents=True)
    os.chmod(storage, 0o755)
    os.chmod(call_dir(storage, call_id), 0o755)
    raw = write_bytes(storage, call_id, CALL, ".txt")
    audio = Audio(channels=(np.zeros(1600, dtype=np.float32),), duration_s=0.1, source_format="wav",
                  source_rate=16000, source_channels=1)
    write_redacted_audio(storage, call_id, audio)
    sealed = seal_input(raw, KEY)
    assert not loose_modes(storage), loose_modes(storage)
    names = sorted(p.name for p in call_dir(storage, call_id).iterdir())
    assert names == ["input.txt.sealed", "redacted.wav"]
    assert unseal_input(sealed, KEY).read_bytes() == CALL and not loose_modes(storage)

    fresh = settings.storage_dir.parent / "fresh-storage"
    create_app(make_settings(storage_dir=fresh))
    assert oct(stat.S_IMODE(fresh.stat().st_mode)) == oct(0o700)
