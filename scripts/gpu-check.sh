#!/usr/bin/env bash
# One short GPU run (docs/cuda.md, "One GPU run"): builds with CUDA for the local GPU, runs
# every `cuda` test (ops against the CPU reference, CPU/CUDA greedy equality, graph replay),
# the decode GEMV bandwidth benchmark, kvsieve on cuda vs cpu, CUDA graphs on vs off, and
# kvsieve vs HF transformers on the `kvsieve convert` output. Needs no network: build
# dependencies and models come from the system or from scripts/gpu-bundle.sh's .cache/gpu.
# Writes $OUT/summary.md and $OUT/logs.tar.gz (two files: the device tool returns at most 8).
#   scripts/gpu-check.sh            # build in build-gpu/, ~5 minutes on an H200
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu-check}
B=${GPU_BUILD_DIR:-build-gpu}
W=$(mktemp -d /tmp/kvs-gpu-check.XXXXXX)  # logs, tarred into $OUT at the end
mkdir -p "$OUT"
S="$OUT/summary.md"
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0)) s"; }
finish() {
  tar -czf "$OUT/logs.tar.gz" -C "$W" . 2>/dev/null
  echo "- total: $(elapsed)" >>"$S"
  cat "$S"
}
trap finish EXIT
{
  echo "# kvsieve gpu-check ($(date -u +%FT%TZ), $(git rev-parse --short HEAD 2>/dev/null))"
  echo
  echo '```'
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm,clocks.max.mem \
    --format=csv,noheader 2>&1 || true
  nproc
  echo '```'
} >"$S"

# ---- build dependencies from the bundle (Debian packages unpacked under /tmp/kvs-deps) ----
cmake_extra=()
if ls .cache/gpu/c*/debs/*.deb >/dev/null 2>&1; then
  D=/tmp/kvs-deps
  for f in .cache/gpu/c*/debs/*.deb; do dpkg-deb -x "$f" "$D"; done
  L="$D/usr/lib/x86_64-linux-gnu"
  export LD_LIBRARY_PATH="$L${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  # Only the bundle's .pc files, their /usr paths moved under $D.
  export PKG_CONFIG_LIBDIR="$L/pkgconfig:$D/usr/share/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$D"
  pc=$(command -v pkg-config || echo "$D/usr/bin/pkgconf")
  cmake_extra+=("-DCMAKE_PREFIX_PATH=$D/usr" "-DPKG_CONFIG_EXECUTABLE=$pc"
    "-DCMAKE_POLICY_VERSION_MINIMUM=3.5")
  echo "- dependencies: $(ls .cache/gpu/c*/debs/*.deb | wc -l) bundled packages in $D" >>"$S"
fi

# ---- models: the bundle's parts joined and checked, else what is on disk ----
if ls .cache/gpu/c*/manifest.txt >/dev/null 2>&1; then
  mkdir -p .cache/gpu/models
  m=$(ls .cache/gpu/c*/manifest.txt | head -n1)
  while read -r name bytes sha parts; do
    dst=.cache/gpu/models/$name
    have=$(ls .cache/gpu/c*/"$name".part* 2>/dev/null | wc -l)
    if [ "$have" -ne "$parts" ]; then
      echo "- model $name: $have of $parts parts present, skipped" >>"$S"
      continue
    fi
    # Parts in the order of their numeric suffix, whichever chunk holds them.
    ls .cache/gpu/c*/"$name".part* | awk -F'.part' '{print $NF, $0}' | sort -n | cut -d' ' -f2- |
      xargs cat >"$dst"
    if [ "$(stat -c %s "$dst")" != "$bytes" ] || [ "$(sha256sum "$dst" | cut -d' ' -f1)" != "$sha" ]; then
      echo "- model $name: joined parts do not match the manifest, skipped" >>"$S"
      rm -f "$dst"
    fi
  done <"$m"
fi
pick() {  # first existing file among the arguments
  for f in "$@"; do [ -f "$f" ] && { echo "$f"; return; }; done
}
STORIES=$(pick .cache/gpu/models/stories260K.gguf ../shared/data/models/stories260K.gguf)
SMOL=$(pick .cache/gpu/models/SmolLM2-135M-Instruct.Q4_1.gguf .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf)
GEMMA=$(pick .cache/gpu/models/gemma-3-270m-q4_k_m.gguf .cache/models/gemma-3-270m-q4_k_m.gguf)
# The tests look in $KVSIEVE_SHARED_DATA/models and $KVSIEVE_MODEL_DIR (tests/support/paths.h).
if [ -d .cache/gpu/models ]; then
  export KVSIEVE_MODEL_DIR="$PWD/.cache/gpu/models"
  if [ ! -f ../shared/data/models/stories260K.gguf ] && [ -f .cache/gpu/models/stories260K.gguf ]; then
    mkdir -p .cache/gpu/shared/data/models
    ln -sf "$PWD/.cache/gpu/models/stories260K.gguf" .cache/gpu/shared/data/models/
    export KVSIEVE_SHARED_DATA="$PWD/.cache/gpu/shared/data"
  fi
fi
echo "- models: ${STORIES:-no stories260K}, ${SMOL:-no SmolLM2}, ${GEMMA:-no Gemma 3}" >>"$S"

# ---- build: the device's own architecture only (CI compiles sm_80 and sm_90) ----
arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | tr -d '. ')
# Warnings are CI's job (warnings as errors there); this host compiler may differ from CI's.
timeout 300 cmake -S . -B "$B" -DCMAKE_BUILD_TYPE=Release -DKVSIEVE_CUDA=ON -DKVSIEVE_WERROR=OFF \
  ${arch:+-DCMAKE_CUDA_ARCHITECTURES=$arch} "${cmake_extra[@]}" \
  >"$W/configure.log" 2>&1 &&
  timeout "${GPU_BUILD_TIMEOUT:-420}" cmake --build "$B" -j"$(nproc)" --target kvsieve kvsieve_cuda test_cuda bench_cuda_gemv \
    >"$W/build.log" 2>&1
rc_build=$?
echo "- build: exit $rc_build ($(elapsed))" >>"$S"
if [ $rc_build -ne 0 ]; then
  { echo '```'; tail -n 30 "$W/configure.log"; tail -n 40 "$W/build.log"; echo '```'; } >>"$S"
  exit 1
fi

# ---- cuda tests ----
timeout 240 "$B/tests/test_cuda" --gtest_output=json:"$W/cuda-tests.json" >"$W/cuda-tests.log" 2>&1
rc_test=$?
{
  echo "- cuda tests: exit $rc_test ($(elapsed)): $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$W/cuda-tests.log" | tr '\n' ' ')"
  echo '```'
  grep -E '^\[  FAILED  \]|Failure|Expected|Which is|error' "$W/cuda-tests.log" | head -n 40
  echo '```'
} >>"$S"

# ---- decode GEMV bandwidth ----
{
  echo
  echo "## Decode GEMV bandwidth (tests/bench/cuda_gemv.cpp)"
  echo
  timeout 120 "$B/tests/bench_cuda_gemv" 2>&1
} >>"$S"

# ---- kvsieve: cuda vs cpu, graphs on vs off ----
{
  echo
  echo "## kvsieve bench (-p 512 -n 128 -b 512 -r 3; cuda with graphs also at depth 4096)"
  echo
  echo "| model | device | graphs | test | t/s | stddev |"
  echo "|---|---|---|---|---:|---:|"
} >>"$S"
for m in $STORIES $SMOL $GEMMA; do
  # Depth 4096 shows the split-K decode attention; the CPU runs only at depth 0.
  for cfg in "cuda 1 0,4096" "cuda 0 0" "cpu 1 0"; do
    set -- $cfg
    j="$W/bench-$(basename "$m" .gguf)-$1-g$2.json"
    g=$([ "$2" = 1 ] && echo on || echo off)
    if ! KVSIEVE_CUDA_GRAPHS=$2 timeout 150 "$B/kvsieve" bench -m "$m" --device "$1" -p 512 -n 128 \
      -d "$3" -b 512 -r 3 --json >"$j" 2>>"$W/bench.log"; then
      echo "| $(basename "$m") | $1 | $g | failed: $(tail -n 1 "$W/bench.log") | | |" >>"$S"
      continue
    fi
    python3 - "$m" "$1" "$g" "$j" >>"$S" <<'PY'
import json, os, sys
for r in json.load(open(sys.argv[4])):
    print(f"| {os.path.basename(sys.argv[1])} | {sys.argv[2]} | {sys.argv[3]} "
          f"| {r['test']} | {r['tokens_per_s']:.1f} | {r['stddev']:.1f} |")
PY
  done
done
echo "- kvsieve benches done ($(elapsed))" >>"$S"

# ---- kvsieve vs HF transformers on the converted model ----
for m in $SMOL $GEMMA; do
  hf="$W/hf-$(basename "$m" .gguf)"
  {
    echo
    echo "## vs transformers: $(basename "$m")"
    echo
  } >>"$S"
  if ! timeout 120 "$B/kvsieve" convert "$m" "$hf" --force >"$W/convert-$(basename "$m").log" 2>&1; then
    echo "convert failed: $(tail -n 1 "$W/convert-$(basename "$m").log")" >>"$S"
    continue
  fi
  PYTHONUNBUFFERED=1 timeout 240 python3 tools/bench_vs_transformers.py --gguf "$m" --hf-dir "$hf" \
    --kvsieve "$B/kvsieve" --rounds 3 >>"$S" 2>"$W/transformers-$(basename "$m").log" ||
    echo "failed: $(tail -n 2 "$W/transformers-$(basename "$m").log" | tr '\n' ' ')" >>"$S"
  rm -rf "$hf"
done
[ $rc_test -eq 0 ]
