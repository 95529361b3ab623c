#!/usr/bin/env bash
# Regenerates test/fixtures/audio/speech-16k.wav and its segment list speech-16k.json.
# The speech is SYNTHESIZED with espeak-ng (no real recordings are available offline); the tests only
# read the committed files and never run this script or espeak.
#
# Recipe (as used for the committed fixture; espeak-ng 1.51, SoX 14.4.2, Debian 12):
#   1. espeak-ng, voice en-us, 170 words/min, says two sentences (22.05 kHz WAV each);
#   2. each sentence: leading/trailing silence trimmed (sox `silence`, 0.5% threshold), resampled to
#      16 kHz, peak-normalized to -3 dBFS;
#   3. laid out as  0.60 s silence | sentence 1 | 0.90 s silence | sentence 2 | 0.50 s silence;
#   4. mixed with a faint white-noise floor (amplitude 0.002, ~ -54 dBFS) so "silence" is not digital zero;
#   5. written as RIFF/WAVE PCM 16-bit mono 16 kHz; dither off and SoX in repeatable mode (-R -D).
#   speech-16k.json records where each sentence starts and ends (in samples and seconds).
#
# Needs: apt-get install -y espeak-ng sox
# Usage: scripts/make-audio-fixture.sh            (run from the repository root)
set -euo pipefail

OUT_DIR="test/fixtures/audio"
OUT_WAV="$OUT_DIR/speech-16k.wav"
OUT_JSON="$OUT_DIR/speech-16k.json"
RATE=16000
SENTENCE_1="Hello, can you hear me?"
SENTENCE_2="Open the door."
LEAD_S=0.60
GAP_S=0.90
TAIL_S=0.50
NOISE_AMP=0.002

for tool in espeak-ng sox soxi; do
  command -v "$tool" >/dev/null || { echo "missing $tool: apt-get install -y espeak-ng sox" >&2; exit 1; }
done
mkdir -p "$OUT_DIR"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
SOX=(sox -R -D)

speak() { # speak TEXT OUT: synthesize, trim silence, resample, normalize
  espeak-ng -v en-us -s 170 -w "$work/raw.wav" "$1"
  "${SOX[@]}" "$work/raw.wav" -b 16 -c 1 "$2" \
    silence 1 0.01 0.5% reverse silence 1 0.01 0.5% reverse rate -v "$RATE" norm -3
}
silence() { # silence SECONDS OUT
  "${SOX[@]}" -n -r "$RATE" -b 16 -c 1 "$2" trim 0 "$1"
}

speak "$SENTENCE_1" "$work/s1.wav"
speak "$SENTENCE_2" "$work/s2.wav"
silence "$LEAD_S" "$work/lead.wav"
silence "$GAP_S" "$work/gap.wav"
silence "$TAIL_S" "$work/tail.wav"
"${SOX[@]}" "$work/lead.wav" "$work/s1.wav" "$work/gap.wav" "$work/s2.wav" "$work/tail.wav" "$work/speech.wav"

total=$(soxi -s "$work/speech.wav")
"${SOX[@]}" -n -r "$RATE" -b 16 -c 1 "$work/noise.wav" synth "${total}s" whitenoise vol "$NOISE_AMP"
"${SOX[@]}" -m -v 1 "$work/speech.wav" -v 1 "$work/noise.wav" -b 16 -c 1 -r "$RATE" -e signed-integer "$OUT_WAV"

n_lead=$(soxi -s "$work/lead.wav"); n_s1=$(soxi -s "$work/s1.wav")
n_gap=$(soxi -s "$work/gap.wav");   n_s2=$(soxi -s "$work/s2.wav")
s1_start=$n_lead;                  s1_end=$((s1_start + n_s1))
s2_start=$((s1_end + n_gap));      s2_end=$((s2_start + n_s2))
sec() { awk -v n="$1" -v r="$RATE" 'BEGIN { printf "%.4f", n / r }'; }
cat > "$OUT_JSON" <<JSON
{
  "description": "Synthesized speech (espeak-ng en-us) with silence gaps; made by scripts/make-audio-fixture.sh",
  "sampleRate": $RATE,
  "samples": $total,
  "segments": [
    { "text": "$SENTENCE_1", "startSample": $s1_start, "endSample": $s1_end, "startS": $(sec $s1_start), "endS": $(sec $s1_end) },
    { "text": "$SENTENCE_2", "startSample": $s2_start, "endSample": $s2_end, "startS": $(sec $s2_start), "endS": $(sec $s2_end) }
  ]
}
JSON
echo "wrote $OUT_WAV ($(stat -c %s "$OUT_WAV") bytes, $total samples) and $OUT_JSON"
