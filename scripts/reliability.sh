#!/usr/bin/env bash
# Runs the fault-injection suite (Tests/IntegrationTests/ReliabilityTests.swift) and writes the
# figures it measured to RELIABILITY.md.
#   scripts/reliability.sh          the CI-sized version: 10 coordinator kills, a 60 s partition,
#                                   W&B down 60 s, fuzzing 25 s per target (about 12 minutes)
#   scripts/reliability.sh --long   the long version: 50 kills, a 5-minute partition, W&B down
#                                   10 minutes, fuzzing 10 minutes per target, and the 30-minute
#                                   soak of 1,000 simulated workers (about 2.5 hours)
#   scripts/reliability.sh --report DIR "how"   only formats figures recorded elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
long=""
if [ "${1:-}" = "--long" ]; then
  long="--long"
  export TTS_RELIABILITY_KILLS="${TTS_RELIABILITY_KILLS:-50}"
  export TTS_PARTITION_SECONDS="${TTS_PARTITION_SECONDS:-300}"
  export TTS_WANDB_DOWN_SECONDS="${TTS_WANDB_DOWN_SECONDS:-600}"
fi
# report DIR HOW [STATUS]: the figures in DIR/*.json as a section of RELIABILITY.md (newest first,
# below the fixed introduction).
report() {
  local dir="$1" how="$2" status="${3:-0}"
  {
    echo "## $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), $how"
    echo
    for f in "$dir"/*.json; do
      [ -f "$f" ] || continue
      echo "### $(sed -n 's/^ *"test" *: *"\(.*\)",*$/\1/p' "$f")"
      echo
      echo "| figure | value |"
      echo "|---|---|"
      sed -n 's/^ *"\([a-z_0-9]*\)" *: *\(.*\)$/| \1 | \2 |/p' "$f" | sed 's/,* |$/ |/' | grep -v '^| test |'
      echo
    done
    [ "$status" = 0 ] || echo "**The suite failed (exit $status): the figures above may be partial.**"
  } > .build/reliability-section.md
  cat .build/reliability-section.md
  local intro rest
  intro="$(sed '/^<!-- results -->$/q' RELIABILITY.md)"
  rest="$(sed '1,/^<!-- results -->$/d' RELIABILITY.md)"
  printf '%s\n\n%s\n%s\n' "$intro" "$(cat .build/reliability-section.md)" "$rest" > RELIABILITY.md
}

# --report DIR "how they were made": only format figures recorded elsewhere (e.g. by `make test`
# in a clean clone, which runs the same tests and fuzzers).
if [ "${1:-}" = "--report" ]; then
  mkdir -p .build
  report "$2" "${3:-figures from $2}"
  exit 0
fi

scripts/setup.sh debug >/dev/null
bash Tests/Fixtures/torch/torch_env.sh >/dev/null
swift build --build-tests >/dev/null
rm -rf .build/reliability
status=0
# The fault-injection suite, and the security tests of the other suites (they record figures too).
swift test --skip-build --no-parallel --filter 'ReliabilityTests|HostileInputTests/(wrongToken|tls)|HTTPAPITests/bearerAuth' || status=$?
# Fuzzing (writes .build/reliability/fuzzing.json), and with --long the soak (soak.json).
bash scripts/fuzz.sh $long || status=$?
if [ -n "$long" ]; then bash scripts/soak.sh || status=$?; fi
report .build/reliability "\`scripts/reliability.sh${long:+ --long}\`" "$status"
exit "$status"
