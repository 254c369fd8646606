#!/usr/bin/env bash
# Issue 3 benchmarks in one command: per-step logging cost, coordinator ingest (1 and 16
# workers), and end to end against the Python SDK in offline mode (same stream, same run).
# Results go to stdout and are appended to bench-results/metrics.md (gitignored).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release >/dev/null
# `swift build` builds only the last of several --product flags: one at a time.
for p in tts-bench tts-coordinator tts-worker; do swift build -c release --product "$p" >/dev/null; done
B="$(swift build -c release --show-bin-path)"
PY="$(bash Tests/Fixtures/wandb/oracle_env.sh wandb-latest wandb | tail -1)"
mkdir -p bench-results
{
  echo "## $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD)"
  "$B/tts-bench" spool-append
  "$B/tts-bench" ingest --coordinator-bin "$B/tts-coordinator"
  "$B/tts-bench" versus-sdk --coordinator-bin "$B/tts-coordinator" --worker-bin "$B/tts-worker" --python "$PY"
} | tee -a bench-results/metrics.md
