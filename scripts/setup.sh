#!/usr/bin/env bash
# Installs what tts-cluster needs on a Debian machine (only what is missing), then builds.
# Usage: scripts/setup.sh [debug|release]
set -euo pipefail
cd "$(dirname "$0")/.."

source scripts/lib/prerequisites.sh
packages=(libnng-dev libcurl4-openssl-dev libsndfile1-dev libsqlite3-dev pkg-config openssl gcc espeak-ng sox procps python3-venv iproute2)
install_missing setup "${packages[@]}"
require_swift setup

config="${1:-debug}"
echo "setup: building ($config)"
swift build -c "$config" --product tts-coordinator
swift build -c "$config" --product tts-worker
# The speaker encoder of the SIM metric (Resemblyzer's GE2E weights from pip, exported to
# TorchScript under .build-oracle/speaker/), which workers load by default from there.
echo "setup: preparing the speaker encoder for SIM (Tests/Fixtures/eval/speaker_env.sh)"
bash Tests/Fixtures/eval/speaker_env.sh >/dev/null
