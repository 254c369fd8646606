#!/usr/bin/env bash
# Makes everything the torch runner's tests need, and prints it as KEY=VALUE lines (last lines
# of stdout):
#   SHIM=…/libtts_torch_shim.so   (scripts/torch/build-shim.sh: Debian's CPU libtorch, CMake)
#   MODEL=…/reference.pt          (scripts/torch/export_reference_model.py, Debian's python3-torch;
#                                  its codec decoder over the dataset's code book)
#   MODULES=…/modules             (scripts/torch/export_test_modules.py: broken modules for error tests)
#   DATASET=…/dataset             (scripts/torch/make_reference_dataset.py: Korean espeak-ng speech,
#                                  codes, code book, codec_audio/ = the codec floor)
# Installs what is missing (apt-get: libtorch-dev libgloo-dev cmake g++ python3-torch python3-numpy espeak-ng
# sox). TTS_TORCH_SHIM names an already built library instead. Outputs are kept in $TTS_ORACLE_DIR/torch (default .build-oracle/torch) and remade when
# the scripts change. Exit status is non-zero with the reason on stderr when anything fails: the
# tests turn that into a failure, never a skip.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
base="${TTS_ORACLE_DIR:-$root/.build-oracle}/torch"
mkdir -p "$base"
exec 9>"$base/.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

need=()
for p in libtorch-dev libgloo-dev cmake g++ python3-torch python3-numpy espeak-ng sox; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "torch_env: installing ${need[*]}" >&2
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; } >&2 \
    || { echo "torch_env: apt-get install ${need[*]} failed" >&2; exit 2; }
fi

if [ -n "${TTS_TORCH_SHIM:-}" ]; then
  shim="$TTS_TORCH_SHIM"   # a shim built elsewhere (e.g. against a CUDA libtorch)
else
  shim="$(bash "$root/scripts/torch/build-shim.sh" | tail -1)" || { echo "torch_env: scripts/torch/build-shim.sh failed" >&2; exit 3; }
fi
[ -f "$shim" ] || { echo "torch_env: build-shim.sh did not produce the library (got '$shim')" >&2; exit 3; }

stamp="$(cat "$root"/scripts/torch/*.py | sha256sum | cut -c1-16)"
if [[ ! -f "$base/.ready" || "$(cat "$base/.ready")" != "$stamp" ]]; then
  rm -rf "$base/modules" "$base/dataset" "$base/reference.pt" "$base/reference.pt.json"
  # The dataset first: the model's codec decoder is made from its code book.
  /usr/bin/python3 "$root/scripts/torch/make_reference_dataset.py" --out "$base/dataset" >&2 \
    || { echo "torch_env: making the reference dataset failed (espeak-ng, sox, numpy, python3-torch)" >&2; exit 5; }
  /usr/bin/python3 "$root/scripts/torch/export_reference_model.py" --out "$base/reference.pt" \
      --codebook "$base/dataset/codebook.npy" >&2 \
    || { echo "torch_env: exporting the reference model failed" >&2; exit 4; }
  /usr/bin/python3 "$root/scripts/torch/export_test_modules.py" --out-dir "$base/modules" >&2 \
    || { echo "torch_env: exporting the test modules failed" >&2; exit 4; }
  echo "$stamp" > "$base/.ready"
fi
echo "SHIM=$shim"
echo "MODEL=$base/reference.pt"
echo "MODULES=$base/modules"
echo "DATASET=$base/dataset"
