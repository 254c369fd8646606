#!/usr/bin/env bash
# Fuzzes the wire decoder, the job-spec parser, the .npy and manifest readers and the TensorBoard
# reader under libFuzzer (the Fuzz/ package, built with -sanitize=fuzzer,address), each for a
# bounded time, and writes the figures to .build/reliability/fuzzing.json.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET]   (default 25: the CI run that scripts/test.sh makes)
#        scripts/fuzz.sh --long                 (10 minutes per target, for local runs)
#
# Seeds come from Fuzz/Corpus/<Target>/ (read only; regressions/ holds inputs that once crashed);
# what libFuzzer adds goes to Fuzz/.build/fuzz/<Target>/corpus/, which grows from run to run. A
# crash fails the script and names the saved input, Fuzz/.build/fuzz/<Target>/crash-…; replay it
# with `Fuzz/.build/debug/<Target> <file>`.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=25
case "${1:-}" in
  "") ;;
  --long) seconds=600 ;;
  *[!0-9]* | 0) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET | --long]" >&2; exit 2 ;;
  *) seconds=$1 ;;
esac

# The system libraries the Shared and Worker targets compile against (the toolchain brings libFuzzer).
source scripts/lib/prerequisites.sh
packages=(libnng-dev libcurl4-openssl-dev libsndfile1-dev pkg-config)
install_missing fuzz "${packages[@]}"
require_swift fuzz

# Same dependency versions as the main package, resolved from SwiftPM's cache.
[ -f Fuzz/Package.resolved ] || cp Package.resolved Fuzz/Package.resolved

echo "fuzz: building the fuzz targets (-sanitize=fuzzer,address)"
build_start=$(date +%s)
build_log=$(mktemp)
if ! swift build -c debug --package-path Fuzz --scratch-path Fuzz/.build \
    -Xswiftc -sanitize=fuzzer,address -Xswiftc -parse-as-library >"$build_log" 2>&1; then
  grep -v "Cannot export local symbol" "$build_log" | tail -40 >&2
  rm -f "$build_log"
  echo "fuzz: the build failed" >&2
  exit 1
fi
rm -f "$build_log"
build_seconds=$(( $(date +%s) - build_start ))
echo "fuzz: built in ${build_seconds}s; ${seconds}s per target"

bin=Fuzz/.build/debug
# target:figure name:dictionary
targets=(
  "FuzzWireDecoder:wire_decoder:wire.dict"
  "FuzzJobSpec:job_spec:jobspec.dict"
  "FuzzNpy:npy:npy.dict"
  "FuzzPairManifest:pair_manifest:manifest.dict"
  "FuzzEvalManifest:eval_manifest:manifest.dict"
  "FuzzTensorBoard:tensorboard:tensorboard.dict"
)

total=0
crashes=0
crashed=()
figures=()
for entry in "${targets[@]}"; do
  IFS=: read -r target name dict <<<"$entry"
  work="Fuzz/.build/fuzz/$target"
  mkdir -p "$work/corpus"
  log="$work/last-run.log"
  set +e
  # The Swift runtime's backtracer would read memory under ASan and muddle the report.
  SWIFT_BACKTRACE=enable=no "$bin/$target" "$work/corpus" "Fuzz/Corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=8192 \
    -dict="Fuzz/Dictionaries/$dict" -artifact_prefix="$work/" -print_final_stats=1 \
    >"$log" 2>&1
  status=$?
  set -e
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  runs=${runs:-0}
  rate=${rate:-0}
  total=$(( total + runs ))
  figures+=("executions_$name:$runs" "executions_per_second_$name:$rate")
  if [ "$status" -ne 0 ]; then
    crashes=$(( crashes + 1 ))
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    crashed+=("$target: ${artifact:-no input saved, see $log}")
    printf 'fuzz: %-17s CRASHED after %s executions (%s/s); input: %s\n' "$target" "$runs" "$rate" "${artifact:-?}"
    grep -E "Fatal error|fuzz invariant|ERROR: (AddressSanitizer|libFuzzer)|SUMMARY" "$log" | head -5 | sed 's/^/fuzz:   /'
  else
    printf 'fuzz: %-17s %10s executions  %7s/s\n' "$target" "$runs" "$rate"
  fi
done
echo "fuzz: ${#targets[@]} targets, ${total} executions, ${crashes} crashed"

# The figures, in the shape of Tests/IntegrationTests/Support/ReliabilityFigures.swift (sorted keys).
mkdir -p .build/reliability
{
  figures+=("build_seconds:$build_seconds" "crashes:$crashes" "seconds_per_target:$seconds"
            "targets:${#targets[@]}" "total_executions:$total")
  echo "{"
  printf '  "recorded_at" : "%s",\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  printf '  "test" : "fuzzing",\n'
  printf '%s\n' "${figures[@]}" | sort | sed 's/^\([^:]*\):\(.*\)$/  "\1" : \2,/' | sed '$ s/,$//'
  echo "}"
} >.build/reliability/fuzzing.json.tmp
# Keys in sorted order, as JSONSerialization's .sortedKeys writes them.
if command -v jq >/dev/null 2>&1; then
  jq -S . .build/reliability/fuzzing.json.tmp >.build/reliability/fuzzing.json && rm .build/reliability/fuzzing.json.tmp
else
  mv .build/reliability/fuzzing.json.tmp .build/reliability/fuzzing.json
fi
echo "fuzz: figures in .build/reliability/fuzzing.json"

if [ "$crashes" -gt 0 ]; then
  printf 'fuzz: crashing input: %s\n' "${crashed[@]}" >&2
  echo "fuzz: add each input as a regression (Fuzz/Corpus/<Target>/regressions/ and a unit test), fix, rerun" >&2
  exit 1
fi
