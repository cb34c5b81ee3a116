"""Voice embeddings: who is speaking, as a 256-number vector per stretch of audio, without PyTorch.

The model is Resemblyzer's GE2E speaker encoder (a 3-layer LSTM over 40 mel bands, trained on
thousands of speakers), read from the `pretrained.pt` file that the PyPI package `Resemblyzer`
carries. The package is installed without its dependencies (`pip install --no-deps`): only the
weights are used, and the network runs here in numpy (checked against PyTorch to 1e-6).

The checkpoint is a PyTorch pickle. It is read with an unpickler that only rebuilds tensors and
dicts and refuses every other class, so a tampered file cannot run code.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import io
import os
import pickle
import struct
import zipfile
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import numpy as np

from qa_service.errors import ConfigError
from qa_service.records import SAMPLE_RATE

N_MELS = 40
_NFFT = 400  # 25 ms
_HOP = 160  # 10 ms: one mel frame per 10 ms
FRAMES_PER_S = SAMPLE_RATE // _HOP
_BATCH = 128  # windows per forward pass: (128, 100, 1024) float32 gates are 52 MB
# Resemblyzer normalises quiet recordings up to this level before embedding (never down).
_TARGET_DBFS = -30.0


@dataclass(frozen=True)
class VoiceEncoder:
    """The speaker encoder's weights; `embed` maps mel windows to unit-length voice vectors."""

    layers: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]  # (W_ih^T, W_hh^T, b_ih + b_hh)
    linear_w: np.ndarray
    linear_b: np.ndarray
    path: str = ""

    def embed(self, mels: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        """(windows, frames, 40) mel power spectra -> (windows, 256) L2-normalised embeddings.

        With `start`, window k's speech begins at frame start[k]: its state stays zero until then.
        """
        with one_blas_thread():
            out = [self._forward(mels[i : i + _BATCH], None if start is None else start[i : i + _BATCH])
                   for i in range(0, mels.shape[0], _BATCH)]
        return np.concatenate(out) if out else np.zeros((0, self.linear_w.shape[1]), np.float32)

    @cached_property
    def _ifog(self) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
        """The layers with gate columns as (input, forget, output, cell): three sigmoids in one call."""
        out = []
        for w_ih, w_hh, bias in self.layers:
            hidden = w_hh.shape[0]
            order = np.r_[0 : 2 * hidden, 3 * hidden : 4 * hidden, 2 * hidden : 3 * hidden]
            out.append((np.ascontiguousarray(w_ih[:, order]), np.ascontiguousarray(w_hh[:, order]),
                        bias[order]))
        return tuple(out)

    def _forward(self, x: np.ndarray, start: np.ndarray | None = None) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        batch, frames, _ = x.shape
        first = 0 if start is None else int(start.min())
        waiting = None if start is None or first == int(start.max()) else start[:, None]
        h = np.zeros((batch, 0), np.float32)
        for w_ih, w_hh, bias in self._ifog:
            hidden = w_hh.shape[0]
            gates_in = x[:, first:] @ w_ih + bias  # the input part of every step at once
            h = np.zeros((batch, hidden), np.float32)
            c = np.zeros((batch, hidden), np.float32)
            g = np.empty((batch, 4 * hidden), np.float32)
            seq = np.zeros((batch, frames, hidden), np.float32)
            sig, cell = g[:, : 3 * hidden], g[:, 3 * hidden :]
            for t in range(first, frames):
                np.matmul(h, w_hh, out=g)
                g += gates_in[:, t - first]
                # sigmoid(x) = (tanh(x / 2) + 1) / 2, in place: no overflow warnings for large gates
                sig *= 0.5
                np.tanh(sig, out=sig)
                sig += 1.0
                sig *= 0.5
                np.tanh(cell, out=cell)
                c *= sig[:, hidden : 2 * hidden]
                c += sig[:, :hidden] * cell
                np.tanh(c, out=h)
                h *= sig[:, 2 * hidden :]
                if waiting is not None:
                    live = waiting <= t
                    c *= live
                    h *= live
                seq[:, t] = h
            x = seq
        e = np.maximum(h @ self.linear_w + self.linear_b, 0.0)
        return e / (np.linalg.norm(e, axis=1, keepdims=True) + 1e-9)

    def describe(self) -> dict[str, Any]:
        """What made the embeddings, for the transcript record."""
        return {"name": "resemblyzer-ge2e", "path": self.path}


@cache
def _blas_thread_setter() -> Callable[[int], int] | None:
    """OpenBLAS's per-thread setter in the library numpy loaded (`openblas_set_num_threads_local`
    returns the previous count), or None when numpy uses another BLAS."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs", "*openblas*.so*")
    for path in glob.glob(libs):
        try:
            fn = ctypes.CDLL(path).openblas_set_num_threads_local
        except (OSError, AttributeError):
            continue
        fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
        return fn
    return None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run numpy's matrix products on this thread only: the encoder's recurrent steps are small
    products that OpenBLAS threads slow down tenfold when the cores are busy with other work."""
    setter = _blas_thread_setter()
    before = setter(1) if setter is not None else None
    try:
        yield
    finally:
        if setter is not None and before is not None:
            setter(before)


def load_voice_encoder(path: Path) -> VoiceEncoder:
    """Read a Resemblyzer checkpoint (legacy or zip PyTorch format) into numpy weights."""
    try:
        checkpoint = read_torch_checkpoint(path)
        state = checkpoint.get("model_state", checkpoint)
        layers = []
        k = 0
        while f"lstm.weight_ih_l{k}" in state:
            layers.append((
                np.ascontiguousarray(state[f"lstm.weight_ih_l{k}"].T, dtype=np.float32),
                np.ascontiguousarray(state[f"lstm.weight_hh_l{k}"].T, dtype=np.float32),
                (state[f"lstm.bias_ih_l{k}"] + state[f"lstm.bias_hh_l{k}"]).astype(np.float32),
            ))
            k += 1
        linear_w = np.ascontiguousarray(state["linear.weight"].T, dtype=np.float32)
        linear_b = state["linear.bias"].astype(np.float32)
    except (OSError, KeyError, ValueError, TypeError, AttributeError, pickle.UnpicklingError,
            zipfile.BadZipFile, struct.error) as exc:
        raise ConfigError(f"cannot read the voice model {path}: {type(exc).__name__}: {exc}") from None
    if not layers or layers[0][0].shape[0] != N_MELS:
        raise ConfigError(f"voice model {path} is not a speaker encoder over {N_MELS} mel bands")
    return VoiceEncoder(tuple(layers), linear_w, linear_b, str(path))


# ---- features -------------------------------------------------------------------------------

def mel_frames(samples: np.ndarray) -> np.ndarray:
    """Mel power spectrogram as the encoder was trained on it: (frames, 40), one frame per 10 ms.

    Matches librosa.feature.melspectrogram(sr=16000, n_fft=400, hop_length=160, n_mels=40) with a
    centred, zero-padded STFT; the level is first raised to -30 dBFS when the call is quieter.
    """
    x = np.asarray(samples, dtype=np.float32)
    sparse = x[:: max(1, x.size // 2_000_000)]  # a long call's level from 2M evenly spaced samples
    rms = float(np.sqrt(np.mean(np.square(sparse, dtype=np.float64)))) if x.size else 0.0
    gain = 10 ** ((_TARGET_DBFS - 20 * np.log10(rms)) / 20) if rms > 1e-6 else 1.0
    x = np.pad(x, (_NFFT // 2, _NFFT // 2))
    n_frames = 1 + (x.size - _NFFT) // _HOP
    fb = _MEL_FB.T
    window = _WINDOW * np.float32(max(gain, 1.0))
    out = np.empty((n_frames, N_MELS), np.float32)
    view = np.lib.stride_tricks.sliding_window_view(x, _NFFT)[::_HOP]
    step = 6000  # frames per chunk (60 s): bounded memory on long calls
    for i in range(0, n_frames, step):
        spec = np.abs(np.fft.rfft(view[i : i + step] * window, _NFFT)) ** 2
        out[i : i + step] = spec @ fb
    return out


def window_embeddings(
    encoder: VoiceEncoder, mels: np.ndarray, spans: Sequence[tuple[float, float]], frames: int
) -> np.ndarray:
    """One embedding per (start, end) span in seconds, at most `frames` long. Spans of like length
    share a batch, and a batch runs only as many steps as its longest span: a shorter span starts
    later from the zero state rather than after a run of silence."""
    out = np.empty((len(spans), encoder.linear_w.shape[1]), np.float32)
    cuts = []
    for a, b in spans:
        lo = max(0, min(int(round(a * FRAMES_PER_S)), mels.shape[0] - 1))
        hi = min(max(lo + 1, int(round(b * FRAMES_PER_S))), lo + frames, mels.shape[0])
        cuts.append((lo, hi))
    order = sorted(range(len(spans)), key=lambda k: cuts[k][1] - cuts[k][0])
    for i in range(0, len(order), _BATCH):  # one batch of windows in memory at a time
        rows = order[i : i + _BATCH]
        steps = max(cuts[k][1] - cuts[k][0] for k in rows)
        batch = np.zeros((len(rows), steps, N_MELS), np.float32)
        start = np.empty(len(rows), int)
        for j, k in enumerate(rows):
            lo, hi = cuts[k]
            start[j] = steps - (hi - lo)
            batch[j, start[j] :] = mels[lo:hi]
        out[rows] = encoder.embed(batch, start)
    return out


def _mel_filterbank() -> np.ndarray:
    """Slaney-style mel filters (librosa's default) for 0-8 kHz."""

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        return np.where(f >= 1000.0, 15.0 + np.log(np.maximum(f, 1e-10) / 1000.0) / _LOGSTEP, f * 3.0 / 200.0)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(m >= 15.0, 1000.0 * np.exp(_LOGSTEP * (m - 15.0)), m * 200.0 / 3.0)

    freqs = np.fft.rfftfreq(_NFFT, 1.0 / SAMPLE_RATE)
    edges = mel_to_hz(np.linspace(hz_to_mel(np.array(0.0)), hz_to_mel(np.array(SAMPLE_RATE / 2)), N_MELS + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - freqs[None, :]
    fb = np.maximum(0.0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]))
    fb *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return fb.astype(np.float32)


_LOGSTEP = np.log(6.4) / 27.0
_MEL_FB = _mel_filterbank()
_WINDOW = (0.5 - 0.5 * np.cos(2 * np.pi * np.arange(_NFFT) / _NFFT)).astype(np.float32)  # periodic Hann


# ---- reading PyTorch checkpoints without PyTorch ----------------------------------------------

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {"FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
           "LongStorage": np.int64, "IntStorage": np.int32}


@dataclass
class _Storage:
    dtype: Any
    key: str
    data: np.ndarray | None = None


@dataclass(frozen=True)
class _TensorRef:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]

    def array(self) -> np.ndarray:
        assert self.storage.data is not None
        data = self.storage.data
        n = int(np.prod(self.size)) if self.size else 1
        if n == 0:
            return np.zeros(self.size, self.storage.dtype)
        last = self.offset + sum((s - 1) * st for s, st in zip(self.size, self.stride, strict=True))
        if last >= data.size:
            raise ValueError("a tensor reaches past the end of its storage")
        strides = tuple(st * data.itemsize for st in self.stride)
        return np.lib.stride_tricks.as_strided(data[self.offset :], self.size, strides).copy()


def _rebuild_tensor(storage: _Storage, offset: int, size: Sequence[int], stride: Sequence[int],
                    *_: Any) -> _TensorRef:
    return _TensorRef(storage, int(offset), tuple(size), tuple(stride))


class _Unpickler(pickle.Unpickler):
    """Rebuilds tensors, dicts and plain values; any other class in the file is refused."""

    def __init__(self, file: Any, load_storage: Callable[[str, Any, str], _Storage]):
        super().__init__(file)
        self._load_storage = load_storage

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch._utils" and name in ("_rebuild_tensor", "_rebuild_tensor_v2"):
            return _rebuild_tensor
        if module == "collections" and name == "OrderedDict":
            return OrderedDict
        if module == "torch" and name in _DTYPES:
            return name
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a voice model file")

    def persistent_load(self, pid: Any) -> _Storage:
        kind, storage_type, key, _location, *_ = pid
        if kind != "storage" or storage_type not in _DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage {kind}/{storage_type}")
        return self._load_storage(str(key), _DTYPES[storage_type], storage_type)


def read_torch_checkpoint(path: Path) -> dict[str, Any]:
    """A `torch.save`d dict of tensors as a dict of numpy arrays (legacy and zip formats)."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        return _read_zip(path)
    storages: dict[str, _Storage] = {}

    def storage(key: str, dtype: Any, _type: str) -> _Storage:
        return storages.setdefault(key, _Storage(dtype, key))

    with path.open("rb") as fh:
        # Five pickles in a row: magic number, protocol version, system info, the object, storage keys.
        if _Unpickler(fh, storage).load() != _LEGACY_MAGIC:
            raise ValueError("not a PyTorch checkpoint")
        _Unpickler(fh, storage).load()
        _Unpickler(fh, storage).load()
        obj = _Unpickler(fh, storage).load()
        keys = _Unpickler(fh, storage).load()
        for key in keys:
            st = storages[str(key)]
            (count,) = struct.unpack("<q", fh.read(8))
            raw = fh.read(count * np.dtype(st.dtype).itemsize)
            st.data = np.frombuffer(raw, dtype=st.dtype)
            if st.data.size != count:
                raise ValueError("the checkpoint ends inside a tensor")
    return _materialise(obj)


def _read_zip(path: Path) -> dict[str, Any]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ValueError("zip checkpoint without data.pkl")
        prefix = pkl[: -len("data.pkl")]

        def storage(key: str, dtype: Any, _type: str) -> _Storage:
            raw = zf.read(f"{prefix}data/{key}")
            return _Storage(dtype, key, np.frombuffer(raw, dtype=dtype))

        obj = _Unpickler(io.BytesIO(zf.read(pkl)), storage).load()
    return _materialise(obj)


def _materialise(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.array()
    if isinstance(obj, dict):
        return {k: _materialise(v) for k, v in obj.items()}
    return obj
