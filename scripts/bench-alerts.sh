#!/usr/bin/env bash
# Issue 4 benchmarks in one command: the rules engine's cost (points/s through every rule for 100
# active runs) and the alert latency (a NaN produced by the runner → the loopback Slack webhook
# receives the POST), over real processes with default settings. Results go to stdout and are
# appended to bench-results/alerts.md (gitignored). Arguments are passed to alert-latency
# (e.g. --trials 20 for a quick run).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh release >/dev/null
# `swift build` builds only the last of several --product flags: one at a time.
for p in tts-bench tts-coordinator tts-worker; do swift build -c release --product "$p" >/dev/null; done
B="$(swift build -c release --show-bin-path)"
mkdir -p bench-results
{
  echo "## $(date -u +%Y-%m-%dT%H:%MZ) commit $(git rev-parse --short HEAD)"
  "$B/tts-bench" rules
  "$B/tts-bench" alert-latency --coordinator-bin "$B/tts-coordinator" --worker-bin "$B/tts-worker" \
      --slack-mock Tests/Fixtures/slack/mock_slack_server.py "$@"
} | tee -a bench-results/alerts.md
