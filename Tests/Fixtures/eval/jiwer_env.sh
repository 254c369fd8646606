#!/usr/bin/env bash
# Creates (or reuses) the Python virtual environment of the jiwer oracle and prints the path of its
# python interpreter on the last line of stdout.
#
#   jiwer_env.sh                 jiwer==4.0.0 (the version issue 7 pins for parity)
#   jiwer_env.sh 'jiwer==4.*'    any other pip spec
#
# Location: $TTS_ORACLE_DIR/jiwer, or .build-oracle/jiwer in the package root (ignored by git through
# the `.build-*/` pattern). This delegates to ../wandb/oracle_env.sh, which reuses a venv whose
# `.ready` marker names the same spec (TTS_ORACLE_REFRESH=1 rebuilds it) and serialises concurrent
# callers with flock. A non-zero exit, with the reason on stderr, means python3, venv, pip or PyPI is
# missing: JiwerOracleTests turns that into a failure, never a skip.
set -euo pipefail
spec="${1:-jiwer==4.0.0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$(bash "$here/../wandb/oracle_env.sh" jiwer "$spec" | tail -n 1)"
# Prove the interpreter really has a jiwer 4 (a stale venv from another spec must not pass).
"$python" -c 'import jiwer, sys; from importlib.metadata import version; v = version("jiwer"); sys.exit(0 if v.startswith("4.") else "jiwer_env: expected jiwer 4.x, found " + v)' >&2
echo "$python"
