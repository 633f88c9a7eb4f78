#!/usr/bin/env bash
# Builds the tree with AddressSanitizer + UndefinedBehaviorSanitizer into build-asan/ and
# runs the unit tests there (any sanitizer report fails the test that triggered it).
#   scripts/sanitize.sh            unit tests
#   SANITIZE_LABELS="unit|model" scripts/sanitize.sh   also the real-model tests (slower)
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${SANITIZE_BUILD_DIR:-build-asan}
LABELS=${SANITIZE_LABELS:-unit}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DKVSIEVE_SANITIZE=address,undefined ${KVSIEVE_CMAKE_ARGS:-} >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$BUILD_DIR" -L "$LABELS" --output-on-failure -j"$(nproc)" --timeout 900
