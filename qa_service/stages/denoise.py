"""Steady background noise taken out before speech recognition (spectral subtraction).

Telephone lines and call-centre headsets add a steady hiss or hum. Whisper's small models mishear
words under it and, on a noisy stretch, fall back to sampling at high temperature, which writes
words nobody said. The noise spectrum is estimated from the quietest tenth of the call (the pauses
between words) and subtracted from every frame, down to a floor so that speech is never gated
away. A recording whose pauses are digitally silent is returned unchanged.

Only the recogniser hears the cleaned signal; speaker attribution, redacted audio and metrics use
the recording as it was.

More words come through on noisy lines, but criteria accuracy fell on the same calls
(docs/decisions/0009-measured-options.md), so it is a setting (QA_ASR_DENOISE), off by default.
"""

from __future__ import annotations

import numpy as np

_N = 512  # 32 ms at 16 kHz
_HOP = 128
_CHUNK = 4096  # frames per block: about 8 MB of spectra at a time, however long the call
# Pauses quieter than this (about -75 dBFS per frame) are digital silence: nothing to subtract.
SILENT_FLOOR = 1e-7
QUIET_SHARE = 0.1
# Never attenuate a bin by more than this gain (-13 dB): deeper cuts leave "musical" artefacts
# that the recogniser hears as speech.
GAIN_FLOOR = 0.22


def reduce_noise(samples: np.ndarray) -> np.ndarray:
    """The samples with their steady background noise subtracted (same length, float32).

    Works through the call in blocks of about 30 s, so an hour-long call needs one extra copy of
    its samples and no more.
    """
    x = np.asarray(samples, dtype=np.float32)
    if x.size < 8 * _N:
        return x
    window = np.hanning(_N).astype(np.float32)
    noise = _noise_power(x, window)
    if noise is None:
        return x
    # Every output sample lies under N/HOP frames; their squared windows sum to a pattern that
    # repeats every HOP samples, which is the overlap-add normalisation.
    w2 = window.astype(np.float64) ** 2
    norm = w2.reshape(-1, _HOP).sum(axis=0)
    out = np.empty_like(x)
    block = _CHUNK * _HOP
    for b in range(0, x.size, block):
        n = min(block, x.size - b)
        # The block with N samples of context on each side (zeros beyond the call), framed on the
        # same grid as every other block, so the blocks join seamlessly.
        seg = np.zeros(n + 2 * _N, np.float32)
        lo, hi = max(0, b - _N), min(x.size, b + n + _N)
        seg[lo - (b - _N) : hi - (b - _N)] = x[lo:hi]
        frames = np.lib.stride_tricks.sliding_window_view(seg, _N)[::_HOP]
        spec = np.fft.rfft(frames * window, axis=1)
        gain = np.sqrt(np.maximum(1.0 - noise / (np.abs(spec) ** 2 + 1e-12), GAIN_FLOOR**2))
        clean = np.fft.irfft(spec * gain, _N, axis=1) * window
        acc = np.zeros(seg.size, np.float64)
        # Overlap-add: frames r, r+4, r+8... (hop = N/4) lie end to end, so each of the four
        # phases is one contiguous addition.
        for r in range(_N // _HOP):
            part = clean[r :: _N // _HOP].reshape(-1)
            acc[r * _HOP : r * _HOP + part.size] += part
        mid = acc[_N : _N + n]
        out[b : b + n] = mid / np.tile(norm, -(-n // _HOP))[:n]
    return out


def _noise_power(x: np.ndarray, window: np.ndarray) -> np.ndarray | None:
    """Mean power spectrum of the quietest frames, or None when they are digital silence."""
    frames = np.lib.stride_tricks.sliding_window_view(x, _N)[::_HOP]
    energy = np.concatenate([
        np.square(frames[i : i + _CHUNK] * window).mean(axis=1) for i in range(0, len(frames), _CHUNK)
    ])
    quiet = np.flatnonzero(energy <= np.quantile(energy, QUIET_SHARE))
    if energy[quiet].mean() < SILENT_FLOOR:
        return None
    noise = np.zeros(_N // 2 + 1, np.float64)
    for i in range(0, len(quiet), _CHUNK):
        noise += (np.abs(np.fft.rfft(frames[quiet[i : i + _CHUNK]] * window, axis=1)) ** 2).sum(axis=0)
    return noise / len(quiet)
