// libFuzzer target: tokenizer vocabularies. The first byte picks the form:
//  - even: a GGUF vocab (tokenizer.ggml.* keys: model, pre, tokens, scores, token_type,
//    merges, special ids and flags) built from the input with GgufWriter, then read back
//    with open_gguf + load_tokenizer (SPM "llama" or byte-level BPE "gpt2");
//  - odd: the rest of the input is a SentencePiece tokenizer.model (protobuf), loaded
//    through load_hf_tokenizer (our wire-format parser, then the SentencePiece library).
// A tokenizer that loads then encodes the rest of the input and decodes the ids.
// kvs::Error is the expected outcome of bad input; anything else crashes.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_util.h"
#include "models/formats/gguf_reader.h"
#include "models/formats/gguf_writer.h"
#include "models/formats/metadata.h"
#include "models/tokenizers/hf_tokenizer.h"
#include "models/tokenizers/tokenizer.h"
#include "models/tokenizers/utf8.h"

namespace {

void exercise(const kvs::Tokenizer& tok, std::string_view text) {
  for (int mode = 0; mode < 3; ++mode) {
    std::vector<int32_t> ids;
    try {
      ids = tok.encode(text, mode >= 1, mode == 2);
    } catch (const kvs::Error&) {
      return;  // invalid UTF-8
    }
    for (int32_t id : ids)
      if (id < 0 || id >= tok.n_vocab()) kvs::fuzz::violated("encode id", std::to_string(id));
    (void)tok.decode(ids, mode == 2);
    kvs::StreamingDetokenizer sd(tok, mode == 2);
    std::string streamed;
    for (int32_t id : ids) streamed += sd.push(id);
    streamed += sd.flush();
    if (kvs::utf8::find_invalid(streamed) != std::string::npos)
      kvs::fuzz::violated("streaming detokenizer emitted invalid UTF-8", streamed);
  }
}

std::string pick(FuzzedDataProvider& p, std::initializer_list<const char*> options) {
  const size_t i = p.ConsumeIntegralInRange<size_t>(0, options.size());
  if (i == options.size()) return p.ConsumeRandomLengthString(12);
  return *(options.begin() + i);
}

void gguf_vocab(FuzzedDataProvider& p) {
  kvs::GgufWriter w;
  const std::string model = pick(p, {"llama", "gpt2", "llama", "gpt2"});
  w.add_string("general.architecture", "llama");
  if (p.ConsumeBool()) w.add_string("tokenizer.ggml.model", model);
  if (p.ConsumeBool())
    w.add_string("tokenizer.ggml.pre",
                 pick(p, {"default", "llama3", "llama-bpe", "qwen2", "gpt-2", "deepseek-llm",
                          "falcon", "starcoder", "smollm", "tekken"}));
  const size_t n = p.ConsumeIntegralInRange<size_t>(0, 300);
  std::vector<std::string> tokens;
  std::vector<int64_t> types;
  std::vector<double> scores;
  for (size_t i = 0; i < n && p.remaining_bytes() > 0; ++i) {
    const int kind = p.ConsumeIntegralInRange(0, 9);
    if (kind == 0) {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "<0x%02X>", p.ConsumeIntegral<uint8_t>());
      tokens.emplace_back(buf);
      types.push_back(6);
    } else {
      tokens.push_back(p.ConsumeRandomLengthString(10));
      types.push_back(kind == 1 ? p.ConsumeIntegralInRange(-1, 8) : kind == 2 ? 3 : 1);
    }
    scores.push_back(p.ConsumeFloatingPoint<float>());
  }
  if (p.ConsumeBool()) w.add_strings("tokenizer.ggml.tokens", tokens);
  if (p.ConsumeBool()) {
    if (p.ConsumeBool() && !types.empty()) types.pop_back();  // length mismatch
    w.add_ints("tokenizer.ggml.token_type", types, kvs::MetaType::I32);
  }
  if (p.ConsumeBool()) w.add_floats("tokenizer.ggml.scores", scores, kvs::MetaType::F32);
  if (model == "gpt2" || p.ConsumeBool()) {
    std::vector<std::string> merges;
    const size_t m = p.ConsumeIntegralInRange<size_t>(0, 200);
    for (size_t i = 0; i < m && p.remaining_bytes() > 0; ++i) {
      if (!tokens.empty() && p.ConsumeIntegralInRange(0, 3) != 0) {
        const auto& a = tokens[p.ConsumeIntegralInRange<size_t>(0, tokens.size() - 1)];
        const auto& b = tokens[p.ConsumeIntegralInRange<size_t>(0, tokens.size() - 1)];
        merges.push_back(a + " " + b);
      } else {
        merges.push_back(p.ConsumeRandomLengthString(12));
      }
    }
    w.add_strings("tokenizer.ggml.merges", merges);
  }
  for (const char* key : {"tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id",
                          "tokenizer.ggml.unknown_token_id", "tokenizer.ggml.padding_token_id",
                          "tokenizer.ggml.eot_token_id"}) {
    if (p.ConsumeBool())
      w.add_u32(key, static_cast<uint32_t>(
                         p.ConsumeIntegralInRange<int64_t>(-1, static_cast<int64_t>(n) + 1)));
  }
  for (const char* key : {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token",
                          "tokenizer.ggml.add_space_prefix"}) {
    if (p.ConsumeBool()) w.add(key, kvs::MetaValue::of_bool(p.ConsumeBool()));
  }
  const std::string path = kvs::fuzz::scratch().file("vocab.gguf");
  w.write(path);
  const std::string text = p.ConsumeRemainingBytesAsString();
  std::unique_ptr<kvs::Tokenizer> tok;
  try {
    auto ws = kvs::open_gguf(path);
    tok = kvs::load_tokenizer(*ws);
  } catch (const kvs::Error&) {
    return;
  }
  exercise(*tok, text);
}

void sp_model(std::string_view bytes) {
  const auto& dir = kvs::fuzz::scratch();
  // The text to encode rides after the last 0xFF 0x00 pair (if any); the rest is the model.
  std::string_view text = "Hello world! <s>\n a\xC3\xA9 123";
  const size_t cut = bytes.rfind(std::string_view("\xFF\x00", 2));
  if (cut != std::string_view::npos) {
    text = bytes.substr(cut + 2);
    bytes = bytes.substr(0, cut);
  }
  dir.write("tokenizer.model", bytes);
  static const kvs::MetaMap meta("fuzz");
  std::unique_ptr<kvs::Tokenizer> tok;
  try {
    tok = kvs::load_hf_tokenizer(dir.path(), meta);
  } catch (const kvs::Error&) {
    return;
  }
  exercise(*tok, text);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  if (data[0] & 1) {
    sp_model(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
  } else {
    FuzzedDataProvider p(data + 1, size - 1);
    gguf_vocab(p);
  }
  return 0;
}
