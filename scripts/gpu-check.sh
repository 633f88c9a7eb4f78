#!/usr/bin/env bash
# One short GPU run (docs/cuda.md): builds with CUDA for the local GPU, runs every `cuda`
# test (ops against the CPU reference, CPU/CUDA greedy equality) and the device benchmarks,
# and writes a summary to ${OUT:-gpu-check}/summary.md. Needs no network: models are those
# already present (../shared/data/models/stories260K.gguf, .cache/models/*.gguf).
#   scripts/gpu-check.sh            # build-gpu/, summary in $OUT or gpu-check/
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
B=${GPU_BUILD_DIR:-build-gpu}
mkdir -p "$OUT"
S="$OUT/summary.md"
t0=$(date +%s)
{
  echo "# kvsieve gpu-check ($(date -u +%FT%TZ))"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 || true
  echo '```'
} >"$S"

# The device's own architecture only: the CI build covers sm_80 and sm_90.
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '. ')
cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DKVSIEVE_CUDA=ON -DKVSIEVE_WERROR=ON \
  ${arch:+-DCMAKE_CUDA_ARCHITECTURES=$arch} >"$OUT/configure.log" 2>&1 &&
  cmake --build "$B" -j"$(nproc)" --target kvsieve test_cuda >"$OUT/build.log" 2>&1
rc_build=$?
echo "- build: exit $rc_build ($(($(date +%s) - t0)) s)" >>"$S"
if [ $rc_build -ne 0 ]; then
  tail -n 40 "$OUT/build.log" >>"$S"
  cat "$S"
  exit 1
fi

"$B/tests/test_cuda" --gtest_output=json:"$OUT/cuda-tests.json" >"$OUT/cuda-tests.log" 2>&1
rc_test=$?
echo "- cuda tests: exit $rc_test; $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$OUT/cuda-tests.log" | tr '\n' ' ')" >>"$S"
grep -E '^\[  FAILED  \]|Failure|error' "$OUT/cuda-tests.log" | head -n 40 >>"$S"

echo >>"$S"
echo "| model | device | test | t/s | stddev |" >>"$S"
echo "|---|---|---|---:|---:|" >>"$S"
models=()
for m in ../shared/data/models/stories260K.gguf .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \
  .cache/models/gemma-3-270m-q4_k_m.gguf; do
  [ -f "$m" ] && models+=("$m")
done
for m in "${models[@]}"; do
  for dev in cuda cpu; do
    timeout 120 "$B/kvsieve" bench -m "$m" --device "$dev" -p 512 -n 128 -r 3 --json \
      >"$OUT/bench-$(basename "$m" .gguf)-$dev.json" 2>>"$OUT/bench.log" || continue
    python3 - "$m" "$dev" "$OUT/bench-$(basename "$m" .gguf)-$dev.json" >>"$S" <<'PY'
import json, os, sys
for r in json.load(open(sys.argv[3])):
    print(f"| {os.path.basename(sys.argv[1])} | {sys.argv[2]} | {r['test']} | {r['tokens_per_s']:.1f} | {r['stddev']:.1f} |")
PY
  done
done
echo >>"$S"
echo "- total: $(($(date +%s) - t0)) s" >>"$S"
cat "$S"
[ $rc_test -eq 0 ]
