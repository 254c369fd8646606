#!/usr/bin/env bash
# Creates (or reuses) the Python virtual environment that runs the test trainers
# (Tests/Fixtures/trainer/fake_trainer.py, the 'numbered' profile, and
# Tests/Fixtures/trainer/indextts-fixture/trainers/train_gpt_v2.py, the IndexTTS-2 trainer fixture)
# and prints the path of its python interpreter on the last line of stdout.
#
#   trainer_env.sh            # installs $TTS_TRAINER_PIP_SPEC, default 'tensorboardX==2.6.5'
#
# The venv is made with --system-site-packages from Debian's /usr/bin/python3 (or
# $TTS_TRAINER_BASE_PYTHON; plain `python3` when there is no /usr/bin/python3), so that Debian's
# python3-torch (/usr/lib/python3/dist-packages, installed by Tests/Fixtures/torch/torch_env.sh or
# `apt-get install python3-torch`) is importable: both fixtures write real torch.save checkpoints.
# They write TensorBoard event files with a real SummaryWriter: torch's (torch.utils.tensorboard)
# when it imports (it needs the `tensorboard` package), otherwise tensorboardX's, which writes the
# same TFRecord/Event/Summary format.
#
# Location: $TTS_ORACLE_DIR/trainer, or .build-oracle/trainer in the package root (ignored by git
# through the `.build-*/` pattern). The venv is reused when its `.ready` marker names the same
# layout version, base interpreter and pip spec; TTS_ORACLE_REFRESH=1 rebuilds it. Concurrent
# callers are serialised with flock.
#
# Exit status is non-zero, with the reason on stderr, when python3, venv or pip is missing, the
# install fails or torch does not import: the tests turn that into a failure, never a skip.
set -euo pipefail

spec="${TTS_TRAINER_PIP_SPEC:-tensorboardX==2.6.5}"
if [[ -n "${TTS_TRAINER_BASE_PYTHON:-}" ]]; then
    base_python="$TTS_TRAINER_BASE_PYTHON"
elif [[ -x /usr/bin/python3 ]]; then
    base_python=/usr/bin/python3
else
    base_python=python3
fi
marker="v2 system-site-packages $base_python $spec"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../../.." && pwd)"
base="${TTS_ORACLE_DIR:-$root/.build-oracle}"
venv="$base/trainer"

command -v "$base_python" >/dev/null 2>&1 || { echo "trainer_env: $base_python is not installed (apt-get install python3 python3-venv)" >&2; exit 2; }
mkdir -p "$base" || { echo "trainer_env: cannot create $base (set TTS_ORACLE_DIR to a writable directory)" >&2; exit 2; }

exec 9>"$base/.trainer.lock"
if command -v flock >/dev/null 2>&1; then flock 9; fi

if [[ -f "$venv/.ready" && "$(cat "$venv/.ready")" == "$marker" && -z "${TTS_ORACLE_REFRESH:-}" && -x "$venv/bin/python" ]]; then
    echo "$venv/bin/python"
    exit 0
fi

rm -rf "$venv"
if ! "$base_python" -m venv --system-site-packages "$venv" >&2; then
    echo "trainer_env: '$base_python -m venv --system-site-packages $venv' failed (is python3-venv installed?)" >&2
    exit 3
fi
if ! "$venv/bin/python" -c 'import torch' >&2; then
    echo "trainer_env: torch does not import in $venv (made from $base_python with --system-site-packages): install Debian's python3-torch (bash Tests/Fixtures/torch/torch_env.sh, or apt-get install python3-torch)" >&2
    rm -rf "$venv"
    exit 6
fi
# shellcheck disable=SC2086
if ! "$venv/bin/python" -m pip install --disable-pip-version-check --quiet $spec >&2; then
    echo "trainer_env: 'pip install $spec' failed in $venv (is PyPI reachable? set PIP_INDEX_URL for a mirror)" >&2
    rm -rf "$venv"
    exit 4
fi
if ! "$venv/bin/python" -c 'from tensorboardX import SummaryWriter' >&2 2>/dev/null \
   && ! "$venv/bin/python" -c 'from torch.utils.tensorboard import SummaryWriter' >&2; then
    echo "trainer_env: neither tensorboardX nor torch.utils.tensorboard imports in $venv after 'pip install $spec'" >&2
    rm -rf "$venv"
    exit 5
fi
echo "$marker" > "$venv/.ready"
echo "$venv/bin/python"
