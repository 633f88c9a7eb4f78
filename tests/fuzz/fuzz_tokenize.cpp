// libFuzzer target: encode and decode arbitrary bytes with real tokenizers, loaded once:
// tests/fixtures/models/tiny-qwen2.gguf (byte-level BPE, qwen2 pre-tokenizer) and, when
// ../shared/data is present, stories260K.gguf (SPM), ggml-vocab-gpt-2.gguf (BPE, gpt-2)
// and ggml-vocab-llama-spm.gguf (SPM with byte fallback).
// Byte 0: tokenizer (bits 0-2), add_special (bit 3), parse_special (bit 4), render_special
// (bit 5), and bit 6 set: the rest is a list of u16 LE token ids to decode instead of text.
// Invalid UTF-8 must give kvs::Error; anything else crashes.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "models/formats/gguf_reader.h"
#include "models/tokenizers/tokenizer.h"
#include "models/tokenizers/utf8.h"

namespace {

std::vector<std::unique_ptr<kvs::Tokenizer>>& tokenizers() {
  static std::vector<std::unique_ptr<kvs::Tokenizer>> toks = [] {
    std::vector<std::unique_ptr<kvs::Tokenizer>> v;
    const std::string src = KVS_SOURCE_DIR;
    for (const std::string& path : {src + "/tests/fixtures/models/tiny-qwen2.gguf",
                                    src + "/../shared/data/models/stories260K.gguf",
                                    src + "/../shared/data/vocab/ggml-vocab-gpt-2.gguf",
                                    src + "/../shared/data/vocab/ggml-vocab-llama-spm.gguf"}) {
      if (!std::filesystem::exists(path)) {
        std::fprintf(stderr, "fuzz_tokenize: %s absent, skipped\n", path.c_str());
        continue;
      }
      auto ws = kvs::open_gguf(path);  // these must load: a kvs::Error here aborts
      v.push_back(kvs::load_tokenizer(*ws));
    }
    if (v.empty()) std::abort();
    return v;
  }();
  return toks;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  (void)tokenizers();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  auto& toks = tokenizers();
  const uint8_t flags = data[0];
  const kvs::Tokenizer& tok = *toks[(flags & 7) % toks.size()];
  const bool add_special = flags & 8, parse_special = flags & 16, render = flags & 32;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1), size - 1);

  std::vector<int32_t> ids;
  if (flags & 64) {
    for (size_t i = 0; i + 1 < rest.size(); i += 2) {
      const uint32_t v = static_cast<uint8_t>(rest[i]) | static_cast<uint8_t>(rest[i + 1]) << 8;
      ids.push_back(static_cast<int32_t>(v % static_cast<uint32_t>(tok.n_vocab())));
    }
  } else {
    const bool valid = kvs::utf8::find_invalid(rest) == std::string::npos;
    try {
      ids = tok.encode(rest, add_special, parse_special);
    } catch (const kvs::Error&) {
      if (valid) kvs::fuzz::violated("kvs::Error on valid UTF-8", std::string(rest));
      return 0;
    }
    if (!valid) kvs::fuzz::violated("invalid UTF-8 accepted", std::string(rest));
    for (int32_t id : ids)
      if (id < 0 || id >= tok.n_vocab()) kvs::fuzz::violated("encode id", std::to_string(id));
  }
  (void)tok.decode(ids, render);
  kvs::StreamingDetokenizer sd(tok, render);
  std::string streamed;
  for (int32_t id : ids) streamed += sd.push(id);
  streamed += sd.flush();
  if (kvs::utf8::find_invalid(streamed) != std::string::npos)
    kvs::fuzz::violated("streaming detokenizer emitted invalid UTF-8", streamed);
  return 0;
}
