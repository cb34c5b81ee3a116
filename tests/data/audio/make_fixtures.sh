#!/bin/sh
# Regenerates the audio fixtures in this folder (needs Debian espeak-ng, sox and ffmpeg).
# Spoken with espeak-ng so the content is known and free of personal data.
set -eu
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

espeak-ng -v en-us -s 150 -w "$tmp/agent.wav" \
  "Thank you for calling the help desk. My name is Anna. How can I help you today?"
espeak-ng -v en-gb+m3 -s 140 -w "$tmp/customer.wav" \
  "Hello. I would like to ask about the status of my visa application."
espeak-ng -v en-us -s 160 -w "$tmp/short.wav" "Testing one two three."

# Transcription fixtures: 16 kHz mono FLAC, lossless and small.
sox "$tmp/agent.wav" -r 16000 -c 1 agent.flac
sox "$tmp/customer.wav" -r 16000 -c 1 customer.flac

# Decoding table: one short phrase in many containers, codecs, rates and layouts.
sox "$tmp/short.wav" -r 8000 -c 1 -b 16 short_8k.wav
sox "$tmp/short.wav" -r 16000 -c 1 -b 16 short_16k.wav
sox "$tmp/short.wav" -r 44100 -c 1 -b 16 short_44k.wav
sox "$tmp/short.wav" -r 48000 -c 1 -b 24 short_48k_s24.wav trim 0 0.5
sox "$tmp/short.wav" -r 16000 -c 1 short_16k.flac
sox "$tmp/short.wav" -r 22050 -c 1 short_22k.mp3
sox "$tmp/short.wav" -r 16000 -c 1 short_16k.ogg
ffmpeg -loglevel error -y -i "$tmp/short.wav" -ar 48000 -c:a libopus -b:a 16k short_opus.ogg
sox "$tmp/short.wav" -r 8000 -c 1 -e mu-law short_8k_mulaw.wav
sox "$tmp/short.wav" -r 8000 -c 1 -e a-law short_8k_alaw.wav
sox "$tmp/short.wav" -r 8000 -c 1 -b 8 -e unsigned-integer short_8k_u8.wav
# Stereo with the phrase on the left only, and six channels with distinct content per channel.
sox "$tmp/short.wav" -r 8000 -b 16 -c 2 short_8k_stereo_left.wav remix 1 0
sox "$tmp/short.wav" -r 8000 -b 16 -c 6 short_8k_6ch.wav remix 1 1v0.5 0 0 0 0 trim 0 0.5
