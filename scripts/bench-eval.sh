#!/usr/bin/env bash
# Issue 7 benchmarks in one command: scoring throughput vs jiwer 4.0 on the same 100,000 pairs
# (identical results required), resampling 22.05 → 16 kHz vs sox (speed and SNR against the
# exact signal), utterances/s of a full evaluation (reference audio + Vosk + SIM + MCD) with 1 and 2
# workers, and utterances/s of each evaluation stage (synthesis, ASR, SIM, MCD) on one worker. Results go to stdout and are appended to bench-results/eval.md (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release >/dev/null
for p in tts-bench tts-coordinator tts-worker; do swift build -c release --product "$p" >/dev/null; done
B="$(swift build -c release --show-bin-path)"
JIWER="$(bash Tests/Fixtures/eval/jiwer_env.sh | tail -1)"
vosk="$(bash Tests/Fixtures/eval/vosk_env.sh)"
torch="$(bash Tests/Fixtures/torch/torch_env.sh)"
speaker="$(bash Tests/Fixtures/eval/speaker_env.sh)"
get() { printf '%s\n' "$1" | sed -n "s/^$2=//p" | tail -1; }
DATASET="$(get "$torch" DATASET)"
mkdir -p bench-results
{
  echo "## $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD)"
  "$B/tts-bench" scoring --python "$JIWER"
  "$B/tts-bench" resample
  "$B/tts-bench" eval-throughput --coordinator-bin "$B/tts-coordinator" --worker-bin "$B/tts-worker" \
      --vosk-library "$(get "$vosk" LIBVOSK)" --vosk-model "$(get "$vosk" MODEL)" \
      --manifest "$DATASET/gpt_pairs_train.jsonl::ko" \
      --torch-shim "$(get "$speaker" SHIM)" --speaker-encoder "$(get "$speaker" ENCODER)" "$@"
  "$B/tts-bench" eval-stages --vosk-library "$(get "$vosk" LIBVOSK)" --vosk-model "$(get "$vosk" MODEL)" \
      --manifest "$DATASET/gpt_pairs_train.jsonl::ko" \
      --torch-shim "$(get "$speaker" SHIM)" --speaker-encoder "$(get "$speaker" ENCODER)"
} | tee -a bench-results/eval.md
