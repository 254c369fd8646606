#!/usr/bin/env bash
# Issue 6 benchmark in one command: the shim's training loop vs a plain Python loop (Debian's
# python3-torch) on the same TorchScript model, batches and threads, in one run, and the time a
# step waits on the data loader. Builds the shim, the reference model and dataset
# (Tests/Fixtures/torch/torch_env.sh) and tts-bench (release). Results go to stdout and are
# appended to bench-results/torch.md (gitignored). Arguments are passed to `tts-bench torch-loop`.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release >/dev/null
swift build -c release --product tts-bench >/dev/null
B="$(swift build -c release --show-bin-path)"
env_lines="$(bash Tests/Fixtures/torch/torch_env.sh)"
get() { printf '%s\n' "$env_lines" | sed -n "s/^$1=//p" | tail -1; }
mkdir -p bench-results
{
  echo "## $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD)"
  "$B/tts-bench" torch-loop --shim "$(get SHIM)" --model "$(get MODEL)" --dataset "$(get DATASET)" \
      --baseline scripts/torch/python_loop_baseline.py "$@"
} | tee -a bench-results/torch.md
