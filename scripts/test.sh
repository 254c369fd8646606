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
# The SIM metric's speaker encoder: a venv over Debian's python3 with resemblyzer (its pretrained
# weights) and librosa from PyPI, and the encoder exported to TorchScript from them
# (docs/EVALUATION.md); SpeakerEncoderTests, EvalMeasuresTests (SIM/MCD in an eval shard) and the MCD
# oracle test use them; they fail, naming this script, when it could not make them.
bash Tests/Fixtures/eval/speaker_env.sh >/dev/null
swift build --build-tests
# deploy/: systemd-analyze verify, Kubernetes manifests, Slurm script, container file (against the
# binaries just built).
bash scripts/check-deploy.sh
# The decoders and readers under libFuzzer, 25 s each (README.md, "Fuzzing").
bash scripts/fuzz.sh
# Line-buffered, so that no line of the runner's report waits in a buffer (the full suite's
# closing summary was seen missing from a redirected log); the output is kept in
# .build/test-output.log and a plain closing line counts what the runner reported.
status=0
stdbuf -oL -eL swift test --skip-build --no-parallel 2>&1 | tee .build/test-output.log || status=$?
passed=$(grep -v '^✔ Test run with' .build/test-output.log | grep -c '^✔ Test .* passed after' || true)
failed=$(grep -v '^✘ Test run with' .build/test-output.log | grep -c '^✘ Test .* failed after' || true)
echo "tests: ${passed} passed, ${failed} failed"
exit "$status"
