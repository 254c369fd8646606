#!/usr/bin/env bash
# Runs the fault-injection suite (Tests/IntegrationTests/ReliabilityTests.swift) and writes the
# figures it measured to RELIABILITY.md.
#   scripts/reliability.sh          the CI-sized version (10 coordinator kills)
#   scripts/reliability.sh --long   the long version (TTS_RELIABILITY_KILLS=50)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${1:-}" = "--long" ] && export TTS_RELIABILITY_KILLS="${TTS_RELIABILITY_KILLS:-50}"
scripts/setup.sh debug >/dev/null
bash Tests/Fixtures/torch/torch_env.sh >/dev/null
swift build --build-tests >/dev/null
rm -rf .build/reliability
status=0
swift test --skip-build --no-parallel --filter ReliabilityTests || status=$?
{
  echo "## $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD), \`scripts/reliability.sh${1:+ $1}\`"
  echo
  for f in .build/reliability/*.json; do
    [ -f "$f" ] || continue
    echo "### $(sed -n 's/^ *"test" : "\(.*\)",*$/\1/p' "$f")"
    echo
    echo "| figure | value |"
    echo "|---|---|"
    sed -n 's/^ *"\([a-z_0-9]*\)" : \(.*\)$/| \1 | \2 |/p' "$f" | sed 's/,* |$/ |/' | grep -v '^| test |\|^| recorded_at |'
    echo
  done
  [ "$status" = 0 ] || echo "**The suite failed (exit $status): the figures above may be partial.**"
} > .build/reliability-section.md
cat .build/reliability-section.md
# Newest results first, below the fixed introduction.
intro="$(sed '/^<!-- results -->$/q' RELIABILITY.md)"
rest="$(sed '1,/^<!-- results -->$/d' RELIABILITY.md)"
printf '%s\n\n%s\n%s\n' "$intro" "$(cat .build/reliability-section.md)" "$rest" > RELIABILITY.md
exit "$status"
