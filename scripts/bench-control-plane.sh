#!/usr/bin/env bash
# The control-plane benchmark of issue 2, in one command:
#
#   bash scripts/bench-control-plane.sh [tts-bench control-plane options…]
#
# Builds tts-coordinator, tts-bench and nng-echo in release mode, then runs
# `tts-bench control-plane` (default: N = 100 and 1,000 workers, 20 s at 1 Hz and 10 s saturated
# per server). The results table goes to stdout and is appended to
# bench-results/control-plane.md (gitignored); progress goes to stderr.
#
# Extra arguments are passed to tts-bench, e.g. `--workers 100 --rate-seconds 30`.
# TTS_BENCH_SCRATCH=DIR builds with `--scratch-path DIR` instead of .build.
set -euo pipefail

cd "$(dirname "$0")/.."

build=(swift build -c release)
if [[ -n "${TTS_BENCH_SCRATCH:-}" ]]; then
    build+=(--scratch-path "$TTS_BENCH_SCRATCH")
fi

# One product per invocation: `swift build` honours only the last of several --product flags.
for product in tts-coordinator tts-bench nng-echo; do
    echo "building $product (release)…" >&2
    "${build[@]}" --product "$product" >&2
done
bin="$("${build[@]}" --show-bin-path)"

mkdir -p bench-results
out="bench-results/control-plane.md"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git --no-optional-locks status --porcelain 2>/dev/null | head -1)" ]]; then commit="$commit (with uncommitted changes)"; fi
swift_version="$(swift --version 2>/dev/null | head -1)"

{
    echo
    echo "<!-- $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit, $swift_version -->"
    echo "Command: \`bash scripts/bench-control-plane.sh${*:+ $*}\`"
    echo
    "$bin/tts-bench" control-plane \
        --coordinator-bin "$bin/tts-coordinator" \
        --echo-bin "$bin/nng-echo" \
        "$@"
} | tee -a "$out"

echo >&2
echo "results appended to $out" >&2
