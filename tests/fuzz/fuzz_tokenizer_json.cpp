// libFuzzer target: HF tokenizer files. Input layout:
//   u32 LE n | n bytes of tokenizer_config.json | the rest: tokenizer.json
// (n is clamped; n == 0xFFFFFFFF: no tokenizer_config.json). load_hf_tokenizer reads the
// directory; a tokenizer that loads then encodes and decodes a few strings.
// kvs::Error is the expected outcome of bad input; anything else crashes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fuzz_util.h"
#include "models/formats/metadata.h"
#include "models/tokenizers/hf_tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& dir = kvs::fuzz::scratch();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  uint32_t n = 0;
  if (in.size() >= 4) {
    std::memcpy(&n, in.data(), 4);
    in.remove_prefix(4);
  }
  if (n == 0xFFFFFFFFu) {
    dir.remove("tokenizer_config.json");
  } else {
    const size_t cfg = std::min<size_t>(n, in.size());
    dir.write("tokenizer_config.json", in.substr(0, cfg));
    in.remove_prefix(cfg);
  }
  dir.write("tokenizer.json", in);

  static const kvs::MetaMap meta("fuzz");
  try {
    auto tok = kvs::load_hf_tokenizer(dir.path(), meta);
    for (const char* text : {"Hello world!", " <|im_start|>user\n hi<|im_end|>", "a  b\t\n123",
                             "\xE4\xBD\xA0\xE5\xA5\xBD \xF0\x9F\x98\x80"}) {
      for (bool special : {false, true}) {
        const auto ids = tok->encode(text, special, special);
        for (int32_t id : ids) {
          if (id < 0 || id >= tok->n_vocab()) kvs::fuzz::violated("encode id", std::to_string(id));
        }
        (void)tok->decode(ids, special);
      }
    }
    const int32_t nv = tok->n_vocab();
    for (int32_t id = 0; id < nv && id < 64; ++id) {
      (void)tok->piece(id);
      (void)tok->token_text(id, true);
    }
  } catch (const kvs::Error&) {
  }
  return 0;
}
