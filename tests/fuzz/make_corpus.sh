#!/usr/bin/env bash
# Builds larger seed corpora for long fuzz runs from real files into build-fuzz/corpus/<target>/
# (not committed): the committed seeds, the GGUF fixtures and ../shared/data vocab/models,
# the headers of the downloaded models in .cache/models, an HF directory converted from
# tests/fixtures/models/tiny-qwen2.gguf (needs a kvsieve binary), tok512.model, and text.
#   tests/fuzz/make_corpus.sh [OUT_DIR]    (KVSIEVE=path/to/kvsieve, default build/kvsieve)
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${1:-build-fuzz/corpus}
KVSIEVE=${KVSIEVE:-build/kvsieve}
SHARED=../shared/data
targets=(fuzz_gguf fuzz_safetensors fuzz_tokenizer_json fuzz_spm_vocab fuzz_tokenize)
for t in "${targets[@]}"; do
  mkdir -p "$OUT/$t"
  cp tests/fuzz/corpus/$t/* "$OUT/$t/"
done

# u32 LE length prefix of $1, then $1, then $2 (the two-file layout of the targets).
pack() {
  python3 - "$@" <<'PY'
import struct, sys, os
a, b, out = sys.argv[1], sys.argv[2], sys.argv[3]
first = open(a, "rb").read() if os.path.exists(a) else None
second = open(b, "rb").read()
with open(out, "wb") as f:
    f.write(struct.pack("<I", 0xFFFFFFFF) if first is None else struct.pack("<I", len(first)) + first)
    f.write(second)
PY
}

# GGUF: small real files whole, big ones as their first 1 MiB (the header and vocab).
for f in tests/fixtures/models/*.gguf "$SHARED"/models/*.gguf "$SHARED"/vocab/*.gguf; do
  [ -f "$f" ] || continue
  if [ "$(stat -c %s "$f")" -le 2000000 ]; then
    cp "$f" "$OUT/fuzz_gguf/$(basename "$f")"
  else
    head -c 1048576 "$f" >"$OUT/fuzz_gguf/$(basename "$f").head"
  fi
done
for f in .cache/models/*.gguf; do
  [ -f "$f" ] && head -c 1048576 "$f" >"$OUT/fuzz_gguf/$(basename "$f").head"
done

# An HF directory: safetensors model + tokenizer files.
if [ -x "$KVSIEVE" ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for m in tiny-qwen2 tiny-qwen3; do
    [ -f tests/fixtures/models/$m.gguf ] || continue
    "$KVSIEVE" convert tests/fixtures/models/$m.gguf "$tmp/$m" >/dev/null 2>&1 || continue
    pack "$tmp/$m/config.json" "$tmp/$m/model.safetensors" "$OUT/fuzz_safetensors/$m"
    if [ -f "$tmp/$m/tokenizer.json" ]; then
      pack "$tmp/$m/tokenizer_config.json" "$tmp/$m/tokenizer.json" "$OUT/fuzz_tokenizer_json/$m"
    fi
    if [ -f "$tmp/$m/tokenizer.model" ]; then
      { printf '\x01'; cat "$tmp/$m/tokenizer.model"; } >"$OUT/fuzz_spm_vocab/$m.model"
    fi
  done
  [ -f "$SHARED/models/stories260K.gguf" ] &&
    "$KVSIEVE" convert "$SHARED/models/stories260K.gguf" "$tmp/stories" >/dev/null 2>&1 &&
    [ -f "$tmp/stories/tokenizer.model" ] &&
    { printf '\x01' ; cat "$tmp/stories/tokenizer.model"; } >"$OUT/fuzz_spm_vocab/stories260K.model"
else
  echo "make_corpus: $KVSIEVE not found: no converted HF seeds" >&2
fi

# SentencePiece models (first byte odd: the tokenizer.model form of fuzz_spm_vocab).
[ -f "$SHARED/models/tok512.model" ] &&
  { printf '\x01'; cat "$SHARED/models/tok512.model"; } >"$OUT/fuzz_spm_vocab/tok512.model"

# Text: the llama.cpp tokenizer test inputs and 1 KiB pieces of the books, with flag bytes.
i=0
for f in "$SHARED"/vocab/*.inp; do
  [ -f "$f" ] || continue
  { printf "\\x$(printf %02x $((i % 64)))"; head -c 4096 "$f"; } >"$OUT/fuzz_tokenize/inp$i"
  i=$((i + 1))
done
for f in "$SHARED"/text/*.txt; do
  [ -f "$f" ] || continue
  for k in 0 1 2 3 4 5 6 7; do
    { printf "\\x$(printf %02x $(((i * 9) % 64)))"; dd if="$f" bs=1024 skip=$((k * 49)) count=1 status=none; } \
      >"$OUT/fuzz_tokenize/$(basename "$f" .txt)$k"
    i=$((i + 1))
  done
done
du -sh "$OUT"/* >&2
