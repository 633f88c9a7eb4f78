#!/usr/bin/env bash
# Sets everything up (scripts/setup.sh) and runs the whole test suite with ctest.
# Tests that need ../shared data or downloaded models skip with a message when absent.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
BUILD_DIR=${BUILD_DIR:-build}
ctest --test-dir "$BUILD_DIR" --output-on-failure -j"$(nproc)" --timeout 900
# ASan+UBSan build of the unit tests (build-asan/), then each libFuzzer target for 30 s on its
# committed seeds (build-fuzz/, needs clang); see docs/robustness.md.
scripts/sanitize.sh
scripts/fuzz-smoke.sh
