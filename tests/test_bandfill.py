"""Line noise continued above a telephone recording's band: where the band ends, how loud the
fill is, what is left alone."""

from __future__ import annotations

import numpy as np
import pytest

from qa_service.records import SAMPLE_RATE
from qa_service.stages import bandfill
from qa_service.stages.decode import decode
from tests.test_bad_inputs import wav


def _voiced_bursts(rate: int, seconds: float, hiss: float) -> np.ndarray:
    """A 200 Hz buzz with harmonics up to the band's top, on for a second and off for one, under hiss."""
    t = np.arange(int(seconds * rate)) / rate
    top = min(rate / 2 * 0.9, 7000)
    buzz = sum(np.sin(2 * np.pi * f * t) / (1 + f / 1000) for f in np.arange(200, top, 200))
    x = 0.05 * buzz * ((t % 2.0) < 1.0) + np.random.default_rng(3).normal(0, hiss, t.size)
    return x.astype(np.float32)


def _recorded_at(rate: int, x: np.ndarray) -> np.ndarray:
    """The signal as a 16-bit WAV at `rate`, decoded to 16 kHz the way calls are."""
    return decode(wav(x, rate)).channels[0]


def _band_power(x: np.ndarray, lo: float, hi: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2 / x.size
    freqs = np.fft.rfftfreq(x.size, 1 / SAMPLE_RATE)
    return float(spec[(freqs >= lo) & (freqs < hi)].mean())


def _db(ratio: float) -> float:
    return float(10 * np.log10(ratio))


def test_a_telephone_line_s_hiss_is_continued_above_its_band_and_nothing_else_changes():
    x = _recorded_at(8000, _voiced_bursts(8000, 12.0, hiss=0.004))
    edge = bandfill.band_edge(x)
    assert edge is not None and 4000 <= edge <= 4800
    y = bandfill.fill_missing_band(x)
    assert y.dtype == np.float32 and y.shape == x.shape
    pauses = np.concatenate([y[int((s + 1.1) * SAMPLE_RATE) : int((s + 1.9) * SAMPLE_RATE)]
                             for s in range(0, 12, 2)])
    # In the pauses, the top of the spectrum is now as loud as the hiss inside the band (white).
    assert _db(_band_power(pauses, 5000, 7500) / _band_power(pauses, 2500, 3500)) == pytest.approx(0, abs=1.5)
    # The band itself is untouched.
    assert _band_power(y - x, 0, 3500) < 1e-3 * _band_power(x, 0, 3500)


def test_a_full_band_recording_is_left_alone():
    x = _recorded_at(16000, _voiced_bursts(16000, 8.0, hiss=0.004))
    assert bandfill.band_edge(x) is None
    np.testing.assert_array_equal(bandfill.fill_missing_band(x), x)


def test_digitally_silent_pauses_leave_nothing_to_continue():
    x = _recorded_at(8000, _voiced_bursts(8000, 8.0, hiss=0.0))
    assert bandfill.band_edge(x) is not None
    np.testing.assert_array_equal(bandfill.fill_missing_band(x), x)


def test_the_fill_is_the_same_on_every_run_and_steady_over_a_long_call():
    x = _recorded_at(8000, _voiced_bursts(8000, 30.0, hiss=0.004))  # several noise blocks
    y = bandfill.fill_missing_band(x)
    np.testing.assert_array_equal(bandfill.fill_missing_band(x), y)
    added = y - x
    first, last = added[: 5 * SAMPLE_RATE], added[-5 * SAMPLE_RATE :]
    assert _db(_band_power(last, 5000, 7500) / _band_power(first, 5000, 7500)) == pytest.approx(0, abs=1.0)
