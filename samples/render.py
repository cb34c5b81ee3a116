#!/usr/bin/env python3
"""Render the sample call scripts in calls/*.yaml to stereo call recordings.

Each turn is spoken with espeak-ng (agent and customer in different voices), placed on a
timeline with a short gap, and written as audio/NAME.flac: 16 kHz stereo (wideband VoIP), agent on the left
channel, customer on the right, as a telephony platform would record it. Also writes
manifest.jsonl for `qa-service process --manifest` (paths relative to this folder; with the
text chat sample too).
Needs espeak-ng and sox (Debian).

Usage: python samples/render.py
"""

import array
import json
import subprocess
import tempfile
import wave
from pathlib import Path

import yaml

HERE = Path(__file__).parent
RATE = 16000
GAP_S = 0.5


def speak(text: str, voice: str, tmp: Path) -> array.array:
    raw, out = tmp / "raw.wav", tmp / "out.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), text], check=True)
    subprocess.run(["sox", str(raw), "-r", str(RATE), "-c", "1", "-b", "16", str(out)], check=True)
    with wave.open(str(out)) as w:
        return array.array("h", w.readframes(w.getnframes()))


def render(spec_path: Path, out_dir: Path) -> dict:
    spec = yaml.safe_load(spec_path.read_text())
    left, right = array.array("h"), array.array("h")
    with tempfile.TemporaryDirectory() as tmp:
        for turn in spec["turns"]:
            (role, text), = turn.items()
            samples = speak(text, spec["voices"][role], Path(tmp))
            mine, other = (left, right) if role == "agent" else (right, left)
            mine.extend(samples)
            other.extend([0] * len(samples))
            gap = [0] * int(GAP_S * RATE)
            left.extend(gap)
            right.extend(gap)
        wav = Path(tmp) / "call.wav"
        inter = array.array("h", [0] * (2 * len(left)))
        inter[0::2], inter[1::2] = left, right
        with wave.open(str(wav), "wb") as w:
            w.setnchannels(2)
            w.setsampwidth(2)
            w.setframerate(RATE)
            w.writeframes(inter.tobytes())
        flac = out_dir / f"{spec['call_id']}.flac"
        subprocess.run(["sox", str(wav), str(flac)], check=True)
    return {"audio": f"audio/{flac.name}", "call_id": spec["call_id"],
            "agent_id": spec["agent_id"], "call_date": str(spec["call_date"])}


def main() -> None:
    out_dir = HERE / "audio"
    out_dir.mkdir(exist_ok=True)
    lines = [render(p, out_dir) for p in sorted((HERE / "calls").glob("*.yaml"))]
    # A chat that arrives as text is scored the same way, without decoding or transcription.
    lines.append({"transcript": "transcript-chat.json", "call_id": "sample-chat",
                  "agent_id": "agent-leo", "call_date": "2026-10-22"})
    (HERE / "manifest.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


if __name__ == "__main__":
    main()
