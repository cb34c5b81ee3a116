"""Speaker attribution: who said each segment, and when each party's voice is heard.

On a stereo call the line says who spoke (the agent's and the customer's segments are labelled and
merged by time); on a mono one, stages.diarize tells the two voices apart and names the agent's by
the phrases only the agent says. The voice detector's speech (stages.activity), split between the
parties, is what talk time and silence are measured on. The result is the call's Transcript, with
the record of how it was made (the scorecard's `models.asr`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

from qa_service.records import Audio, Channels, Heard, Segment, Speaker, Transcript
from qa_service.stages import activity, diarize
from qa_service.stages.voiceprint import VoiceEncoder


def attribute_roles(audio: Audio, channels: Channels, heard: Heard, *, agent_phrases: Sequence[str] = (),
                    voices: VoiceEncoder | None = None) -> Transcript:
    """The call's transcript with every segment labelled agent or customer: by line when stereo, by
    diarization when mono (with voice embeddings when a voice model is given)."""
    attribution: dict[str, Any]
    if channels.layout == "mono":
        line = channels.lines[0].samples
        segments, attribution = diarize.attribute_speakers(
            line, list(heard.lines[0].segments), agent_phrases=agent_phrases, voices=voices
        )
        speech = activity.split_by_words(activity.voiced_intervals(line), segments)
    else:
        agent, customer = channels.lines
        agent_segs = [_label(s, "agent") for s in heard.lines[0].segments]
        customer_segs = [_label(s, "customer") for s in heard.lines[1].segments]
        segments = sorted(agent_segs + customer_segs, key=lambda s: (s.start, s.end))
        attribution = {"method": "channels", "agent_channel": channels.agent_channel}
        speech = {
            "agent": activity.near_words(activity.voiced_intervals(agent.samples), agent_segs),
            "customer": activity.near_words(activity.voiced_intervals(customer.samples), customer_segs),
        }
    return Transcript(
        segments=tuple(segments), duration_s=audio.duration_s, language=heard.language,
        model=asr_record(audio, channels, heard, attribution),
        speech={role: tuple(iv) for role, iv in speech.items()},
    )


def asr_record(audio: Audio, channels: Channels, heard: Heard, speakers: dict[str, Any]) -> dict[str, Any]:
    """How a transcript was made, for the scorecard's `models.asr`: the model and its options, which
    model decoded which line, the layout, the recording, how speakers were told apart, the speech the
    voice detector found, the language check and the vocabulary."""
    record = dict(heard.model)
    record["lines"] = {line.role: {"band": "telephone" if line.telephone else "full",
                                   "model": str(text.model.get("name", ""))}
                       for line, text in zip(channels.lines, heard.lines, strict=True)}
    record["layout"] = {"requested": channels.requested, "used": channels.layout}
    # What the recording was before decoding: telephone audio (8 kHz, mu-law) explains a poorer transcript.
    record["audio"] = {"format": audio.source_format, "sample_rate": audio.source_rate,
                       "channels": audio.source_channels}
    record["speakers"] = speakers
    voice = [text.voice_s for text in heard.lines]
    if all(v is not None for v in voice):
        # What the voice detector took for speech, over all channels: a call without speech says so.
        record["voice_activity_s"] = round(sum(filter(None, voice), 0.0), 1)
    if heard.language_detection is not None:
        record["language_detection"] = asdict(heard.language_detection)
    if heard.switches:
        # Which stretches a multilingual model decoded again, in which language (the call went on in it).
        record["language_switches"] = [asdict(s) | {"line": channels.lines[s.line].role}
                                       for s in heard.switches]
    told = [(line.role, text) for line, text in zip(channels.lines, heard.lines, strict=True) if text.biased]
    if told:
        # A reviewer should know the recogniser was told which phrases to expect, and on which channels.
        record["vocabulary"] = {"phrases": len(told[0][1].vocabulary), "channels": [role for role, _ in told]}
    return record


def _label(segment: Segment, speaker: Speaker) -> Segment:
    return Segment(
        speaker=speaker, start=segment.start, end=segment.end, text=segment.text, words=segment.words,
        confidence=1.0,
    )
