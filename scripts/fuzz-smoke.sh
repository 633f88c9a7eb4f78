#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang into build-fuzz/ and runs each one for
# FUZZ_SECONDS (default 30) on its committed seed corpus; fails on any crash, leak, timeout
# or out-of-memory. New inputs go to build-fuzz/smoke/<target>/ (never into the committed
# corpus), crash reproducers to build-fuzz/artifacts/<target>/.
#   scripts/fuzz-smoke.sh [TARGET ...]     (default: all targets)
# Longer runs: see docs/robustness.md.
set -euo pipefail
cd "$(dirname "$0")/.."

BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
SECONDS_PER_TARGET=${FUZZ_SECONDS:-30}
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_gguf fuzz_safetensors fuzz_tokenizer_json fuzz_spm_vocab fuzz_tokenize fuzz_cache_plan)

if ! command -v clang++ >/dev/null 2>&1; then
  echo "fuzz-smoke: clang++ not found (apt-get install clang)" >&2
  exit 1
fi
# The same configuration as scripts/sanitize.sh, whose build (tests included) this reuses.
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
  -DKVSIEVE_FUZZ=ON -DKVSIEVE_TESTS=ON -DKVSIEVE_CUDA=OFF ${KVSIEVE_CMAKE_ARGS:-} >&2
cmake --build "$BUILD_DIR" --target "${targets[@]}" -j"$(nproc)" >&2

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
failed=()
for t in "${targets[@]}"; do
  work="$BUILD_DIR/smoke/$t"
  art="$BUILD_DIR/artifacts/$t"
  mkdir -p "$work" "$art"
  echo "fuzz-smoke: $t for ${SECONDS_PER_TARGET}s" >&2
  if ! "$BUILD_DIR/tests/fuzz/$t" "$work" "tests/fuzz/corpus/$t" \
      -max_total_time="$SECONDS_PER_TARGET" -timeout=1 -rss_limit_mb=2048 -malloc_limit_mb=2048 \
      -artifact_prefix="$art/" -print_final_stats=1 >"$BUILD_DIR/smoke/$t.log" 2>&1; then
    echo "fuzz-smoke: $t FAILED (log: $BUILD_DIR/smoke/$t.log, inputs: $art/)" >&2
    tail -n 40 "$BUILD_DIR/smoke/$t.log" >&2
    failed+=("$t")
  else
    grep -E '^#[0-9]+[[:space:]]+DONE' "$BUILD_DIR/smoke/$t.log" | tail -n 1 >&2 || true
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz-smoke: failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz-smoke: all ${#targets[@]} targets ran ${SECONDS_PER_TARGET}s without a crash" >&2
