#!/usr/bin/env bash
# Makes what the speaker-similarity (SIM) tests need and prints it as KEY=VALUE lines (last lines
# of stdout):
#   PYTHON=…/bin/python            a venv over Debian's /usr/bin/python3 (--system-site-packages,
#                                   so python3-torch is Debian's) with resemblyzer 0.1.4 + librosa
#   ENCODER=…/speaker_encoder.pt   scripts/torch/export_speaker_encoder.py: Resemblyzer's pretrained
#                                   GE2E encoder (weights from the installed wheel) as TorchScript
#   SHIM=…/libtts_torch_shim.so    from Tests/Fixtures/torch/torch_env.sh
# With --venv only the venv is made and only PYTHON= printed (the MCD oracle needs librosa, not
# the shim).
#
# Installs what is missing: apt-get python3-torch python3-numpy python3-scipy python3-numba
# python3-sklearn python3-soundfile python3-venv espeak-ng sox (the numerical stack is Debian's, so
# it matches Debian's torch and numpy); pip, in the venv: resemblyzer with --no-deps (it lists
# torch as a dependency; torch must never come from PyPI here), then librosa and webrtcvad-wheels
# (which provides the `webrtcvad` module resemblyzer imports) with their small pure-Python
# dependencies (lazy_loader, soxr, pooch, audioread, msgpack).
#
# Location: $TTS_ORACLE_DIR/resemblyzer (venv) and $TTS_ORACLE_DIR/speaker (the exported module),
# default .build-oracle/ in the package root (ignored by git). The venv is reused while its
# `.ready` marker names the same specs (TTS_ORACLE_REFRESH=1 rebuilds it); the module is exported
# again when the export script changes, and checked against resemblyzer's VoiceEncoder at export
# (cosine >= 0.9999, else this script fails). Concurrent callers are serialised with flock.
#
# Exit status is non-zero with the reason on stderr when anything fails: SpeakerEncoderTests turns
# that into a failure, never a skip.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
base="${TTS_ORACLE_DIR:-$root/.build-oracle}"
venv="$base/resemblyzer"
out="$base/speaker"
specs="resemblyzer==0.1.4 | librosa==0.10.2.post1 webrtcvad-wheels==2.0.14.post1"
venv_only=0
[ "${1:-}" = "--venv" ] && venv_only=1

mkdir -p "$base" "$out" || { echo "speaker_env: cannot create $base (set TTS_ORACLE_DIR to a writable directory)" >&2; exit 2; }

# The shim (and its packages) first: torch_env.sh takes its own lock.
if [ "$venv_only" = 0 ]; then
  torch_lines="$(bash "$root/Tests/Fixtures/torch/torch_env.sh")" || { echo "speaker_env: Tests/Fixtures/torch/torch_env.sh failed" >&2; exit 3; }
  shim="$(printf '%s\n' "$torch_lines" | sed -n 's/^SHIM=//p' | tail -1)"
  [ -f "$shim" ] || { echo "speaker_env: torch_env.sh gave no shim library (got '$shim')" >&2; exit 3; }
fi

exec 9>"$base/.speaker.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

need=()
for p in python3-torch python3-numpy python3-scipy python3-numba python3-sklearn python3-soundfile python3-venv espeak-ng sox; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "speaker_env: installing ${need[*]}" >&2
  { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}"; } >&2 \
    || { echo "speaker_env: apt-get install ${need[*]} failed" >&2; exit 2; }
fi

if [[ ! -f "$venv/.ready" || "$(cat "$venv/.ready")" != "$specs" || -n "${TTS_ORACLE_REFRESH:-}" || ! -x "$venv/bin/python" ]]; then
  rm -rf "$venv" "$out/.ready"
  /usr/bin/python3 -m venv --system-site-packages "$venv" >&2 \
    || { echo "speaker_env: '/usr/bin/python3 -m venv --system-site-packages $venv' failed (python3-venv?)" >&2; exit 3; }
  pip=("$venv/bin/python" -m pip install --disable-pip-version-check --quiet)
  # pip then reports "resemblyzer 0.1.4 requires typing / webrtcvad, which is not installed" as an
  # ERROR line: expected (typing is in the standard library, webrtcvad-wheels provides the
  # `webrtcvad` module); the import check below is what counts.
  if ! "${pip[@]}" --no-deps resemblyzer==0.1.4 >&2 \
     || ! "${pip[@]}" librosa==0.10.2.post1 webrtcvad-wheels==2.0.14.post1 >&2; then
    echo "speaker_env: pip install ($specs) failed in $venv (is PyPI reachable? set PIP_INDEX_URL for a mirror)" >&2
    rm -rf "$venv"
    exit 4
  fi
  # Torch must be Debian's (the libtorch the shim is built against), never one pip brought along.
  "$venv/bin/python" - <<'PY' >&2 || { rm -rf "$venv"; exit 4; }
import sys, torch, resemblyzer, librosa, webrtcvad
if not torch.__file__.startswith("/usr/lib/python3/dist-packages/"):
    sys.exit(f"speaker_env: torch comes from {torch.__file__}, not from Debian's python3-torch")
PY
  echo "$specs" > "$venv/.ready"
fi

if [ "$venv_only" = 1 ]; then
  echo "PYTHON=$venv/bin/python"
  exit 0
fi

stamp="$(cat "$root/scripts/torch/export_speaker_encoder.py" "$venv/.ready" | sha256sum | cut -c1-16)"
if [[ ! -f "$out/.ready" || "$(cat "$out/.ready")" != "$stamp" || ! -f "$out/speaker_encoder.pt" ]]; then
  rm -f "$out/speaker_encoder.pt"
  "$venv/bin/python" "$root/scripts/torch/export_speaker_encoder.py" --out "$out/speaker_encoder.pt" --check >&2 \
    || { echo "speaker_env: exporting the speaker encoder failed" >&2; exit 5; }
  echo "$stamp" > "$out/.ready"
fi
echo "PYTHON=$venv/bin/python"
echo "ENCODER=$out/speaker_encoder.pt"
echo "SHIM=$shim"
