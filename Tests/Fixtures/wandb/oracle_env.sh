#!/usr/bin/env bash
# Creates (or reuses) a Python virtual environment for a W&B oracle test and prints the path
# of its python interpreter on the last line of stdout.
#
#   oracle_env.sh NAME PIP_SPEC        e.g.  oracle_env.sh wandb-0.29.0 'wandb==0.29.0'
#                                             oracle_env.sh wandb-latest wandb
#
# Location: $TTS_ORACLE_DIR/NAME, or .build-oracle/NAME in the package root (ignored by git through
# the `.build-*/` pattern). A venv is reused when its `.ready` marker names the same PIP_SPEC;
# set TTS_ORACLE_REFRESH=1 to rebuild it (for example to pick up a newer `wandb` for the
# unpinned sync oracle). Concurrent callers are serialised with flock.
#
# Exit status is non-zero, with the reason on stderr, when python3, venv or pip is missing or the
# install fails: the oracle tests turn that into a failure, never a skip.
set -euo pipefail

name="${1:?usage: oracle_env.sh NAME PIP_SPEC}"
spec="${2:?usage: oracle_env.sh NAME PIP_SPEC}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
base="${TTS_ORACLE_DIR:-$root/.build-oracle}"
venv="$base/$name"

command -v python3 >/dev/null 2>&1 || { echo "oracle_env: python3 is not installed (apt-get install python3 python3-venv)" >&2; exit 2; }
mkdir -p "$base" || { echo "oracle_env: cannot create $base (set TTS_ORACLE_DIR to a writable directory)" >&2; exit 2; }

exec 9>"$base/.$name.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

if [[ -f "$venv/.ready" && "$(cat "$venv/.ready")" == "$spec" && -z "${TTS_ORACLE_REFRESH:-}" && -x "$venv/bin/python" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

rm -rf "$venv"
if ! python3 -m venv "$venv" >&2; then
    echo "oracle_env: 'python3 -m venv $venv' failed (is python3-venv installed?)" >&2
    exit 3
fi
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --quiet "$spec" >&2; then
    echo "oracle_env: 'pip install $spec' failed in $venv (is PyPI reachable? set PIP_INDEX_URL for a mirror)" >&2
    rm -rf "$venv"
    exit 4
fi
echo "$spec" > "$venv/.ready"
echo "$venv/bin/python"
