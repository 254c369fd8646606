#!/usr/bin/env bash
# Installs what is missing, builds, and runs the whole test suite (unit + multi-process).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh debug
# The torch runner's tests need the shim (built with CMake against Debian's CPU libtorch), the
# reference model and dataset: made (and their packages installed) here, once, so that no test's
# time limit includes a package download. The tests call the same script and fail with its reason
# if anything is missing.
bash Tests/Fixtures/torch/torch_env.sh >/dev/null
swift build --build-tests
# deploy/: systemd-analyze verify, Kubernetes manifests, Slurm script, container file (against the
# binaries just built).
bash scripts/check-deploy.sh
# The decoders and readers under libFuzzer, 25 s each (README.md, "Fuzzing").
bash scripts/fuzz.sh
swift test --skip-build --no-parallel
