#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit + multi-process).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh debug
swift build --build-tests
swift test --skip-build --no-parallel
