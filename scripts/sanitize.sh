#!/usr/bin/env bash
# Builds the tree with AddressSanitizer + UndefinedBehaviorSanitizer and runs the unit tests
# there (any sanitizer report fails the test that triggered it).
# With clang (the default when installed) this is the libFuzzer build, build-fuzz/, which
# scripts/fuzz-smoke.sh then reuses: one sanitizer build serves both. Without clang: gcc
# into build-asan/.
#   scripts/sanitize.sh            unit tests
#   SANITIZE_LABELS="unit|model" scripts/sanitize.sh   also the real-model tests (slower)
#   SANITIZE_COMPILER=gcc scripts/sanitize.sh          the gcc build
set -euo pipefail
cd "$(dirname "$0")/.."

LABELS=${SANITIZE_LABELS:-unit}
COMPILER=${SANITIZE_COMPILER:-clang}
command -v clang++ >/dev/null 2>&1 || COMPILER=gcc
if [ "$COMPILER" = clang ]; then
  BUILD_DIR=${SANITIZE_BUILD_DIR:-build-fuzz}
  # The same configuration as scripts/fuzz-smoke.sh (keep them in step).
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DKVSIEVE_FUZZ=ON -DKVSIEVE_TESTS=ON -DKVSIEVE_CUDA=OFF ${KVSIEVE_CMAKE_ARGS:-} >&2
else
  BUILD_DIR=${SANITIZE_BUILD_DIR:-build-asan}
  cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DKVSIEVE_SANITIZE=address,undefined -DKVSIEVE_CUDA=OFF ${KVSIEVE_CMAKE_ARGS:-} >&2
fi
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
ctest --test-dir "$BUILD_DIR" -L "$LABELS" --output-on-failure -j"$(nproc)" --timeout 900
