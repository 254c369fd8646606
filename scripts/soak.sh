#!/usr/bin/env bash
# The soak of issue 9, in one command (run by hand; not part of `make test` or CI):
#
#   bash scripts/soak.sh [--workers N] [--minutes M] [--quick] [tts-bench soak options…]
#
# Builds tts-coordinator and tts-bench in release mode, then runs `tts-bench soak`: one fresh
# coordinator (defaults: 2 s heartbeat interval announced to workers, 10 s loss timeout) and N
# simulated workers (default 1,000) heartbeating at the interval the coordinator announces, for M
# minutes (default 30), with a sample every 60 s: coordinator RSS and CPU, heartbeat p50/p99/max
# per window, errors, and workers the coordinator declared lost (any is a wrong loss: every
# simulated worker keeps heartbeating). Exits non-zero if a worker was wrongly lost.
#
#   --quick    200 workers × 2 minutes, a sample every 15 s (a smoke run of the command)
#
# The table goes to stdout and is appended to bench-results/soak.md (gitignored); progress goes
# to stderr; the figures go to .build/reliability/soak.json (flat, for scripts/reliability.sh) and
# the per-window series to .build/reliability/series/soak-series.json.
# Other arguments are passed to tts-bench soak, e.g. `--sample-seconds 20` or `--interval-ms 1000`.
# TTS_BENCH_SCRATCH=DIR builds with `--scratch-path DIR` instead of .build (as
# scripts/bench-control-plane.sh does); a new DIR is seeded with .build's package checkouts, so
# that it builds without network access.
set -euo pipefail

cd "$(dirname "$0")/.."

workers=1000
minutes=30
extra=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --workers) workers="$2"; shift 2 ;;
        --workers=*) workers="${1#*=}"; shift ;;
        --minutes) minutes="$2"; shift 2 ;;
        --minutes=*) minutes="${1#*=}"; shift ;;
        --quick) workers=200; minutes=2; extra+=(--sample-seconds 15); shift ;;
        *) extra+=("$1"); shift ;;
    esac
done

build=(swift build -c release)
if [[ -n "${TTS_BENCH_SCRATCH:-}" ]]; then
    if [[ ! -d "$TTS_BENCH_SCRATCH/checkouts" && -d .build/checkouts && -d .build/repositories ]]; then
        echo "seeding $TTS_BENCH_SCRATCH with the package checkouts of .build…" >&2
        mkdir -p "$TTS_BENCH_SCRATCH"
        cp -r .build/checkouts .build/repositories "$TTS_BENCH_SCRATCH/"
        if [[ -f .build/workspace-state.json ]]; then cp .build/workspace-state.json "$TTS_BENCH_SCRATCH/"; fi
    fi
    build+=(--scratch-path "$TTS_BENCH_SCRATCH")
fi

# One product per invocation: `swift build` honours only the last of several --product flags.
for product in tts-coordinator tts-bench; do
    echo "building $product (release)…" >&2
    "${build[@]}" --product "$product" >&2
done
bin="$("${build[@]}" --show-bin-path)"

mkdir -p bench-results
out="bench-results/soak.md"
commit="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ -n "$(git --no-optional-locks status --porcelain 2>/dev/null | head -1)" ]]; then commit="$commit (with uncommitted changes)"; fi
swift_version="$(swift --version 2>/dev/null | head -1)"

set +e
{
    echo
    echo "<!-- $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $commit, $swift_version -->"
    echo "Command: \`bash scripts/soak.sh --workers $workers --minutes $minutes${extra[*]:+ ${extra[*]}}\`"
    echo
    "$bin/tts-bench" soak \
        --coordinator-bin "$bin/tts-coordinator" \
        --workers "$workers" --minutes "$minutes" \
        --figures-dir .build/reliability \
        ${extra[@]+"${extra[@]}"}
} | tee -a "$out"
status="${PIPESTATUS[0]}"
set -e

echo >&2
echo "results appended to $out; figures in .build/reliability/soak.json and series/soak-series.json" >&2
exit "$status"
