// libFuzzer target: an HF model directory. Input layout:
//   u32 LE n | n bytes of config.json | the rest: model.safetensors
// (n is clamped to what is there; n == 0xFFFFFFFF: no config.json at all).
// The .safetensors file is opened on its own (SafetensorsFile), then the directory as a
// model (open_safetensors_model: config.json translation, HF -> GGUF names and shapes).
// kvs::Error is the expected outcome of bad input; anything else crashes.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

#include "fuzz_util.h"
#include "models/formats/safetensors_file.h"
#include "models/formats/safetensors_model.h"
#include "models/model/arch.h"
#include "models/model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto& dir = kvs::fuzz::scratch();
  std::string_view in(reinterpret_cast<const char*>(data), size);
  uint32_t n = 0;
  if (in.size() >= 4) {
    std::memcpy(&n, in.data(), 4);
    in.remove_prefix(4);
  }
  if (n == 0xFFFFFFFFu) {
    dir.remove("config.json");
  } else {
    const size_t cfg = std::min<size_t>(n, in.size());
    dir.write("config.json", in.substr(0, cfg));
    in.remove_prefix(cfg);
  }
  const std::string st = dir.write("model.safetensors", in);

  try {
    kvs::SafetensorsFile f(st);
    for (const auto& t : f.tensors()) {
      if (t.end < t.begin || t.end > f.file_size() - f.data_start())
        kvs::fuzz::violated("safetensors tensor outside the buffer", t.name);
      if (t.nbytes() > 0) {
        volatile uint8_t sink = t.data[0];
        sink = t.data[t.nbytes() - 1];
        (void)sink;
      }
    }
    (void)f.find("model.embed_tokens.weight");
  } catch (const kvs::Error&) {
  }

  try {
    auto ws = kvs::open_safetensors_model(dir.path());
    kvs::fuzz::check_weights(*ws);
    for (const auto& [key, v] : ws->metadata().entries()) (void)v.to_display();
    try {
      (void)kvs::read_model_config(ws->metadata());
    } catch (const kvs::Error&) {
    }
  } catch (const kvs::Error&) {
  }
  return 0;
}
