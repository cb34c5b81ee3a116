"""Voice embeddings: the checkpoint reader, the numpy encoder against its reference, and real voices."""

from __future__ import annotations

import io
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from qa_service.errors import ConfigError
from qa_service.modelstore import resolve_voice_model
from qa_service.stages import voiceprint
from qa_service.stages.decode import decode

AUDIO = Path(__file__).parent / "data" / "audio"


# ---- reading PyTorch checkpoints (pure) --------------------------------------------------------

class _Tensor:
    """Stands in for a torch tensor when writing a checkpoint: pickles as torch does."""

    def __init__(self, key: str, array: np.ndarray):
        self.key, self.array = key, array

    def __reduce__(self):
        rebuild = sys.modules["torch._utils"]._rebuild_tensor_v2
        stride = tuple(s // self.array.itemsize for s in self.array.strides)
        return rebuild, (_StorageRef(self.key, self.array.size), 0, self.array.shape, stride, False, {})


class _StorageRef:
    def __init__(self, key: str, size: int):
        self.key, self.size = key, size


@pytest.fixture
def torch_names(monkeypatch):
    """Module names that torch's pickles refer to, so the writer can emit them without torch."""
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):
        raise AssertionError("never called: only pickled by reference")

    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch = types.ModuleType("torch")
    torch.FloatStorage = type("FloatStorage", (), {"__module__": "torch"})
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


class _Writer(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", sys.modules["torch"].FloatStorage, obj.key, "cpu", obj.size)
        return None


def _state():
    rng = np.random.default_rng(3)
    return {"w": rng.standard_normal((4, 3)).astype(np.float32),
            "b": rng.standard_normal(5).astype(np.float32)}


def _legacy_bytes(state: dict[str, np.ndarray], tail_cut: int = 0) -> bytes:
    buf = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    _Writer(buf, protocol=2).dump({"step": 7, "model_state": {k: _Tensor(k, v) for k, v in state.items()}})
    pickle.dump(list(state), buf, protocol=2)
    for arr in state.values():
        buf.write(struct.pack("<q", arr.size) + arr.tobytes())
    data = buf.getvalue()
    return data[: len(data) - tail_cut]


def test_legacy_checkpoint_round_trip(torch_names, tmp_path):
    state = _state()
    path = tmp_path / "legacy.pt"
    path.write_bytes(_legacy_bytes(state))
    out = voiceprint.read_torch_checkpoint(path)
    assert out["step"] == 7
    for k, v in state.items():
        np.testing.assert_array_equal(out["model_state"][k], v)


def test_zip_checkpoint_round_trip(torch_names, tmp_path):
    state = _state()
    pkl = io.BytesIO()
    _Writer(pkl, protocol=2).dump({"model_state": {k: _Tensor(k, v) for k, v in state.items()}})
    path = tmp_path / "zipped.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pkl.getvalue())
        for k, v in state.items():
            zf.writestr(f"archive/data/{k}", v.tobytes())
    out = voiceprint.read_torch_checkpoint(path)
    np.testing.assert_array_equal(out["model_state"]["w"], state["w"])


def test_truncated_checkpoint_is_a_config_error(torch_names, tmp_path):
    path = tmp_path / "cut.pt"
    path.write_bytes(_legacy_bytes(_state(), tail_cut=7))
    with pytest.raises(ConfigError, match="cannot read the voice model"):
        voiceprint.load_voice_encoder(path)


class _Exploit:
    def __reduce__(self):
        import os

        return os.system, ("touch pwned",)


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001) + pickle.dumps({})
                     + pickle.dumps({"model_state": _Exploit()}))
    with pytest.raises(ConfigError, match="posix.system is not allowed|os.system is not allowed"):
        voiceprint.load_voice_encoder(path)
    assert not (tmp_path / "pwned").exists()


def test_a_file_that_is_not_a_checkpoint_is_a_config_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_bytes(b"hello, I am not a model")
    with pytest.raises(ConfigError, match="notes.pt"):
        voiceprint.load_voice_encoder(path)


def test_unknown_voice_model_name_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="neither a packaged model"):
        resolve_voice_model(str(tmp_path / "missing.pt"))


# ---- the packaged model ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def encoder() -> voiceprint.VoiceEncoder:
    return voiceprint.load_voice_encoder(resolve_voice_model("resemblyzer"))


def _glide() -> np.ndarray:
    """1.2 s of a gliding harmonic tone, the input of the reference values below."""
    sr = 16000
    t = np.arange(int(1.2 * sr)) / sr
    phase = 2 * np.pi * np.cumsum(120 + 60 * t) / sr
    wav = sum(np.sin(h * phase) / h for h in range(1, 12)) * 0.1
    return (wav + 0.003 * np.sin(2 * np.pi * 3000 * t)).astype(np.float32)


def test_embedding_matches_the_pytorch_reference(encoder):
    # Computed with Resemblyzer 0.1.4's own VoiceEncoder (PyTorch 2.13) on librosa 0.11's mel
    # spectrogram of the same signal: the six largest dimensions.
    reference = {32: 0.23334, 122: 0.21428, 70: 0.18273, 111: 0.17844, 202: 0.17256, 248: 0.16962}
    mels = voiceprint.mel_frames(_glide())
    assert mels.shape == (121, voiceprint.N_MELS)
    e = encoder.embed(mels[None])[0]
    assert e.shape == (256,)
    assert np.linalg.norm(e) == pytest.approx(1.0, abs=1e-5)
    for dim, value in reference.items():
        assert e[dim] == pytest.approx(value, abs=2e-4), dim


def test_quiet_audio_is_raised_to_the_training_level():
    loud = voiceprint.mel_frames(_glide())
    quiet = voiceprint.mel_frames(_glide() * 0.01)  # -61 dBFS
    # Both reach -30 dBFS or more: the quiet copy is scaled up to exactly -30 dBFS.
    assert quiet.sum() == pytest.approx(loud.sum() * 10 ** ((-30 + 21.08) / 10), rel=0.01)


def test_windows_of_one_voice_are_nearer_each_other(encoder):
    """Windows of two (synthetic) voices, centred on their mean as the diarizer does: pairs from one
    voice are clearly more alike than pairs across voices, and nearly every window is nearer the
    other windows of its own voice than those of the other voice."""
    spans = [(t, t + 1.0) for t in np.arange(0.3, 3.5, 0.5)]
    mels = [voiceprint.mel_frames(decode(AUDIO / f).channels[0]) for f in ("agent.flac", "customer.flac")]
    per_voice = [voiceprint.window_embeddings(encoder, m, spans, 100) for m in mels]
    e = np.vstack(per_voice)
    e -= e.mean(axis=0)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    who = np.repeat([0, 1], len(spans))
    sim = e @ e.T
    same = (who[:, None] == who[None, :]) & ~np.eye(len(e), dtype=bool)
    assert sim[same].mean() - sim[who[:, None] != who[None, :]].mean() > 0.15
    nearer = sum(
        sim[i, same[i]].mean() > sim[i, who != who[i]].mean() for i in range(len(e))
    )
    assert nearer >= len(e) - 2


def test_short_spans_are_padded_and_batches_split(encoder):
    mels = voiceprint.mel_frames(_glide())
    spans = [(0.0, 0.3)] * 130 + [(0.2, 1.2)]  # more than one batch of windows
    out = voiceprint.window_embeddings(encoder, mels, spans, 100)
    assert out.shape == (131, 256)
    np.testing.assert_allclose(out[0], out[129], atol=1e-6)  # same span, other batch: same vector
    assert float(out[0] @ out[130]) < 0.999


def _small_encoder(seed: int = 0, hidden: int = 8) -> voiceprint.VoiceEncoder:
    rng = np.random.default_rng(seed)
    layers = []
    width = voiceprint.N_MELS
    for _ in range(2):
        layers.append((rng.normal(0, 0.3, (width, 4 * hidden)).astype(np.float32),
                       rng.normal(0, 0.3, (hidden, 4 * hidden)).astype(np.float32),
                       rng.normal(0, 0.1, 4 * hidden).astype(np.float32)))
        width = hidden
    return voiceprint.VoiceEncoder(tuple(layers), rng.normal(0, 0.3, (hidden, 6)).astype(np.float32),
                                   np.zeros(6, np.float32))


def test_a_window_that_starts_late_in_its_batch_is_embedded_as_if_alone():
    enc = _small_encoder()
    x = np.random.default_rng(1).random((3, 20, voiceprint.N_MELS), dtype=np.float32)
    start = np.array([0, 5, 12])
    for k in range(3):
        x[k, : start[k]] = 7.0  # what comes before a window's start is never read
    together = enc.embed(x, start)
    for k in range(3):
        alone = enc.embed(x[k : k + 1, start[k] :])[0]
        np.testing.assert_allclose(together[k], alone, atol=1e-5)


def test_window_embeddings_cut_each_span_and_keep_the_order():
    enc = _small_encoder()
    mels = np.random.default_rng(2).random((300, voiceprint.N_MELS), dtype=np.float32)
    spans = [(0.5, 1.5), (0.1, 0.3), (2.0, 2.6)]  # 100, 20 and 60 frames; windows of at most 50
    got = voiceprint.window_embeddings(enc, mels, spans, 50)
    for (a, b), e in zip(spans, got, strict=True):
        lo = int(round(a * voiceprint.FRAMES_PER_S))
        hi = min(int(round(b * voiceprint.FRAMES_PER_S)), lo + 50)
        np.testing.assert_allclose(e, enc.embed(mels[None, lo:hi])[0], atol=1e-5)


def test_one_blas_thread_is_given_back():
    setter = voiceprint._blas_thread_setter()
    if setter is None:
        pytest.skip("numpy does not use OpenBLAS here")
    before = setter(3)
    try:
        with voiceprint.one_blas_thread():
            assert setter(1) == 1
        assert setter(3) == 3
    finally:
        setter(before)
