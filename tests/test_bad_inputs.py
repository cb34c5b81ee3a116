"""Broken, odd and hostile recordings through the real path: upload, then the job with the real pipeline.

Every file ends in a defined way: refused at upload with a 4xx, or the call `failed` with a reason
about the audio (no speech found, when it decodes but holds none), or `done` with a scorecard of the
speech in it. Never a 5xx, never an internal error, never a scorecard without speech (it would fail
the agent), and the next call still works.
"""

from __future__ import annotations

import io
import json
import struct
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from qa_service.app import create_app
from qa_service.auth import create_key
from qa_service.errors import AudioError
from qa_service.settings import Settings
from qa_service.stages.decode import decode
from qa_service.worker import jobs
from qa_service.worker.context import WorkerContext, activate
from tests.chaos_support import CHAT, FORM, seed_rules

pytestmark = pytest.mark.slow

SPEECH_WAV = Path(__file__).parent / "data" / "audio" / "short_16k.wav"  # "Testing one two three."
NO_SPEECH = "no speech found in the recording"
# Outcomes: refused at upload; call failed with an audio reason; failed for want of speech; done.
REFUSED, FAILED, SILENT, SPEECH = "refused", "failed", "silent", "speech"


# -- generators ----------------------------------------------------------------------------------

def speech(rate: int = 16000) -> np.ndarray:
    """The test phrase as float32 mono at `rate` (resampled by PyAV when needed)."""
    if rate == 16000:
        with wave.open(str(SPEECH_WAV)) as w:
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
        return (pcm.astype(np.float32) / 32768).astype(np.float32)
    return _resample(speech(), 16000, rate)


def _resample(x: np.ndarray, src: int, dst: int) -> np.ndarray:
    import av

    resampler = av.AudioResampler(format="flt", layout="mono", rate=dst)
    frame = av.AudioFrame.from_ndarray(x.reshape(1, -1), format="flt", layout="mono")
    frame.sample_rate = src
    out = [f.to_ndarray().reshape(-1) for f in resampler.resample(frame)]
    out += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    return np.concatenate(out).astype(np.float32)


def wav(samples: np.ndarray | bytes, rate: int = 16000, channels: int = 1, width: int = 2) -> bytes:
    """A PCM WAV file; float input is scaled to `width` bytes per sample."""
    if isinstance(samples, np.ndarray):
        if width == 1:
            samples = (np.clip(samples, -1, 1) * 127 + 128).astype(np.uint8).tobytes()
        else:
            samples = (np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes()
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(samples)
    return buf.getvalue()


def wav_raw(fmt_tag: int, bits: int, data: bytes, rate: int = 8000, channels: int = 1) -> bytes:
    """A WAV file with any format tag (1 PCM, 3 float, 6 A-law, 7 mu-law), written by hand."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    body = b"WAVEfmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def encode(container: str, codec: str, samples: np.ndarray, rate: int = 16000, **options: Any) -> bytes:
    """Encode mono float samples with PyAV (FLAC, MP3, Ogg Vorbis/Opus, AAC...)."""
    import av

    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout="mono", **options)
        fmt = stream.codec_context.format.name
        frame_size = stream.codec_context.frame_size or 1024
        for start in range(0, len(samples), frame_size):
            chunk = samples[start:start + frame_size]
            if fmt.startswith("s16"):
                arr = (np.clip(chunk, -1, 1) * 32767).astype(np.int16).reshape(1, -1)
            elif fmt.startswith("s32"):
                arr = (np.clip(chunk, -1, 1) * 2147483000).astype(np.int32).reshape(1, -1)
            else:
                arr = chunk.astype(np.float32).reshape(1, -1)
            frame = av.AudioFrame.from_ndarray(arr, format=fmt, layout="mono")
            frame.sample_rate = rate
            frame.pts = start
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buf.getvalue()


def _g711(codec: str, x: np.ndarray) -> bytes:
    """Raw G.711 bytes made by FFmpeg's own encoder (8 kHz mono)."""
    data = encode("wav", codec, x, rate=8000)
    return data[data.index(b"data") + 8:]


def patch32(data: bytes, offset: int, value: int) -> bytes:
    """Overwrite a little-endian 32-bit field."""
    return data[:offset] + struct.pack("<I", value) + data[offset + 4:]


def patch16(data: bytes, offset: int, value: int) -> bytes:
    """Overwrite a little-endian 16-bit field."""
    return data[:offset] + struct.pack("<H", value) + data[offset + 2:]


def flip_bytes(data: bytes, start: int, count: int, seed: int = 1) -> bytes:
    """Overwrite `count` bytes from `start` with random ones."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, count, dtype=np.uint8).tobytes()
    return data[:start] + noise + data[start + count:]


def rand(n: int, seed: int = 7) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def silence(seconds: float, rate: int = 8000) -> np.ndarray:
    return np.zeros(int(seconds * rate), np.float32)


def tone(seconds: float, rate: int = 16000, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def noise(seconds: float, colour: float = 0.0, level: float = 0.1, seed: int = 0) -> np.ndarray:
    """Gaussian noise at 16 kHz whose power falls as 1/f**colour (0 white, 1 pink, 2 brown)."""
    n = int(seconds * 16000)
    spectrum = np.fft.rfft(np.random.default_rng(seed).normal(0, 1, n))
    spectrum /= np.maximum(np.arange(spectrum.size), 1) ** (colour / 2)
    x = np.fft.irfft(spectrum, n)
    return (level * x / x.std()).astype(np.float32)


def hissing(x: np.ndarray, level: float = 0.02, seed: int = 9) -> np.ndarray:
    """The samples with white noise added throughout (a poor line)."""
    return (x + noise(x.size / 16000, level=level, seed=seed)[: x.size]).astype(np.float32)


def music(seconds: float, seed: int = 0) -> np.ndarray:
    """Notes with harmonics and a drum on every other beat: hold music without a voice."""
    rng = np.random.default_rng(seed)
    out = np.zeros(int(seconds * 16000))
    for beat in range(int(seconds * 4)):
        start = beat * 4000
        t = np.arange(min(6400, out.size - start)) / 16000
        f0 = [262, 294, 330, 349, 392, 440, 494, 523][rng.integers(8)]
        out[start:start + t.size] += sum(0.08 / h * np.sin(2 * np.pi * f0 * h * t + h) for h in range(1, 7)) \
            * np.exp(-4 * t)
        if beat % 2 == 0:
            k = min(1600, t.size)
            out[start:start + k] += 0.15 * rng.normal(0, 1, k) * np.exp(-np.arange(k) / 200)
    return out.astype(np.float32)


def stereo(left: np.ndarray, right: np.ndarray, rate: int = 16000) -> bytes:
    """A two-channel 16-bit WAV file."""
    n = max(left.size, right.size)
    frames = np.zeros((n, 2), np.float32)
    frames[: left.size, 0], frames[: right.size, 1] = left, right
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(frames, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def float_wav(x: np.ndarray, rate: int = 16000) -> bytes:
    return wav_raw(3, 32, x.astype("<f4").tobytes(), rate=rate)


def multichannel(channels: int, rate: int = 8000) -> bytes:
    voice = speech(rate)
    frames = np.zeros((len(voice), channels), np.float32)
    frames[:, 0] = voice
    frames[:, 1] = voice * 0.5
    return wav(frames.reshape(-1), rate=rate, channels=channels)


_cache: dict[str, bytes] = {}


def cached(name: str, make: Callable[[], bytes]) -> Callable[[], bytes]:
    def get() -> bytes:
        if name not in _cache:
            _cache[name] = make()
        return _cache[name]
    return get


SPEECH_FLAC = cached("flac", lambda: encode("flac", "flac", speech()))
SPEECH_MP3 = cached("mp3", lambda: encode("mp3", "libmp3lame", speech(), bit_rate=32000))
# FFmpeg's own Vorbis encoder is "experimental"; the fixture was made with libvorbis.
SPEECH_OGG = cached("ogg", lambda: (Path(__file__).parent / "data" / "audio" / "short_16k.ogg").read_bytes())
SPEECH_OPUS = cached("opus", lambda: encode("ogg", "libopus", speech(48000), rate=48000))
SPEECH_WAV_BYTES = cached("wav", lambda: SPEECH_WAV.read_bytes())


@dataclass(frozen=True)
class Case:
    """One generated input, the name it is uploaded under, and the outcomes allowed for it."""

    id: str
    filename: str
    make: Callable[[], bytes]
    expect: frozenset[str]
    channels: str = "mono"


def case(id: str, filename: str, make: Callable[[], bytes], *expect: str, channels: str = "mono") -> Any:
    return pytest.param(Case(id, filename, make, frozenset(expect), channels), id=id)


CASES = [
    # Nothing there, or not audio at all.
    case("empty", "call.wav", lambda: b"", REFUSED),
    case("one-byte", "call.wav", lambda: b"\x00", FAILED),
    case("random-1k", "call.wav", lambda: rand(1024), FAILED),
    case("random-256k-bin", "call.bin", lambda: rand(256 * 1024, 3), FAILED),
    # Random bytes can hold MPEG frame syncs; decoding them as noise is as good as refusing them.
    case("random-256k-mp3", "call.mp3", lambda: rand(256 * 1024, 5), FAILED, SILENT),
    case("zeros-64k-no-header", "call.wav", lambda: bytes(65536), FAILED),
    case("text-named-mp3", "call.mp3", lambda: b"Agent: hello\nCustomer: hi\n" * 50, FAILED),
    case("json-named-wav", "call.wav", lambda: json.dumps({"not": "audio"}).encode() * 20, FAILED),
    case("html-named-flac", "call.flac", lambda: b"<html><body>404 Not Found</body></html>" * 10, FAILED),
    case("png-named-ogg", "call.ogg", lambda: b"\x89PNG\r\n\x1a\n" + rand(4000), FAILED),
    # Truncated headers.
    case("wav-12-bytes", "call.wav", lambda: SPEECH_WAV_BYTES()[:12], FAILED),
    case("wav-header-only", "call.wav", lambda: wav(b""), FAILED),
    case("wav-one-sample", "call.wav", lambda: wav(b"\x00\x10"), FAILED, SILENT),
    case("flac-magic-only", "call.flac", lambda: b"fLaC", FAILED),
    case("flac-30-bytes", "call.flac", lambda: SPEECH_FLAC()[:30], FAILED),
    case("mp3-100-bytes", "call.mp3", lambda: SPEECH_MP3()[:100], FAILED, SILENT),
    case("ogg-60-bytes", "call.ogg", lambda: SPEECH_OGG()[:60], FAILED),
    case("opus-200-bytes", "call.ogg", lambda: SPEECH_OPUS()[:200], FAILED),
    # Absurd or placeholder header fields.
    case("wav-sizes-ffffffff", "call.wav", lambda: patch32(patch32(SPEECH_WAV_BYTES(), 4, 0xFFFFFFFF), 40,
                                                            0xFFFFFFFF), SPEECH),
    case("wav-data-size-0-streamed", "call.wav", lambda: patch32(SPEECH_WAV_BYTES(), 40, 0), SPEECH),
    case("wav-0-channels", "call.wav", lambda: patch16(SPEECH_WAV_BYTES(), 22, 0), FAILED),
    case("wav-65535-channels", "call.wav", lambda: patch16(SPEECH_WAV_BYTES(), 22, 65535), FAILED),
    case("wav-rate-0", "call.wav", lambda: patch32(SPEECH_WAV_BYTES(), 24, 0), FAILED),
    case("wav-rate-4ghz", "call.wav", lambda: patch32(SPEECH_WAV_BYTES(), 24, 0xFFFFFFF0), FAILED),
    case("wav-odd-trailing-byte", "call.wav", lambda: SPEECH_WAV_BYTES() + b"\x01", SPEECH),
    # Damaged bodies.
    case("flac-corrupt-middle", "call.flac", lambda: flip_bytes(SPEECH_FLAC(), 2000, 3000), SPEECH, SILENT,
         FAILED),
    case("flac-cut-in-half", "call.flac", lambda: SPEECH_FLAC()[: len(SPEECH_FLAC()) // 2], SPEECH, SILENT),
    case("mp3-garbage-prepended", "call.mp3", lambda: rand(4096, 11) + SPEECH_MP3(), SPEECH),
    case("mp3-garbage-appended", "call.mp3", lambda: SPEECH_MP3() + rand(8192, 13), SPEECH),
    case("ogg-corrupt-pages", "call.ogg", lambda: flip_bytes(SPEECH_OGG(), 3000, 500),
         SPEECH, SILENT, FAILED),
    # Wrong extensions on good audio.
    case("flac-named-wav", "call.wav", SPEECH_FLAC, SPEECH),
    case("mp3-named-flac", "call.flac", SPEECH_MP3, SPEECH),
    case("wav-named-mp3", "call.mp3", SPEECH_WAV_BYTES, SPEECH),
    case("ogg-no-extension", "recording", SPEECH_OGG, SPEECH),
    # Silence and near-silence.
    case("silence-10-min-8k", "call.wav", lambda: wav(silence(600), rate=8000), SILENT),
    case("tone-2s", "call.wav", lambda: wav(tone(2.0)), SILENT),
    case("dc-offset", "call.wav", lambda: wav(np.full(16000, 0.5, np.float32)), SILENT),
    case("float-nan-inf", "call.wav", lambda: float_wav(np.where(np.arange(16000) % 2, np.nan, np.inf)
                                                         .astype(np.float32)), SILENT),
    case("float-nan-in-speech", "call.wav", lambda: float_wav(np.where(np.arange(len(speech())) % 97 == 0,
                                                                       np.nan, speech()).astype(np.float32)),
         SPEECH),
    # Unusual but valid formats.
    case("192khz", "call.wav", lambda: wav(speech(192000), rate=192000), SPEECH),
    case("6-channels", "call.wav", lambda: multichannel(6), SPEECH, channels="stereo"),
    case("8-bit-pcm", "call.wav", lambda: wav(speech(8000), rate=8000, width=1), SPEECH),
    case("mu-law", "call.wav", lambda: wav_raw(7, 8, _g711("pcm_mulaw", speech(8000))), SPEECH),
    case("a-law", "call.wav", lambda: wav_raw(6, 8, _g711("pcm_alaw", speech(8000))), SPEECH),
    case("float32-wav", "call.wav", lambda: float_wav(speech()), SPEECH),
    case("opus", "call.opus", SPEECH_OPUS, SPEECH),
    case("aac-adts", "call.aac", cached("aac", lambda: encode("adts", "aac", speech())), SPEECH),
    case("tiny-valid-10ms", "call.wav", lambda: wav(tone(0.01)), SILENT),
    # Random bytes under an audio name: no decoder reads them...
    case("random-200k-noise-wav", "noise.wav", lambda: rand(200_000, 17), FAILED),
    case("random-200k-noise-mp3", "noise.mp3", lambda: rand(200_000, 17), FAILED, SILENT),
    case("random-200k-noise-bin", "noise.bin", lambda: rand(200_000, 17), FAILED),
    # ...unless a header says how: then every byte is a sample, and the call is loud noise.
    case("random-pcm-body", "noise.wav", lambda: wav_raw(1, 16, rand(80_000, 19)), SILENT),
    case("random-mulaw-body", "noise.wav", lambda: wav_raw(7, 8, rand(40_000, 21)), SILENT),
    # Sound that is not speech.
    case("white-noise", "call.wav", lambda: wav(noise(5.0)), SILENT),
    case("pink-noise-8k", "call.wav", lambda: wav(noise(5.0, colour=1.0, seed=2), rate=8000), SILENT),
    case("brown-noise", "call.wav", lambda: wav(noise(5.0, colour=2.0, seed=3)), SILENT),
    case("music", "call.wav", lambda: wav(music(6.0)), SILENT),
    case("noise-stereo", "call.wav", lambda: stereo(noise(4.0, level=0.05), noise(4.0, level=0.05, seed=5)),
         SILENT, channels="stereo"),
    # Speech beside silence or noise is a call.
    case("customer-silent", "call.wav", lambda: stereo(speech(), np.zeros(16000, np.float32)), SPEECH,
         channels="stereo"),
    case("speech-on-noisy-line", "call.wav", lambda: wav(hissing(speech(8000)), rate=8000), SPEECH),
]


# -- the real path -------------------------------------------------------------------------------

@dataclass
class Env:
    settings: Settings
    client: TestClient
    repo: Any
    headers: dict[str, str]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[Env]:
    """API and in-process jobs over one SQLite database; the pipeline's models load once per module."""
    tmp = tmp_path_factory.mktemp("bad-inputs")
    settings = Settings(database_url=f"sqlite:///{tmp / 'qa.db'}", redis_url=redis_url,
                        storage_dir=tmp / "storage", model_cache_dir=tmp / "models",
                        max_upload_bytes=64 * 1024 * 1024, asr_beam_size=1)
    app = create_app(settings)
    repo = app.state.repo
    seed_rules(repo)
    activate(WorkerContext(settings=settings, store=repo))
    headers = {"Authorization": f"Bearer {create_key(repo, 'qa', 'bad inputs')}"}
    yield Env(settings, TestClient(app, raise_server_exceptions=False), repo, headers)
    activate(None)
    repo.dispose()


def run_upload(env: Env, filename: str, data: bytes, channels: str = "mono") -> tuple[int, dict[str, Any]]:
    """Upload a file and, when accepted, run its job in this process; the HTTP status and the call."""
    r = env.client.post("/v1/calls", data={**FORM, "channels": channels}, headers=env.headers,
                        files={"audio": (filename, data, "application/octet-stream")})
    assert r.status_code < 500, r.text
    if r.status_code >= 400:
        return r.status_code, r.json()
    assert r.status_code == 202, r.text
    call_id = r.json()["id"]
    jobs.process_call(call_id)
    call = env.client.get(f"/v1/calls/{call_id}", headers=env.headers)
    assert call.status_code == 200
    return r.status_code, call.json()


def outcome(env: Env, status: int, body: dict[str, Any]) -> str:
    """Name what happened, checking that each kind of ending is explained."""
    if status >= 400:
        assert 400 <= status < 500 and body["detail"], body
        return REFUSED
    assert body["status"] in ("done", "failed"), body
    if body["status"] == "failed":
        reason = body["failure_reason"]
        assert reason and "internal error" not in reason, reason
        assert "audio" in reason.lower() or "file" in reason.lower(), reason
        # The API answers the scorecard request with the reason too.
        card = env.client.get(f"/v1/calls/{body['id']}/scorecard", headers=env.headers)
        assert card.status_code == 409 and reason in card.json()["detail"]
        return SILENT if reason.startswith(NO_SPEECH) else FAILED
    card = env.client.get(f"/v1/calls/{body['id']}/scorecard", headers=env.headers)
    assert card.status_code == 200, card.text
    data = card.json()
    assert 0 <= data["score"] <= 100
    assert any(seg["text"].strip() for seg in data["transcript"]), "a scorecard without speech"
    return SPEECH


@pytest.mark.parametrize("c", CASES)
def test_bad_input_has_a_defined_outcome(env: Env, c: Case) -> None:
    data = c.make()
    status, body = run_upload(env, c.filename, data, c.channels)
    got = outcome(env, status, body)
    assert got in c.expect, f"{c.id}: ended {got}, expected one of {sorted(c.expect)}: {body}"
    # Whatever that file did, the next call goes through.
    status, body = run_upload(env, "next.wav", SPEECH_WAV_BYTES())
    assert outcome(env, status, body) == SPEECH


def test_calls_without_speech_count_in_no_aggregate(env: Env) -> None:
    form = {**FORM, "agent_id": "agent-quiet", "channels": "auto"}

    def upload(name: str, data: bytes) -> dict[str, Any]:
        r = env.client.post("/v1/calls", data=form, headers=env.headers,
                            files={"audio": (name, data, "application/octet-stream")})
        assert r.status_code == 202, r.text
        jobs.process_call(r.json()["id"])
        return dict(env.client.get(f"/v1/calls/{r.json()['id']}", headers=env.headers).json())

    quiet = [upload("silence.wav", wav(silence(5.0), rate=8000)), upload("noise.wav", wav(noise(5.0))),
             upload("noise.wav", wav_raw(1, 16, rand(80_000, 19)))]
    spoken = upload("speech.wav", SPEECH_WAV_BYTES())
    for call in quiet:
        assert call["status"] == "failed", call
        assert call["failure_reason"].startswith("no speech found in the recording: 5.0 s of audio"), call
    assert spoken["status"] == "done"
    # The agent's figures hold the call with speech only; the others are listed as failed, with the reason.
    mine = env.client.get("/v1/agents/agent-quiet/scorecards", headers=env.headers).json()
    assert mine["aggregate"]["count"] == 1 and [c["call_id"] for c in mine["scorecards"]] == [spoken["id"]]
    agents = env.client.get("/v1/agents", headers=env.headers).json()["agents"]
    assert [a["calls"] for a in agents if a["agent_id"] == "agent-quiet"] == [1]
    failed = env.client.get("/v1/calls", params={"agent_id": "agent-quiet", "status": "failed"},
                            headers=env.headers).json()
    assert sorted(c["call_id"] for c in failed["items"]) == sorted(c["id"] for c in quiet)
    assert all(c["failure_reason"].startswith(NO_SPEECH) for c in failed["items"])


def test_worker_input_is_removed_after_bad_files(env: Env) -> None:
    leftovers = list(env.settings.storage_dir.glob("*/input*"))
    assert not leftovers, f"{len(leftovers)} input file(s) kept after processing"


def test_a_transcript_still_scores_after_all_of_it(env: Env) -> None:
    r = env.client.post("/v1/calls", data=FORM, headers=env.headers,
                        files={"transcript": ("chat.json", CHAT, "application/json")})
    assert r.status_code == 202
    jobs.process_call(r.json()["id"])
    assert env.client.get(f"/v1/calls/{r.json()['id']}", headers=env.headers).json()["status"] == "done"


# -- decoding alone: the hour of silence and the duration limit ----------------------------------

@pytest.fixture(scope="module")
def hour_of_silence(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One hour of 8 kHz mono 16-bit silence (57.6 MB), written in one-minute blocks."""
    path = tmp_path_factory.mktemp("long") / "hour.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        minute = bytes(8000 * 2 * 60)
        for _ in range(60):
            w.writeframes(minute)
    return path


def test_hour_of_silence_over_the_limit_is_refused_before_decoding(hour_of_silence: Path) -> None:
    import time
    import tracemalloc

    tracemalloc.start()
    started = time.monotonic()
    with pytest.raises(AudioError, match="lasts 3600.0 s, more than the limit of 1800 s"):
        decode(hour_of_silence, max_duration_s=1800)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert time.monotonic() - started < 1.0
    assert peak < 5 * 1024 * 1024, f"refusing by the header should not decode: peak {peak / 1e6:.0f} MB"


def test_hour_of_silence_within_the_limit_decodes_in_bounded_memory(hour_of_silence: Path) -> None:
    import tracemalloc

    tracemalloc.start()
    audio = decode(hour_of_silence, max_duration_s=4 * 3600)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert audio.duration_s == pytest.approx(3600, abs=0.1)
    result = audio.channels[0].nbytes
    print(f"[bad-inputs] hour of silence: result {result / 1e6:.0f} MB, decode peak {peak / 1e6:.0f} MB")  # noqa: T201
    # The result is 16 kHz float32 (230 MB); decoding holds the decoded pieces and one joined copy.
    assert peak < 2.5 * result, f"decode peaked at {peak / result:.1f}x the size of its result"


def test_stream_without_declared_length_is_cut_at_the_limit() -> None:
    # A WAV whose sizes say "unknown" (0xFFFFFFFF) cannot be refused from its header; decoding stops.
    data = patch32(patch32(wav(silence(120, 8000), rate=8000), 4, 0xFFFFFFFF), 40, 0xFFFFFFFF)
    with pytest.raises(AudioError, match="more than the limit of 60 s"):
        decode(data, max_duration_s=60)


@pytest.mark.parametrize("size", [0, 1, 2, 3, 44, 45, 4096])
def test_random_prefixes_of_a_wav_never_crash(size: int) -> None:
    data = SPEECH_WAV_BYTES()[:size]
    try:
        audio = decode(data)
    except AudioError as exc:
        assert str(exc)
    else:
        assert audio.duration_s > 0
