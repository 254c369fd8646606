#!/usr/bin/env bash
# One command: a local coordinator and two CPU workers on loopback, a batch of demo shards,
# live progress, then the cluster stays up until Ctrl-C, which stops everything cleanly.
# Usage: scripts/demo.sh [--once]   (--once: exit when the demo job is done)
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release
bin="$(swift build -c release --show-bin-path)"
demo=".demo"
mkdir -p "$demo"
port="${TTS_DEMO_PORT:-5555}"
url="tcp://127.0.0.1:$port"
export TTS_COORDINATOR="$url"

pids=()
cleanup() {
  echo; echo "demo: stopping workers (drain) and the coordinator"
  for p in "${pids[@]:1}"; do kill -TERM "$p" 2>/dev/null || true; done
  sleep 2
  kill -TERM "${pids[0]}" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "demo: logs and database are in $demo/"
}
trap cleanup EXIT INT TERM

"$bin/tts-coordinator" serve --listen "$url" --db "$demo/tts-coordinator.sqlite" --wandb-mode offline --wandb-dir "$demo" >"$demo/coordinator.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do grep -q "listening on" "$demo/coordinator.log" 2>/dev/null && break; sleep 0.1; done
for i in 0 1; do
  "$bin/tts-worker" join "$url" --gpu "$i" --name "demo-cpu$i" --state-dir "$demo/worker$i" >"$demo/worker$i.log" 2>&1 &
  pids+=($!)
done
sleep 2
"$bin/tts-coordinator" workers
"$bin/tts-coordinator" enqueue sleep --count 12 --param seconds=2 --param steps=4
"$bin/tts-coordinator" enqueue echo --count 2 --param text=안녕하세요
# A stand-in training run: 10 metrics × 3,000 steps, checkpoints every 500 steps, through the
# worker's spool into the store and out to a W&B offline run.
run=$("$bin/tts-coordinator" enqueue synthetic --param steps=3000 --param keys=10 --param rate=600 \
        --param checkpoint_every=500 --param checkpoint_dir="$PWD/$demo/checkpoints" --json | sed -n 's/.*"runId" *: *"\([a-z0-9]*\)".*/\1/p')
echo "demo: training-like run $run"
while :; do
  line=$("$bin/tts-coordinator" status | grep '^shards:')
  printf '\r%s        ' "$line"
  echo "$line" | grep -qE 'queued|leased|running' || break
  sleep 1
done
echo
"$bin/tts-coordinator" shards --attempts | head -40
"$bin/tts-coordinator" metrics "$run"
for _ in $(seq 1 100); do grep -q "W&B: run $run complete" "$demo/coordinator.log" && break; sleep 0.2; done
grep "W&B: run $run complete" "$demo/coordinator.log" | sed 's/.*\] /demo: /' || echo "demo: the W&B run is still being written"
if [ "${1:-}" = "--once" ]; then exit 0; fi
echo "demo: the cluster keeps running (coordinator $url). Try: $bin/tts-coordinator workers — Ctrl-C stops it."
wait "${pids[0]}"
