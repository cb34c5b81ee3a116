"""Speaker roles on mono recordings, from the audio itself: no hub model, numpy only.

1. Words (with Whisper's timestamps) are grouped into short units at pauses and sentence ends.
2. Each frame gets MFCCs (80 Hz - 4 kHz, so 8 kHz telephone audio and 16 kHz audio look alike)
   and a pitch estimate; each unit gets the mean and spread of its frames plus its median pitch.
   With a voice model (`stages.voiceprint`), every word also gets a voice embedding: the mean of
   0.8 s windows every 0.3 s across it, each kept inside the word's unit so that it hears one voice.
3. First splits into two speakers: k-means on the units, a split by pitch and, with a voice
   model, k-means on the voice embeddings. Each is refined: one diagonal Gaussian mixture per
   speaker is fitted on its frames, every word is scored against both (plus the cosine similarity
   of its voice embedding to each speaker's mean), and a word-level Viterbi pass with a switching
   cost (lower at pauses and sentence ends, higher inside a clause, impossible inside a word)
   relabels the words. Fit and relabel repeat a few times; of the refined splits, the best wins.
4. If two models do not explain the frames better than one by the BIC penalty, the call has one
   voice: it is the agent's when it says the agent's phrases, otherwise "unknown".
5. The agent is the speaker who says more of the phrases of the rubric's agent criteria
   (`agent_phrases`) in the first minutes, or failing that, who says most of the first words.
   A phrase counts for the voice of the stretch around it (its words and the rest of their units,
   by voice embedding, or by the labels' duration without a voice model): the phrases only name a
   voice, they never move a word from one voice to the other.
   Segments are split where the speaker changes between words and carry the mean posterior of
   their label in `confidence`.

With a voice model, the start and the choice between starts go by the voice embeddings (the split
whose words sit nearest their own speaker's mean voice); without one, by the BIC gain of the
MFCC models. On synthetic voices the BIC gain can prefer a split along the sentence rather than
the speaker, which is why it does not judge the voice model's splits.

The voice embeddings are there because MFCC and pitch statistics alone do not separate two similar
voices. The figures, and the command that measures them (scripts/measure_speakers.py), are in
docs/decisions/0003-speakers-on-real-calls.md and 0009-measured-options.md.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from qa_service.records import SAMPLE_RATE, Segment, Speaker, Word
from qa_service.stages import voiceprint

HOP_S = 0.01
_WIN = 400  # 25 ms
_HOP = 160  # 10 ms
_NFFT = 512
_N_MELS = 32
_N_MFCC = 20
_FMIN, _FMAX = 80.0, 4000.0
_C0 = 0
_F0_MIN, _F0_MAX = 70.0, 400.0

# Word grouping: a unit ends at a pause this long, at a sentence end, or when it grows this long.
UNIT_PAUSE_S = 0.25
UNIT_MAX_S = 3.0
# Switching speaker between two words costs this much log-likelihood (scaled), less at pauses.
SWITCH_COST = 12.0
# A change inside a clause (no pause, no punctuation) costs this many times more; inside a word,
# (a token Whisper joined to the one before) a change is not allowed.
MID_CLAUSE = 4.0
NO_SWITCH = 1e6
# Frames are strongly correlated; scaling their summed log-likelihoods keeps posteriors honest.
FRAME_SCALE = 0.1
GMM_COMPONENTS = 16
MAX_TRAIN_FRAMES = 8000
EM_ITERATIONS = 8
ITERATIONS = 3
# Two voices only when two models beat one by more than the BIC penalty times this weight; below 1
# because contact-centre calls are two-party by nature and a false "one voice" costs more than a split.
BIC_WEIGHT = 0.9
# The agent's phrases are looked for in this first stretch of the call.
OPENING_S = 180.0
# A phrase is credited to the voice of the stretch that holds it, up to this many words either side.
STRETCH_MAX_WORDS = 12
# Failing those, the agent is who says most words in this first stretch of speech.
FIRST_WORDS_S = 3.0
# Voice embeddings: windows this long (mel frames of 10 ms), this far apart, inside one unit; a
# unit shorter than VOICE_MIN_WINDOW_S gets a window that long centred on it. Above
# MAX_VOICE_WINDOWS (an hour of speech) the spacing grows, so longer calls cost no more.
VOICE_WINDOW = 80
VOICE_MIN_WINDOW_S = 0.5
VOICE_HOP_S = 0.3
MAX_VOICE_WINDOWS = 12000
# Weight of a word's cosine similarity to each speaker's mean voice in the Viterbi scores.
VOICE_WEIGHT = 20.0


_NONE = np.array([], dtype=int)


@dataclass
class _Unit:
    words: list[int]  # indices into the flat word list
    start: float
    end: float


def attribute_speakers(
    samples: np.ndarray,
    segments: Sequence[Segment],
    *,
    agent_phrases: Sequence[str] = (),
    voices: voiceprint.VoiceEncoder | None = None,
) -> tuple[list[Segment], dict[str, Any]]:
    """Label mono segments as agent or customer; returns the segments and how they were labelled."""
    method = "voice-embeddings" if voices is not None else "acoustic-clustering"
    words, owner = _flatten(segments)
    if not words:
        return list(segments), {"method": method, "speakers": 0}
    feats, f0 = frame_features(samples)
    frames = [_frame_range(w.start, w.end, feats.shape[0]) for w in words]
    units = _units(words)
    emb, ok = _unit_embeddings(units, frames, feats, f0)
    windows, voice = _word_voices(voices, samples, words, units) if voices is not None else (None, None)

    # Refinement can settle on a split by something other than voice, so it starts from different
    # first guesses and keeps the best split: the one whose words sit nearest their own speaker's
    # mean voice when there is a voice model (it separates similar voices that MFCC and pitch
    # statistics cannot), otherwise the one whose two MFCC models explain the audio best.
    guesses: list[np.ndarray] = []
    if windows is not None and voice is not None and len(windows) >= 2:  # two voices need two windows
        guesses.append(_voice_clusters(windows, voice, words))
    for unit_guess in (_initial_clusters(emb, ok, units), _pitch_split(emb, ok)):
        if len(set(unit_guess[ok].tolist())) < 2:
            continue
        start = np.zeros(len(words), dtype=int)
        for u, lab in zip(units, unit_guess, strict=True):
            start[u.words] = lab
        guesses.append(start)
    labels = np.zeros(len(words), dtype=int)
    posterior = np.ones(len(words))
    gain = 0.0
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for start in guesses:
        if len(set(start.tolist())) < 2:
            continue
        cand, post = _refine(words, frames, feats, f0, start, voice)
        fit = _bic_gain(frames, feats, cand) if voice is None else _voice_fit(voice, words, cand)
        if best is None or fit > best[0]:
            best = (fit, cand, post)
    if best is not None:
        fit, labels, posterior = best
        # The BIC gain also decides one voice or two; with a voice model it is needed for the winner only.
        gain = fit if voice is None else _bic_gain(frames, feats, labels)
    two = gain > 0 and len(set(labels.tolist())) == 2
    if not two:
        labels[:] = 0
        posterior = np.ones(len(words))

    agent_cluster, evidence = _agent_cluster(words, labels, agent_phrases, voice if two else None)
    roles: list[Speaker] = [
        "agent" if lab == agent_cluster else "unknown" if agent_cluster < 0 else "customer" for lab in labels
    ]
    out = _rebuild(segments, words, owner, roles, posterior if two else None)
    info = {
        "method": method,
        "speakers": 2 if two else 1,
        "bic_gain_per_frame": round(float(gain), 3),
        "agent_by": evidence,
    }
    return out, info


# ---- features -------------------------------------------------------------------------------

def frame_features(samples: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per 10 ms frame: MFCCs (c0..c19) and pitch in Hz (0 where unvoiced)."""
    x = np.asarray(samples, dtype=np.float32)
    if x.size < _WIN:
        x = np.pad(x, (0, _WIN - x.size))
    n_frames = 1 + (x.size - _WIN) // _HOP
    fb = _mel_filterbank()
    dct = _dct_matrix()
    window = np.hamming(_WIN - 1).astype(np.float32)
    mfcc = np.empty((n_frames, _N_MFCC), dtype=np.float32)
    f0 = np.zeros(n_frames, dtype=np.float32)
    lag_lo, lag_hi = int(SAMPLE_RATE / _F0_MAX), int(SAMPLE_RATE / _F0_MIN)
    step = 6000  # frames per chunk (60 s): bounded memory on long calls
    view = np.lib.stride_tricks.sliding_window_view(x, _WIN)[::_HOP]
    for i in range(0, n_frames, step):
        raw = view[i : i + step]
        # Pre-emphasis per frame (as Kaldi does) rather than on a full copy of a long call.
        fr = (raw[:, 1:] - 0.97 * raw[:, :-1]) * window
        spec = np.abs(np.fft.rfft(fr, _NFFT)) ** 2
        mel = np.log(spec @ fb.T + 1e-8)
        mfcc[i : i + step] = mel @ dct.T
        # Pitch from the normalised autocorrelation (zero-padded to avoid wrap-around).
        ac = np.fft.irfft(np.abs(np.fft.rfft(raw - raw.mean(axis=1, keepdims=True), 1024)) ** 2, 1024)
        r0 = ac[:, :1] + 1e-9
        seg = ac[:, lag_lo : lag_hi + 1] / r0
        best = seg.argmax(axis=1)
        peak = seg[np.arange(seg.shape[0]), best]
        voiced = (peak > 0.45) & (r0[:, 0] > 1e-6)
        f0[i : i + step] = np.where(voiced, SAMPLE_RATE / (best + lag_lo), 0.0)
    return mfcc, f0


def _mel_filterbank() -> np.ndarray:
    def mel(f):
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def hz(m):
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    points = hz(np.linspace(mel(_FMIN), mel(_FMAX), _N_MELS + 2))
    bins = np.fft.rfftfreq(_NFFT, 1.0 / SAMPLE_RATE)
    fb = np.zeros((_N_MELS, bins.size), dtype=np.float32)
    for m in range(_N_MELS):
        lo, mid, hi = points[m], points[m + 1], points[m + 2]
        up = (bins - lo) / (mid - lo)
        down = (hi - bins) / (hi - mid)
        fb[m] = np.maximum(0.0, np.minimum(up, down))
    return fb


def _dct_matrix() -> np.ndarray:
    n = np.arange(_N_MELS)
    k = np.arange(_C0, _C0 + _N_MFCC)[:, None]
    return (np.cos(np.pi * k * (2 * n + 1) / (2 * _N_MELS)) * np.sqrt(2.0 / _N_MELS)).astype(np.float32)


def _frame_range(start: float, end: float, n_frames: int) -> slice:
    a = max(0, min(n_frames - 1, int(round(start / HOP_S))))
    b = max(a + 1, min(n_frames, int(round(end / HOP_S))))
    return slice(a, b)


# ---- units and embeddings -------------------------------------------------------------------

def _flatten(segments: Sequence[Segment]) -> tuple[list[Word], list[int]]:
    words: list[Word] = []
    owner: list[int] = []
    for i, s in enumerate(segments):
        ws = s.words or (Word(text=s.text, start=s.start, end=s.end),)
        for w in ws:
            words.append(w)
            owner.append(i)
    order = sorted(range(len(words)), key=lambda j: (words[j].start, words[j].end))
    return [words[j] for j in order], [owner[j] for j in order]


def _sentence_end(w: Word) -> bool:
    return w.text.rstrip().endswith((".", "?", "!"))


def _unit_break(words: Sequence[Word], j: int) -> bool:
    """True when a pause or a sentence end comes before word j."""
    return words[j].start - words[j - 1].end >= UNIT_PAUSE_S or _sentence_end(words[j - 1])


def _units(words: list[Word]) -> list[_Unit]:
    units: list[_Unit] = []
    cur = [0]
    for j in range(1, len(words)):
        start = words[cur[0]].start
        if _unit_break(words, j) or words[j].end - start > UNIT_MAX_S:
            units.append(_Unit(cur, start, words[j - 1].end))
            cur = []
        cur.append(j)
    units.append(_Unit(cur, words[cur[0]].start, words[cur[-1]].end))
    return units


def _unit_embeddings(units, frames, feats, f0) -> tuple[np.ndarray, np.ndarray]:
    speech = np.zeros(feats.shape[0], dtype=bool)
    for sl in frames:
        speech[sl] = True
    mu = feats[speech].mean(axis=0)
    sd = feats[speech].std(axis=0) + 1e-6
    feats -= mu  # normalise in place: later stages reuse the normalised frames
    feats /= sd
    voiced_f0 = f0[speech & (f0 > 0)]
    ref = float(np.median(voiced_f0)) if voiced_f0.size else 150.0
    rows, ok = [], []
    for u in units:
        idx = np.concatenate([np.arange(frames[j].start, frames[j].stop) for j in u.words])
        fr = feats[idx]
        p = f0[idx]
        p = p[p > 0]
        pitch = np.log(np.median(p) / ref) * 4.0 if p.size >= 5 else 0.0
        rows.append(np.concatenate([fr.mean(axis=0), 0.5 * fr.std(axis=0), [pitch]]))
        ok.append(idx.size >= 40 and p.size >= 5)  # 0.4 s of speech with some voicing
    emb = np.array(rows, dtype=np.float64)
    okm = np.array(ok, dtype=bool)
    if okm.sum() >= 2:
        m, s = emb[okm].mean(axis=0), emb[okm].std(axis=0) + 1e-6
        emb = (emb - m) / s
    return emb, okm


def _initial_clusters(emb: np.ndarray, ok: np.ndarray, units: list[_Unit]) -> np.ndarray:
    labels = np.zeros(len(units), dtype=int)
    if ok.sum() < 2:
        return labels
    weights = np.array([u.end - u.start for u in units])
    centres = _kmeans2(emb[ok], weights[ok])
    d = ((emb[:, None, :] - centres[None, :, :]) ** 2).sum(axis=2)
    return d.argmin(axis=1)


def _pitch_split(emb: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Units above the median pitch against those below (the last embedding column is pitch)."""
    if ok.sum() < 2:
        return np.zeros(len(emb), dtype=int)
    return (emb[:, -1] > np.median(emb[ok, -1])).astype(int)


def _kmeans2(x: np.ndarray, w: np.ndarray, restarts: int = 12, iters: int = 50) -> np.ndarray:
    rng = np.random.default_rng(0)  # fixed seed: the same call always gets the same labels
    best, best_cost = None, np.inf
    for _ in range(restarts):
        c0 = x[rng.choice(len(x), p=w / w.sum())]
        d0 = ((x - c0) ** 2).sum(axis=1) * w
        c1 = x[rng.choice(len(x), p=d0 / d0.sum())] if d0.sum() > 0 else x[rng.integers(len(x))]
        centres = np.stack([c0, c1])
        for _ in range(iters):
            d = ((x[:, None, :] - centres[None]) ** 2).sum(axis=2)
            lab = d.argmin(axis=1)
            new = np.stack([
                np.average(x[lab == k], axis=0, weights=w[lab == k]) if (lab == k).any() else centres[k]
                for k in range(2)
            ])
            if np.allclose(new, centres):
                break
            centres = new
        cost = float((d.min(axis=1) * w).sum())
        if cost < best_cost:
            best, best_cost = centres, cost
    assert best is not None
    return best


# ---- voice embeddings -----------------------------------------------------------------------

def _word_voices(
    encoder: voiceprint.VoiceEncoder, samples: np.ndarray, words: list[Word], units: list[_Unit]
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-length voice embeddings, centred on the call's mean voice: one per window and one per word.

    Centring removes what every window shares (line, room, language) and leaves what tells the
    two voices apart, so cosine similarity compares speakers rather than recordings.
    """
    speech = sum(w.end - w.start for w in words)
    hop = max(VOICE_HOP_S, speech / MAX_VOICE_WINDOWS)
    unit_of = np.empty(len(words), dtype=int)
    for k, u in enumerate(units):
        unit_of[u.words] = k
    times: list[float] = []
    owner: list[int] = []
    spans: list[tuple[float, float]] = []
    half = VOICE_WINDOW / voiceprint.FRAMES_PER_S / 2
    t = words[0].start
    for j, w in enumerate(words):
        t = max(t, w.start)
        u = units[unit_of[j]]
        while t <= w.end:
            lo, hi = max(t - half, u.start - 0.05), min(t + half, u.end + 0.05)
            if hi - lo < VOICE_MIN_WINDOW_S:
                mid = (lo + hi) / 2
                lo, hi = mid - VOICE_MIN_WINDOW_S / 2, mid + VOICE_MIN_WINDOW_S / 2
            times.append(t)
            owner.append(j)
            spans.append((lo, hi))
            t += hop
    mels = voiceprint.mel_frames(samples)
    grid = voiceprint.window_embeddings(encoder, mels, spans, VOICE_WINDOW)
    grid = grid - grid.mean(axis=0)
    grid /= np.linalg.norm(grid, axis=1, keepdims=True) + 1e-9
    grid_t = np.array(times)
    first = np.searchsorted(owner, np.arange(len(words)), side="left")  # owner is sorted
    last = np.searchsorted(owner, np.arange(len(words)), side="right")
    out = np.empty((len(words), grid.shape[1]), np.float32)
    for j, w in enumerate(words):
        if last[j] > first[j]:
            v = grid[first[j] : last[j]].mean(axis=0)
        else:  # a word shorter than the spacing: the nearest window speaks for it
            v = grid[np.abs(grid_t - (w.start + w.end) / 2).argmin()]
        out[j] = v / (np.linalg.norm(v) + 1e-9)
    return grid, out


def _voice_clusters(windows: np.ndarray, voice: np.ndarray, words: list[Word]) -> np.ndarray:
    """Words labelled by the nearer of two voices found by k-means over all windows (every 0.1 s
    of speech counts the same), smoothed by the same Viterbi pass as later."""
    centres = _spherical_kmeans2(windows)
    return _viterbi(words, VOICE_WEIGHT * (voice @ centres.T))


def _spherical_kmeans2(x: np.ndarray, restarts: int = 10, iters: int = 30) -> np.ndarray:
    """Two unit-length centres maximising the summed cosine similarity of unit vectors to the nearer."""
    rng = np.random.default_rng(0)  # fixed seed: the same call always gets the same labels
    best, best_fit = None, -np.inf
    for _ in range(restarts):
        centres = x[rng.choice(len(x), 2, replace=False)]
        for _ in range(iters):
            lab = (x @ centres.T).argmax(axis=1)
            new = np.stack([x[lab == k].sum(axis=0) if (lab == k).any() else centres[k] for k in range(2)])
            new /= np.linalg.norm(new, axis=1, keepdims=True) + 1e-9
            if np.allclose(new, centres):
                break
            centres = new
        fit = float((x @ centres.T).max(axis=1).sum())
        if fit > best_fit:
            best, best_fit = centres, fit
    assert best is not None
    return best


def _voice_scores(voice: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per word and speaker: VOICE_WEIGHT x cosine similarity to that speaker's mean voice."""
    centres = np.stack([
        voice[labels == k].mean(axis=0) if (labels == k).any() else np.zeros(voice.shape[1]) for k in range(2)
    ])
    centres /= np.linalg.norm(centres, axis=1, keepdims=True) + 1e-9
    return VOICE_WEIGHT * (voice @ centres.T)


def _voice_fit(voice: np.ndarray, words: list[Word], labels: np.ndarray) -> float:
    """The voice model's judgement of a split, per word: the score the Viterbi pass gives it (each
    word's similarity to its own speaker's mean voice, less the cost of each change of speaker).

    Similarity alone favours splits that move a turn's weakest words to the other voice (the first
    words of each agent turn, say), which tightens both clusters but changes speaker mid-sentence.
    """
    scores = _voice_scores(voice, labels)
    own = float(scores[np.arange(len(labels)), labels].sum())
    switches = sum(_switch_cost(words, j) for j in range(1, len(words)) if labels[j] != labels[j - 1])
    return (own - switches) / len(words)


# ---- refinement: per-speaker GMMs and word-level Viterbi ------------------------------------

class _DiagGMM:
    def __init__(self, x: np.ndarray, k: int, rng: np.random.Generator, iters: int = EM_ITERATIONS):
        if len(x) > MAX_TRAIN_FRAMES:
            # A few minutes of frames pin a voice down; more only slows long calls.
            x = x[np.sort(rng.choice(len(x), MAX_TRAIN_FRAMES, replace=False))]
        k = max(1, min(k, len(x) // 20))
        self.means = x[rng.choice(len(x), k, replace=False)]
        self.vars = np.tile(x.var(axis=0) + 1e-3, (k, 1))
        self.weights = np.full(k, 1.0 / k)
        floor = x.var(axis=0) * 0.01 + 1e-4
        for _ in range(iters):
            ll = self._component_ll(x)
            ll -= ll.max(axis=1, keepdims=True)
            resp = np.exp(ll)
            resp /= resp.sum(axis=1, keepdims=True)
            nk = resp.sum(axis=0) + 1e-9
            self.weights = nk / nk.sum()
            self.means = np.einsum("nk,nd->kd", resp, x) / nk[:, None]
            self.vars = np.maximum(np.einsum("nk,nd->kd", resp, x * x) / nk[:, None] - self.means**2, floor)

    def _component_ll(self, x: np.ndarray) -> np.ndarray:
        inv = 1.0 / self.vars
        # einsum, not @: BLAS threads on these thin matrices are slower than one core on a busy worker.
        quad = (np.einsum("nd,kd->nk", x * x, inv) - 2 * np.einsum("nd,kd->nk", x, self.means * inv)
                + (self.means**2 * inv).sum(axis=1))
        return np.log(self.weights) - 0.5 * (np.log(2 * np.pi * self.vars).sum(axis=1) + quad)

    def loglik(self, x: np.ndarray) -> np.ndarray:
        ll = self._component_ll(x)
        m = ll.max(axis=1)
        return m + np.log(np.exp(ll - m[:, None]).sum(axis=1))


def _refine(words, frames, feats, f0, labels, voice=None):
    """Fit one GMM per speaker, rescore every word, relabel with Viterbi; repeat until stable."""
    rng = np.random.default_rng(0)
    idx = [np.arange(sl.start, sl.stop) for sl in frames]
    speech = np.unique(np.concatenate(idx))
    x = feats[speech].astype(np.float64)
    local = [np.searchsorted(speech, i) for i in idx]  # word frames as rows of x
    logf0 = np.where(f0[speech] > 0, np.log(np.maximum(f0[speech], 1.0)), np.nan)
    posterior = np.ones(len(words))
    for _ in range(ITERATIONS):
        frame_ll = np.zeros((len(speech), 2))
        for k in range(2):
            rows = np.concatenate([local[j] for j in np.flatnonzero(labels == k)] or [_NONE])
            if rows.size < 100:
                return labels, posterior
            frame_ll[:, k] = _DiagGMM(x[rows], GMM_COMPONENTS, rng).loglik(x)
            p = logf0[rows][~np.isnan(logf0[rows])]
            if p.size >= 20:
                mu, sd = float(p.mean()), float(p.std() + 0.05)
                frame_ll[:, k] += np.nan_to_num(-0.5 * ((logf0 - mu) / sd) ** 2 - np.log(sd))
        emis = np.array([frame_ll[r].sum(axis=0) * FRAME_SCALE for r in local])
        if voice is not None:
            emis += _voice_scores(voice, labels)
        new = _viterbi(words, emis)
        e = emis - emis.max(axis=1, keepdims=True)
        post = np.exp(e) / np.exp(e).sum(axis=1, keepdims=True)
        posterior = post[np.arange(len(words)), new]
        if np.array_equal(new, labels):
            break
        labels = new
    return labels, posterior


def _bic_gain(frames, feats, labels) -> float:
    """Per-frame log-likelihood gain of two speaker models over one, minus the BIC penalty."""
    idx = [np.arange(sl.start, sl.stop) for sl in frames]
    parts = [np.unique(np.concatenate([idx[j] for j in np.flatnonzero(labels == k)] or [_NONE]))
             for k in range(2)]
    if min(p.size for p in parts) < 100:
        return -1.0
    rng = np.random.default_rng(0)
    every = np.unique(np.concatenate(parts))
    x = feats[every].astype(np.float64)  # speech frames only: a long call's full matrix is large
    one = _DiagGMM(x, GMM_COMPONENTS, rng).loglik(x).sum()
    two = 0.0
    for p in parts:
        xp = x[np.searchsorted(every, p)]
        two += _DiagGMM(xp, GMM_COMPONENTS, rng).loglik(xp).sum()
    n, dim = every.size, feats.shape[1]
    params = GMM_COMPONENTS * (2 * dim + 1)
    return float((two - one) / n - BIC_WEIGHT * 0.5 * params * np.log(n) / n)


def _viterbi(words: list[Word], emis: np.ndarray) -> np.ndarray:
    n = len(words)
    score = emis[0].copy()
    back = np.zeros((n, 2), dtype=int)
    for j in range(1, n):
        cost = _switch_cost(words, j)
        new = np.empty(2)
        for k in range(2):
            stay, switch = score[k], score[1 - k] - cost
            back[j, k] = k if stay >= switch else 1 - k
            new[k] = max(stay, switch) + emis[j, k]
        score = new
    out = np.zeros(n, dtype=int)
    out[-1] = int(score.argmax())
    for j in range(n - 1, 0, -1):
        out[j - 1] = back[j, out[j]]
    return out


def _switch_cost(words: list[Word], j: int) -> float:
    """Cost of a change of speaker between words j-1 and j: lower after a sentence end or a pause,
    higher inside a clause, and out of reach inside a word."""
    prev, w = words[j - 1], words[j]
    if _same_word(prev, w):
        return NO_SWITCH
    cost = SWITCH_COST
    boundary = False
    if _sentence_end(prev):
        cost *= 0.4
        boundary = True
    if w.start - prev.end >= UNIT_PAUSE_S:
        cost *= 0.4
        boundary = True
    if not boundary and not prev.text.rstrip().endswith((",", ";", ":")):
        cost *= MID_CLAUSE
    return cost


def _same_word(prev: Word, w: Word) -> bool:
    """True when w continues prev's word: Whisper writes a new word with a leading space."""
    return (bool(w.text) and not w.text[0].isspace() and not prev.text[-1:].isspace()) or \
        prev.text.endswith("-") or w.text.lstrip().startswith("-")


# ---- naming the agent and rebuilding segments -----------------------------------------------

def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def phrase_hits(text_tokens: list[str], phrase: str) -> bool:
    """True when the phrase is said, allowing small recognition slips (fuzzy match over a window)."""
    p = _tokens(phrase)
    if not p or len(text_tokens) < len(p):
        return False
    target = " ".join(p)
    for i in range(len(text_tokens) - len(p) + 1):
        window = " ".join(text_tokens[i : i + len(p)])
        if window == target or difflib.SequenceMatcher(None, window, target).ratio() >= 0.85:
            return True
    return False


def phrase_spans(words: Sequence[Word], phrase: str) -> list[tuple[int, int]]:
    """(first, last) word indices of each place the phrase is said (as `phrase_hits` matches it)."""
    p = _tokens(phrase)
    toks: list[str] = []
    owner: list[int] = []
    for j, w in enumerate(words):
        for t in _tokens(w.text):
            toks.append(t)
            owner.append(j)
    spans: list[tuple[int, int]] = []
    i = 0
    while p and i <= len(toks) - len(p):
        if phrase_hits(toks[i : i + len(p)], phrase):
            spans.append((owner[i], owner[i + len(p) - 1]))
            i += len(p)
        else:
            i += 1
    return spans


def _stretch_of(words: Sequence[Word], first: int, last: int) -> np.ndarray:
    """Indices of words first..last and the rest of their units: the speech around a phrase that
    runs without a pause or a sentence end, so in one voice."""
    a = first
    while a > 0 and not _unit_break(words, a) and first - a < STRETCH_MAX_WORDS:
        a -= 1
    b = last
    while b < len(words) - 1 and not _unit_break(words, b + 1) and b - last < STRETCH_MAX_WORDS:
        b += 1
    return np.arange(a, b + 1)


def _agent_cluster(
    words: list[Word], labels: np.ndarray, agent_phrases: Sequence[str], voice: np.ndarray | None = None
) -> tuple[int, str]:
    clusters = sorted(set(labels.tolist()))
    if len(clusters) == 1:
        toks = _tokens(" ".join(w.text for w in words if w.start < OPENING_S))
        if any(phrase_hits(toks, p) for p in agent_phrases):
            return clusters[0], "single-speaker-phrases"
        return -1, "single-speaker-unknown"
    # Opening phrases are said at the start; looking there only also keeps long calls cheap.
    opening = [w for w in words if w.start < OPENING_S]
    centres = None
    if voice is not None:
        centres = np.stack([voice[labels == k].mean(axis=0) for k in (0, 1)])
    scores = dict.fromkeys(clusters, 0)
    for phrase in agent_phrases:
        said_by = set()
        for a, b in phrase_spans(opening, phrase):
            # The voice of the stretch around it says who said the phrase, whatever labels its words got.
            stretch = _stretch_of(words, a, b)
            if voice is not None and centres is not None:
                said_by.add(int((voice[stretch].mean(axis=0) @ centres.T).argmax()))
            else:
                dur = [sum(words[j].end - words[j].start for j in stretch if labels[j] == k) for k in (0, 1)]
                said_by.add(int(np.argmax(dur)))
        for k in said_by:
            scores[k] += 1
    if scores[0] != scores[1]:
        return max(scores, key=lambda k: scores[k]), "phrases"
    # Whoever says most of the first words: the first word alone may be heard in the other voice.
    first = [lab for w, lab in zip(words, labels, strict=True) if w.start < words[0].start + FIRST_WORDS_S]
    return max(clusters, key=first.count), "first-speaker"


def _rebuild(segments, words, owner, roles, posterior) -> list[Segment]:
    groups: dict[int, list[int]] = {}
    for j, i in enumerate(owner):
        groups.setdefault(i, []).append(j)
    out: list[Segment] = []
    for i, seg in enumerate(segments):
        js = groups.get(i, [])
        if not js or not seg.words:
            role: Speaker = roles[js[0]] if js else "unknown"
            conf = float(np.mean([posterior[j] for j in js])) if js and posterior is not None else None
            out.append(Segment(role, seg.start, seg.end, seg.text, seg.words, conf))
            continue
        run = [js[0]]
        for j in js[1:]:
            if roles[j] != roles[run[-1]]:
                out.append(_make(words, run, roles, posterior))
                run = []
            run.append(j)
        out.append(_make(words, run, roles, posterior))
    return sorted(out, key=lambda s: (s.start, s.end))


def _make(words, run, roles, posterior) -> Segment:
    ws = tuple(words[j] for j in run)
    text = re.sub(r"\s+", " ", "".join(w.text for w in ws)).strip()
    conf = round(float(np.mean([posterior[j] for j in run])), 3) if posterior is not None else None
    return Segment(roles[run[0]], ws[0].start, ws[-1].end, text, ws, conf)
