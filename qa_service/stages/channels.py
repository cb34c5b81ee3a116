"""Channel layout: which lines of a recording are transcribed, whose voice each carries, and its band.

Stereo telephone recordings carry the agent and the customer on separate channels, and each is
transcribed on its own; a recording whose second channel is silent or a copy of the first is one
mix, transcribed once (mono) and left to the speakers stage to tell the parties apart.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np

from qa_service.records import SAMPLE_RATE, Audio, Channel, ChannelLayout, Channels
from qa_service.stages.bandfill import band_edge

log = logging.getLogger(__name__)

# A channel this much quieter than the other (RMS ratio) carries no party of its own.
SILENT_CHANNEL_RATIO = 0.02
# Channels this correlated are one mix recorded twice, not two parties.
SAME_CHANNEL_CORRELATION = 0.9
# Below this RMS (about -60 dBFS) a channel is treated as silence.
SILENCE_RMS = 1e-3


def split_channels(audio: Audio, layout: ChannelLayout = "auto") -> Channels:
    """The lines to transcribe: the call's one line for mono, the agent's and the customer's for
    stereo (the agent on the left unless `layout` is "stereo-agent-right"), each with its band."""
    mode, samples = resolve_layout(audio, layout)
    if mode == "mono":
        return Channels(lines=(Channel(samples[0], "call", telephone_band(samples[0])),), layout="mono",
                        requested=layout)
    agent, customer = (1, 0) if layout == "stereo-agent-right" else (0, 1)
    return Channels(
        lines=(Channel(samples[agent], "agent", telephone_band(samples[agent])),
               Channel(samples[customer], "customer", telephone_band(samples[customer]))),
        layout="stereo", requested=layout, agent_channel="right" if agent else "left",
    )


def telephone_band(samples: np.ndarray) -> bool:
    """Whether a line has nothing above the telephone band (bandfill.band_edge finds its missing top)."""
    return samples.size >= SAMPLE_RATE // 10 and band_edge(samples) is not None


def resolve_layout(audio: Audio, layout: ChannelLayout) -> tuple[Literal["mono", "stereo"], list[np.ndarray]]:
    """Decide mono or stereo and return the channel arrays to transcribe (one for mono, two for stereo)."""
    chans = list(audio.channels)
    if len(chans) == 1:
        if layout in ("stereo", "stereo-agent-right"):
            log.warning("stereo layout requested for a one-channel recording; transcribing it as mono")
        return "mono", chans
    left, right = chans[0], chans[1]
    if layout == "mono":
        return "mono", [mix(left, right)]
    if layout in ("stereo", "stereo-agent-right"):
        return "stereo", [left, right]
    rms_l, rms_r = rms(left), rms(right)
    loud = max(rms_l, rms_r)
    if loud < SILENCE_RMS:
        return "mono", [left]
    if min(rms_l, rms_r) < SILENT_CHANNEL_RATIO * loud:
        return "mono", [left if rms_l >= rms_r else right]
    if _correlation(left, right) >= SAME_CHANNEL_CORRELATION:
        return "mono", [mix(left, right)]
    return "stereo", [left, right]


def mixed(channels: Channels) -> np.ndarray:
    """The call's lines as one: the mono line itself, or the two stereo lines mixed."""
    lines = [line.samples for line in channels.lines]
    return lines[0] if len(lines) == 1 else mix(*lines)


def _sparse(x: np.ndarray) -> np.ndarray:
    """At most about 4M evenly spaced samples as float64: enough for levels and correlation, and an
    hours-long channel is not copied whole."""
    return x[:: max(1, x.shape[0] // 4_000_000)].astype(np.float64)


def rms(x: np.ndarray) -> float:
    """Root mean square level of a line (of evenly spaced samples on long ones)."""
    return float(np.sqrt(np.mean(np.square(_sparse(x))))) if x.size else 0.0


def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Two lines as one, at half level each (cut to the shorter)."""
    n = min(a.shape[0], b.shape[0])
    return ((a[:n] + b[:n]) * 0.5).astype(np.float32)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    n = min(a.shape[0], b.shape[0])
    x, y = _sparse(a[:n]), _sparse(b[:n])
    x -= x.mean()
    y -= y.mean()
    denom = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return float(np.dot(x, y) / denom) if denom > 0 else 1.0
