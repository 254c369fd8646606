#!/usr/bin/env bash
# Prints PYTHON=<python of a venv with wandb==0.29.0> (the last release with the Python reader
# DataStore), made or reused by oracle_env.sh. Non-zero exit with the reason: a test failure.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$(bash "$here/oracle_env.sh" wandb-0.29.0 "wandb==0.29.0" | tail -n 1)"
echo "PYTHON=$python"
