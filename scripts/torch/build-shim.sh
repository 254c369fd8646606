#!/usr/bin/env bash
# Build the libtorch training shim, libtts_torch_shim.so, into .build-torchshim/.
#
#   scripts/torch/build-shim.sh [--smoke] [-- EXTRA_CMAKE_ARGS...]
#
# * Installs what is missing (checked with dpkg-query; apt-get update first): cmake g++ and, unless
#   a libtorch is given with -DTorch_DIR=... / $Torch_DIR, Debian's libtorch-dev and libgloo-dev (torch 1.13.1,
#   CPU) plus libopenblas0-openmp (Debian's torch calls the system BLAS, and the default reference
#   BLAS is ~10x slower). --smoke also needs python3-torch python3-numpy.
# * Configures with `cmake -S Sources/TorchShim -B .build-torchshim -DCMAKE_BUILD_TYPE=Release`
#   and builds with -j2.
# * --smoke: exports the reference model and the broken test modules into
#   .build-torchshim/fixtures/, compiles Tests/Fixtures/torch/shim_smoke.c and runs it (PASS/FAIL
#   lines, then "N passed, M failed"); a failure makes the script exit 1.
# * The last line printed on stdout is the absolute path of the .so (build logs go to stderr).
#
# Environment: TTS_SHIM_BUILD_DIR (default <repo>/.build-torchshim), TTS_SHIM_THREADS (threads for
# the smoke run, default 1), Torch_DIR (passed to cmake as -DTorch_DIR).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
build="${TTS_SHIM_BUILD_DIR:-$root/.build-torchshim}"
smoke=0
cmake_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --smoke) smoke=1 ;;
    --) shift; cmake_args+=("$@"); break ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "build-shim.sh: unknown argument $1 (cmake arguments go after --)" >&2; exit 2 ;;
  esac
  shift
done

custom_torch=0
if [ -n "${Torch_DIR:-}" ]; then
  custom_torch=1
  cmake_args+=("-DTorch_DIR=$Torch_DIR")
fi
for a in "${cmake_args[@]+"${cmake_args[@]}"}"; do
  case "$a" in -DTorch_DIR=*) custom_torch=1 ;; esac
done

pkgs=(cmake g++)
[ "$custom_torch" = 1 ] || pkgs+=(libtorch-dev libgloo-dev libopenblas0-openmp)
[ "$smoke" = 1 ] && pkgs+=(python3-torch python3-numpy libopenblas0-openmp)

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    case " ${missing[*]+"${missing[*]}"} " in *" $p "*) ;; *) missing+=("$p") ;; esac
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "build-shim.sh: missing packages ${missing[*]} and no apt-get; install them by hand" >&2
    exit 1
  fi
  sudo=()
  [ "$(id -u)" = 0 ] || sudo=(sudo)
  echo "build-shim.sh: installing ${missing[*]}" >&2
  "${sudo[@]+"${sudo[@]}"}" apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive "${sudo[@]+"${sudo[@]}"}" apt-get install -y -qq "${missing[@]}" >&2
fi

start=$(date +%s)
cmake -S "$root/Sources/TorchShim" -B "$build" -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]+"${cmake_args[@]}"}" >&2
cmake --build "$build" -j2 >&2
so="$build/libtts_torch_shim.so"
[ -f "$so" ] || { echo "build-shim.sh: $so was not built" >&2; exit 1; }
echo "build-shim.sh: built $so in $(( $(date +%s) - start )) s" >&2

if [ "$smoke" = 1 ]; then
  fixtures="$build/fixtures"
  mkdir -p "$fixtures"
  /usr/bin/python3 "$root/scripts/torch/export_reference_model.py" --out "$fixtures/reference.pt" >&2
  /usr/bin/python3 "$root/scripts/torch/export_test_modules.py" --out-dir "$fixtures" >&2
  cc -std=c99 -O2 -Wall -Wextra -I"$root/Sources/TorchShim/include" \
    "$root/Tests/Fixtures/torch/shim_smoke.c" -o "$build/shim_smoke" -ldl -lm
  status=0
  "$build/shim_smoke" --lib "$so" --model "$fixtures/reference.pt" --modules "$fixtures" \
    --threads "${TTS_SHIM_THREADS:-1}" --workdir "$build" || status=$?
  if [ "$status" != 0 ]; then
    echo "build-shim.sh: smoke test failed" >&2
    echo "$so"
    exit 1
  fi
fi

echo "$so"
