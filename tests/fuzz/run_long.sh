#!/usr/bin/env bash
# Long local fuzz runs, one target after the other, one process each (share the machine):
#   tests/fuzz/run_long.sh SECONDS [TARGET ...]
# Needs build-fuzz (scripts/fuzz-smoke.sh builds it) and, for better seeds,
# tests/fuzz/make_corpus.sh. The growing corpus lives in build-fuzz/long/<target>/, crash
# inputs go to build-fuzz/artifacts/<target>/, logs to build-fuzz/long/<target>.log.
set -uo pipefail
cd "$(dirname "$0")/../.."
SECS=${1:?seconds per target}
shift
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_gguf fuzz_safetensors fuzz_tokenizer_json fuzz_spm_vocab fuzz_tokenize fuzz_cache_plan)
B=${FUZZ_BUILD_DIR:-build-fuzz}
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
for t in "${targets[@]}"; do
  mkdir -p "$B/long/$t" "$B/artifacts/$t"
  seeds=(tests/fuzz/corpus/$t)
  [ -d "$B/corpus/$t" ] && seeds=("$B/corpus/$t")
  echo "run_long: $t for ${SECS}s" >&2
  nice -n "${FUZZ_NICE:-19}" "$B/tests/fuzz/$t" "$B/long/$t" "${seeds[@]}" \
    -max_total_time="$SECS" -timeout=${FUZZ_TIMEOUT:-2} -max_len=${FUZZ_MAX_LEN:-65536} \
    -rss_limit_mb=2048 -malloc_limit_mb=2048 -artifact_prefix="$B/artifacts/$t/" \
    -print_final_stats=1 >"$B/long/$t.log" 2>&1
  echo "run_long: $t exit $?: $(grep -E '^#[0-9]+[[:space:]]+DONE' "$B/long/$t.log" | tail -n 1)" >&2
done
