#!/usr/bin/env bash
# The Prometheus text-format oracle: a venv with the official Python client (prometheus-client),
# whose parser (prometheus_client.parser.text_string_to_metric_families) reads what /metrics
# serves. Prints PYTHON=<the venv's python> on the last line. Delegates to ../wandb/oracle_env.sh (same
# caching, locking and failure rules: a non-zero exit says why; the tests fail, never skip).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
python="$(bash "$here/../wandb/oracle_env.sh" prometheus "prometheus-client==0.21.1" | tail -n 1)"
"$python" -c 'import prometheus_client.parser' >&2
echo "PYTHON=$python"
