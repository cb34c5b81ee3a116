"""Telephone audio given the line noise it would have had above its band, before speech recognition.

A call recorded at 8 kHz holds nothing above 4 kHz. Resampled to Whisper's 16 kHz, the upper half of
the spectrogram is empty, below any noise, in every frame: a picture Whisper's small models rarely
saw in training, and they mishear more on it. When the recording has a steady noise floor (a real
line's hiss, which shows in the pauses between words), that floor is continued above the band edge
at the same level, as white noise; nothing within the band changes. A recording whose band is full,
or whose pauses are digitally silent, is returned unchanged.

Only the recogniser hears the filled signal; speaker attribution, redacted audio and metrics use the
recording as it was.
"""

from __future__ import annotations

import numpy as np

from qa_service.records import SAMPLE_RATE

_N = 512  # 32 ms frames: 31.25 Hz bins
_HOP = 512
_CHUNK = 4096  # frames per block when computing spectra: bounded memory however long the call
_BLOCK = 1 << 16  # samples of noise made at a time
# The band is missing above a frequency where the call's average spectrum stays this far (60 dB)
# below its speech band: a resampler's stop band, not the quiet top of real speech (20-40 dB down).
MISSING_BELOW = 1e-6
# Band edges below this are not telephone audio (nothing to say about them); above the top one the
# band is full.
LOWEST_EDGE_HZ = 2500.0
FULL_BAND_HZ = 7500.0
# The noise floor is read between these fractions of the band edge: the top of the band, clear of
# the resampler's roll-off (which reaches about 10% past a 4 kHz edge).
FLOOR_BAND = (0.6, 0.8)
QUIET_SHARE = 0.1
# Pauses quieter than this (mean power per sample, about -75 dBFS) are digital silence.
SILENT_FLOOR = 1e-7
# The same noise on every run, so a call transcribed again reads the same.
SEED = 0


def band_edge(samples: np.ndarray) -> float | None:
    """The frequency (Hz) above which the recording holds no sound, or None when its band is full."""
    power = _mean_power(_frames(samples))
    freqs = np.fft.rfftfreq(_N, 1 / SAMPLE_RATE)
    speech = power[(freqs >= 300) & (freqs <= 2500)].mean()
    if speech <= 0:
        return None
    # The edge is the first frequency above which every bin is missing.
    present = np.flatnonzero(power > speech * MISSING_BELOW)
    edge = float(freqs[present[-1] + 1]) if present.size and present[-1] + 1 < freqs.size else None
    if edge is None or edge >= FULL_BAND_HZ or edge < LOWEST_EDGE_HZ:
        return None
    return edge


def fill_missing_band(samples: np.ndarray, edge: float | None = None) -> np.ndarray:
    """The samples with white noise above their band at the level of their noise floor within it
    (float32, same length); `edge` is their `band_edge` when the caller knows it already."""
    x = np.asarray(samples, dtype=np.float32)
    if x.size < 8 * _N:
        return x
    edge = edge or band_edge(x)
    if edge is None:
        return x
    frames = _frames(x)
    energy = np.concatenate([np.square(frames[i : i + _CHUNK]).mean(axis=1)
                             for i in range(0, len(frames), _CHUNK)])
    quiet = frames[energy <= np.quantile(energy, QUIET_SHARE)]
    if np.square(quiet).mean() < SILENT_FLOOR:
        return x
    # The floor is read in the top of the band, below the resampler's roll-off; every bin above it
    # that the pauses leave under that level is brought up to it.
    freqs = np.fft.rfftfreq(_N, 1 / SAMPLE_RATE)
    pauses = _mean_power(quiet)
    top = freqs >= FLOOR_BAND[1] * edge
    floor = pauses[(freqs >= FLOOR_BAND[0] * edge) & ~top].mean()
    missing = np.where(top, np.maximum(floor - pauses, 0.0), 0.0)
    return x + _shaped_noise(x.size, freqs, missing)


def _shaped_noise(n: int, freqs: np.ndarray, power: np.ndarray) -> np.ndarray:
    """n samples of noise with `power` in each bin at `freqs` (power as `_mean_power` measures it).

    White noise of variance v has power v in every bin, so unit noise whose spectrum is scaled by
    the square root of the power wanted has that power.
    """
    rng = np.random.default_rng(SEED)
    out = np.empty(n, np.float32)
    for b in range(0, n, _BLOCK):
        size = min(_BLOCK, n - b)
        gain = np.sqrt(np.interp(np.fft.rfftfreq(size, 1 / SAMPLE_RATE), freqs, power))
        out[b : b + size] = np.fft.irfft(np.fft.rfft(rng.standard_normal(size)) * gain, size)
    return out


def _frames(x: np.ndarray) -> np.ndarray:
    return np.lib.stride_tricks.sliding_window_view(x, _N)[::_HOP]


def _mean_power(frames: np.ndarray) -> np.ndarray:
    """Mean power spectrum of the frames, Hann-windowed (no leakage to hide a missing band) and
    scaled so that white noise of variance v has power v in every bin; a block at a time."""
    window = np.hanning(_N)
    total = np.zeros(_N // 2 + 1, np.float64)
    for i in range(0, len(frames), _CHUNK):
        total += (np.abs(np.fft.rfft(frames[i : i + _CHUNK] * window, axis=1)) ** 2).sum(axis=0)
    return total / (max(len(frames), 1) * np.square(window).sum())
