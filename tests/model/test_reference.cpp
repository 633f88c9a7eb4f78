// Real models against llama.cpp fixtures (tools/gen_reference_logits.py): next-token
// log-probabilities over a real text, tokenization of that text, greedy continuations.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/session.h"
#include "models/convert/requantize.h"
#include "support/paths.h"

namespace kvs {
namespace {

struct Case {
  const char* fixture;
  std::string model;
  std::string derived_from;  // F32 variants are made from the shipped file when absent
  // On quantized files llama.cpp rounds every activation to Q8 before each matmul, which
  // turns any one-ulp difference into a different rounding downstream, so agreement needs
  // bit-identical arithmetic: the "ggml" attention backend and the matmul kernels llama.cpp
  // picks per batch (dot_kernel in kernels/cpu/quant_dot.h). Every case is held to the
  // issue's bar (docs/correctness.md).
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.fixture;
}

nlohmann::json load_fixture(const std::string& name) {
  std::ifstream f(test::fixture("reference/" + name + ".json"));
  return nlohmann::json::parse(f);
}

std::string read_text(const nlohmann::json& fx) {
  std::ifstream f(test::shared_data(fx["text"].get<std::string>()), std::ios::binary);
  std::string s((std::istreambuf_iterator<char>(f)), {});
  return s.substr(fx["text_offset"].get<size_t>(), fx["text_chars"].get<size_t>());
}

// kvsieve's next-token log-probabilities over the fixture's tokens (prefill in chunks of 128,
// so chunk boundaries are exercised) against llama.cpp's top-5.
struct Agreement {
  double top1 = 0.0;      // share of positions with the same argmax
  double mean_abs = 0.0;  // mean |dlogp| over llama.cpp's top-5 tokens
  int64_t n = 0;
};

Agreement agreement_with_fixture(const Engine& engine, const nlohmann::json& fx) {
  const auto tokens = fx["tokens"].get<std::vector<int32_t>>();
  const auto top_ids = fx["top_ids"].get<std::vector<std::vector<int32_t>>>();
  const auto top_lp = fx["top_logprobs"].get<std::vector<std::vector<double>>>();
  SessionOptions so;
  so.n_ctx = static_cast<int>(tokens.size()) + 16;
  so.n_batch = 128;
  Session s(engine, so);
  Agreement a;
  a.n = static_cast<int64_t>(tokens.size());
  const std::vector<float> logits = s.eval(tokens, a.n);  // [n][n_vocab]
  const int V = engine.config().n_vocab;
  int64_t same = 0, n_diff = 0;
  double diff = 0.0;
  for (int64_t i = 0; i < a.n; ++i) {
    const float* row = logits.data() + i * V;
    const int32_t arg = static_cast<int32_t>(std::max_element(row, row + V) - row);
    double sum = 0.0;
    for (int j = 0; j < V; ++j) sum += std::exp(static_cast<double>(row[j]) - row[arg]);
    const double lse = row[arg] + std::log(sum);
    same += arg == top_ids[i][0];
    for (size_t k = 0; k < top_ids[i].size(); ++k, ++n_diff)
      diff += std::fabs((row[top_ids[i][k]] - lse) - top_lp[i][k]);
  }
  a.top1 = static_cast<double>(same) / a.n;
  a.mean_abs = diff / n_diff;
  return a;
}

class ReferenceTest : public ::testing::TestWithParam<Case> {
 protected:
  void SetUp() override {
    const Case& c = GetParam();
    if (!c.derived_from.empty() && !test::exists(c.model)) {
      KVS_REQUIRE_FILE(c.derived_from);
      std::filesystem::create_directories(std::filesystem::path(c.model).parent_path());
      RequantizeOptions o;
      o.type = DType::F32;
      requantize_gguf(c.derived_from, c.model, o);
    }
    KVS_REQUIRE_FILE(c.model);
    fx_ = load_fixture(c.fixture);
    EngineOptions eo;
    eo.threads = 1;
    // The backend that reproduces llama.cpp's attention arithmetic (the fixtures' oracle).
    eo.attention = "ggml";
    engine_ = Engine::load(c.model, eo);
  }
  nlohmann::json fx_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(ReferenceTest, NextTokenLogProbsMatchLlamaCpp) {
  const Agreement a = agreement_with_fixture(*engine_, fx_);
  const double agree = a.top1, mad = a.mean_abs;
  std::printf("[ %s ] top-1 agreement %.4f over %lld positions, mean |dlogp| %.5f\n",
              GetParam().fixture, agree, static_cast<long long>(a.n), mad);
  EXPECT_GE(agree, 0.99);
  EXPECT_LT(mad, 0.02);
}

TEST_P(ReferenceTest, TokenizationMatchesLlamaCpp) {
  const auto tokens = fx_["tokens"].get<std::vector<int32_t>>();
  KVS_REQUIRE_FILE(test::shared_data(fx_["text"].get<std::string>()));
  const std::string text = read_text(fx_);
  auto ids = engine_->tokenizer().encode(text, true, false);
  ASSERT_GE(ids.size(), tokens.size());
  ids.resize(tokens.size());
  EXPECT_EQ(ids, tokens);
}

TEST_P(ReferenceTest, GreedyContinuationsMatchLlamaCpp) {
  for (const auto& g : fx_["greedy"]) {
    const auto prompt = g["prompt_tokens"].get<std::vector<int32_t>>();
    const auto want = g["tokens"].get<std::vector<int32_t>>();
    EXPECT_EQ(engine_->tokenizer().encode(g["prompt"].get<std::string>(), true, false), prompt)
        << "prompt tokenization: " << g["prompt"];
    Session s(*engine_, SessionOptions{});
    GenerateOptions go;
    go.n_predict = static_cast<int>(want.size());
    go.sampling.temperature = 0.0f;
    const GenerateStats st = generate(s, prompt, go, nullptr);
    EXPECT_EQ(st.tokens, want) << "prompt: " << g["prompt"] << "\nkvsieve:   " << st.text
                               << "\nllama.cpp: " << g["text"].get<std::string>();
  }
}

INSTANTIATE_TEST_SUITE_P(
    Models, ReferenceTest,
    ::testing::Values(
        Case{"stories260K", KVS_STORIES, ""}, Case{"smollm2", KVS_SMOLLM2, ""},
        Case{"gemma3", KVS_GEMMA3, ""},
        Case{"smollm2-f32", test::model_cache("derived/SmolLM2-135M-Instruct.F32.gguf"),
             KVS_SMOLLM2},
        Case{"gemma3-f32", test::model_cache("derived/gemma-3-270m.F32.gguf"), KVS_GEMMA3},
        Case{"tiny-qwen2", test::fixture("models/tiny-qwen2.gguf"), ""},
        Case{"tiny-qwen3", test::fixture("models/tiny-qwen3.gguf"), ""}),
    [](const auto& info) {
      std::string n = info.param.fixture;
      for (char& ch : n)
        if (ch == '-') ch = '_';
      return n;
    });

// The default backend (flash: tiled online softmax) rounds the attention differently from
// llama.cpp; on a quantized file that is amplified by the Q8 activations, so it is held only
// to the loose bar. The figure is what a user of the default gets (docs/correctness.md).
TEST(ReferenceFlash, SmolLM2DefaultBackendStaysClose) {
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  EngineOptions eo;
  eo.threads = 1;
  eo.attention = "flash";
  const auto engine = Engine::load(KVS_SMOLLM2, eo);
  const Agreement a = agreement_with_fixture(*engine, load_fixture("smollm2"));
  const double agree = a.top1, mad = a.mean_abs;
  std::printf("[ smollm2, flash ] top-1 agreement %.4f, mean |dlogp| %.5f\n", agree, mad);
  EXPECT_GE(agree, 0.93);
  EXPECT_LT(mad, 0.12);
}

TEST(Stories260K, GreedyOnceUponATime) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  EngineOptions eo;
  eo.threads = 1;
  auto engine = Engine::load(KVS_STORIES, eo);
  Session s(*engine, SessionOptions{});
  GenerateOptions go;
  go.n_predict = 40;
  go.sampling.temperature = 0.0f;
  const auto prompt = engine->tokenizer().encode("Once upon a time", true, false);
  const GenerateStats st = generate(s, prompt, go, nullptr);
  const std::string want =
      ", there was a little girl named Lily. She loved to play outside in the park. One day, she "
      "saw a "
      "big, red ball.";
  EXPECT_EQ(st.text.substr(0, want.size()), want);
}

}  // namespace
}  // namespace kvs
