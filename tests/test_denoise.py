"""Steady noise subtraction before recognition: what it removes, what it keeps, and long calls
(and, shared with the band fill, what is too short to touch)."""

from __future__ import annotations

import numpy as np
import pytest

from qa_service.records import SAMPLE_RATE
from qa_service.stages import bandfill, denoise


def _bursts(seconds: float, hiss: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 220 Hz tone on for one second, off for one, under steady hiss; and the mask of tone-on samples."""
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    on = (t % 2.0) < 1.0
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * on + np.random.default_rng(seed).normal(0, hiss, t.size)
    return x.astype(np.float32), on


def _db(x: np.ndarray) -> float:
    return float(10 * np.log10(np.mean(np.square(x, dtype=np.float64))))


def test_hiss_in_the_pauses_is_reduced_and_the_tone_kept():
    x, on = _bursts(20.0, hiss=0.003)
    y = denoise.reduce_noise(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    pauses = ~on
    pauses[: SAMPLE_RATE // 10] = False  # the edges of each burst carry a little of the tone
    assert _db(y[pauses]) < _db(x[pauses]) - 4.0
    assert _db(y[on]) == pytest.approx(_db(x[on]), abs=0.5)


def test_digital_silence_between_words_means_nothing_to_subtract():
    x, _ = _bursts(10.0, hiss=0.0)
    assert denoise.reduce_noise(x) is not None
    np.testing.assert_array_equal(denoise.reduce_noise(x), x)


@pytest.mark.parametrize("n", [0, 100, 8 * 512 - 1])
@pytest.mark.parametrize("clean", [denoise.reduce_noise, bandfill.fill_missing_band])
def test_too_short_to_estimate_is_returned_as_is(clean, n):
    x = np.random.default_rng(1).normal(0, 0.01, n).astype(np.float32)
    np.testing.assert_array_equal(clean(x), x)


def test_blocks_join_seamlessly(monkeypatch):
    x, _ = _bursts(75.0, hiss=0.01)  # more than two blocks of about 33 s
    blocked = denoise.reduce_noise(x)
    monkeypatch.setattr(denoise, "_CHUNK", 10**6)  # one block for the whole signal
    whole = denoise.reduce_noise(x)
    np.testing.assert_allclose(blocked, whole, atol=1e-6)
