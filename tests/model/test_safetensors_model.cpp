// Models loaded from HF safetensors directories (written by `kvsieve convert`) run exactly
// like the GGUF files they came from.
#include <gtest/gtest.h>

#include <cmath>

#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/session.h"
#include "models/convert/convert.h"
#include "support/paths.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

using test::TempDir;

std::unique_ptr<Engine> load(const std::string& path) {
  EngineOptions eo;
  eo.threads = 1;
  return Engine::load(path, eo);
}

std::vector<float> logits_of(const Engine& e, const std::vector<int32_t>& toks) {
  Session s(e, SessionOptions{});
  return s.eval(toks, static_cast<int64_t>(toks.size()));
}

TEST(SafetensorsModel, Stories260KConvertedGeneratesTheSameText) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  TempDir dir;
  convert_gguf_to_hf(KVS_STORIES, dir / "hf", DType::F32);
  auto gguf = load(KVS_STORIES);
  auto hf = load(dir / "hf");
  EXPECT_EQ(hf->weights().format(), "safetensors");
  EXPECT_TRUE(hf->config().rope_neox);  // HF Q/K rows are not permuted
  const auto prompt = hf->tokenizer().encode("Once upon a time", true, false);
  EXPECT_EQ(prompt, gguf->tokenizer().encode("Once upon a time", true, false));
  Session s(*hf, SessionOptions{});
  GenerateOptions go;
  go.n_predict = 40;
  go.sampling.temperature = 0.0f;
  const GenerateStats st = generate(s, prompt, go, nullptr);
  const std::string want =
      ", there was a little girl named Lily. She loved to play outside in the park. One day, she "
      "saw a big, red ball.";
  EXPECT_EQ(st.text.substr(0, want.size()), want);
  // Same math, other rotation layout: logits agree to float rounding.
  const auto a = logits_of(*gguf, prompt), b = logits_of(*hf, prompt);
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], 1e-4) << i;
}

// Gemma 3 from safetensors: norms come back as (1 + w), sliding-window layout from config.json.
TEST(SafetensorsModel, Gemma3ConvertedMatchesGguf) {
  KVS_REQUIRE_FILE(KVS_GEMMA3);
  TempDir dir;
  convert_gguf_to_hf(KVS_GEMMA3, dir / "hf", DType::F32);
  auto gguf = load(KVS_GEMMA3);
  auto hf = load(dir / "hf");
  EXPECT_EQ(hf->config().sliding_window, gguf->config().sliding_window);
  EXPECT_EQ(hf->config().layer_is_swa, gguf->config().layer_is_swa);
  const std::vector<int32_t> toks =
      gguf->tokenizer().encode("The quick brown fox jumps over the lazy dog.", true, false);
  EXPECT_EQ(hf->tokenizer().encode("The quick brown fox jumps over the lazy dog.", true, false),
            toks);
  // The converted weights are the GGUF weights dequantized to F32: kvsieve computes them in
  // plain f32 while the GGUF side rounds activations to Q8, so compare the greedy choices.
  const auto a = logits_of(*gguf, toks), b = logits_of(*hf, toks);
  const int V = gguf->config().n_vocab;
  int same = 0;
  for (size_t t = 0; t < toks.size(); ++t) {
    const float* ra = a.data() + t * V;
    const float* rb = b.data() + t * V;
    same += std::max_element(ra, ra + V) - ra == std::max_element(rb, rb + V) - rb;
  }
  EXPECT_GE(same, static_cast<int>(toks.size()) - 1);
}

TEST(SafetensorsModel, SmolLM2BF16ConvertedGenerates) {
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  TempDir dir;
  convert_gguf_to_hf(KVS_SMOLLM2, dir / "hf", DType::BF16);
  auto gguf = load(KVS_SMOLLM2);
  auto hf = load(dir / "hf");
  const auto prompt = gguf->tokenizer().encode("The capital of France is", true, false);
  EXPECT_EQ(hf->tokenizer().encode("The capital of France is", true, false), prompt);
  Session s(*hf, SessionOptions{});
  GenerateOptions go;
  go.n_predict = 2;
  go.sampling.temperature = 0.0f;
  EXPECT_EQ(generate(s, prompt, go, nullptr).text, " Paris.");
}

}  // namespace
}  // namespace kvs
