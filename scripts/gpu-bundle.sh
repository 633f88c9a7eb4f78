#!/usr/bin/env bash
# Packs what scripts/gpu-check.sh needs on a GPU machine that has no network and receives the
# working tree plus at most 64 MiB of carried files per call (docs/cuda.md, "One GPU run"):
#   - the Debian packages the build needs (unpacked there under /tmp/kvs-deps, not into /),
#   - the model files (stories260K, SmolLM2 Q4_1, Gemma 3 Q4_K_M), split into parts,
# spread over .cache/gpu/c1 .. cN (each under 59 MiB, with manifest.txt: name, bytes, sha256,
# parts). Call k carries .cache/gpu/ck; the machine keeps earlier calls' files while warm, and
# gpu-check.sh joins and verifies the parts. Prints the calls to make.
#   scripts/gpu-bundle.sh            # after scripts/setup.sh (the models are in .cache/models)
set -euo pipefail
cd "$(dirname "$0")/.."
G=.cache/gpu
PART=$((2 << 20))
CAP=$((59 << 20))
PKGS="libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libgtest-dev libgmock-dev googletest
  nlohmann-json3-dev libcli11-dev libsentencepiece-dev libsentencepiece0 libpcre2-dev
  libpcre2-8-0 libpcre2-16-0 libpcre2-32-0 libpcre2-posix3 pkgconf pkgconf-bin libpkgconf3"

rm -rf "$G"
mkdir -p "$G/parts" "$G/c1/debs"
# apt-get download writes into the current directory; as root it warns that _apt cannot.
(cd "$G/c1/debs" && apt-get download $PKGS >/dev/null 2>&1) ||
  { echo "gpu-bundle: apt-get download failed (packages: $PKGS)" >&2; exit 1; }

: >"$G/manifest.txt"
for m in ../shared/data/models/stories260K.gguf .cache/models/SmolLM2-135M-Instruct.Q4_1.gguf \
  .cache/models/gemma-3-270m-q4_k_m.gguf; do
  if [ ! -f "$m" ]; then
    echo "gpu-bundle: $m missing (run scripts/setup.sh); the check will skip it" >&2
    continue
  fi
  name=$(basename "$m")
  split -b "$PART" -d -a 3 "$m" "$G/parts/$name.part"
  n=$(ls "$G/parts/$name".part* | wc -l)
  echo "$name $(stat -c %s "$m") $(sha256sum "$m" | cut -d' ' -f1) $n" >>"$G/manifest.txt"
done

# Fill the chunks in order: c1 holds the packages first.
k=1
used=$(du -sb "$G/c1" | cut -f1)
for p in "$G"/parts/*; do
  sz=$(stat -c %s "$p")
  if [ $((used + sz)) -gt "$CAP" ]; then
    k=$((k + 1))
    used=0
    mkdir -p "$G/c$k"
  fi
  mv "$p" "$G/c$k/"
  used=$((used + sz))
done
rmdir "$G/parts"
for d in "$G"/c*; do cp "$G/manifest.txt" "$d/"; done

echo "gpu-bundle: $k calls, one after the other (each within 30 s of the last, while warm):"
for i in $(seq 1 "$k"); do
  if [ "$i" -lt "$k" ]; then
    echo "  run(carry=[\"$G/c$i\"], command=\"du -sh $G\")"
  else
    echo "  run(carry=[\"$G/c$i\"], command=\"bash scripts/gpu-check.sh\", timeout_s=540)"
  fi
done
