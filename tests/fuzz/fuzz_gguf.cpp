// libFuzzer target: a GGUF file. The input is written to a scratch file, opened with
// open_gguf, and what the rest of kvsieve reads from it is read: every tensor's bounds,
// the metadata display, the model configuration and the tokenizer.
// kvs::Error is the expected outcome of bad input; anything else crashes.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz_util.h"
#include "models/formats/gguf_reader.h"
#include "models/model/arch.h"
#include "models/model/config.h"
#include "models/tokenizers/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = kvs::fuzz::scratch().write(
      "model.gguf", std::string_view(reinterpret_cast<const char*>(data), size));
  std::unique_ptr<kvs::WeightSource> ws;
  try {
    ws = kvs::open_gguf(path);
  } catch (const kvs::Error&) {
    return 0;
  }
  kvs::fuzz::check_weights(*ws);
  for (const auto& [key, v] : ws->metadata().entries()) (void)v.to_display();
  try {
    (void)kvs::read_model_config(ws->metadata());
  } catch (const kvs::Error&) {
  }
  try {
    auto tok = kvs::load_tokenizer(*ws);
    const auto ids = tok->encode("Hello world! <s> 123 \xC3\xA9", true, true);
    (void)tok->decode(ids, true);
  } catch (const kvs::Error&) {
  }
  return 0;
}
