// Real models against llama.cpp fixtures (tools/gen_reference_logits.py): next-token
// log-probabilities over a real text, tokenization of that text, greedy continuations.
#include <gtest/gtest.h>

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
  // On quantized files llama.cpp rounds every activation to Q8 before each matmul; that
  // noise alone moves its logits by mean |dlogp| 0.064 (SmolLM2) / 0.079 (Gemma 3) from its
  // own F32 run of the same weights (tests/fixtures/reference/*-f32.json), so there the
  // comparison can only be as tight as that noise and greedy runs diverge after a few
  // dozen tokens. The F32 variants compute the same math exactly and meet the strict bar.
  bool quantized = false;
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
    engine_ = Engine::load(c.model, eo);
  }
  nlohmann::json fx_;
  std::unique_ptr<Engine> engine_;
};

TEST_P(ReferenceTest, NextTokenLogProbsMatchLlamaCpp) {
  const auto tokens = fx_["tokens"].get<std::vector<int32_t>>();
  const auto top_ids = fx_["top_ids"].get<std::vector<std::vector<int32_t>>>();
  const auto top_lp = fx_["top_logprobs"].get<std::vector<std::vector<double>>>();
  SessionOptions so;
  so.n_ctx = static_cast<int>(tokens.size()) + 16;
  so.n_batch = 128;  // several prefill chunks, so chunk boundaries are exercised
  Session s(*engine_, so);
  const int64_t n = static_cast<int64_t>(tokens.size());
  const std::vector<float> logits = s.eval(tokens, n);
  const int V = engine_->config().n_vocab;
  int64_t top1_same = 0;
  double abs_diff = 0.0;
  int64_t n_diff = 0;
  for (int64_t i = 0; i < n; ++i) {
    const float* row = logits.data() + i * V;
    double mx = -INFINITY;
    int32_t arg = 0;
    for (int j = 0; j < V; ++j)
      if (row[j] > mx) {
        mx = row[j];
        arg = j;
      }
    double sum = 0.0;
    for (int j = 0; j < V; ++j) sum += std::exp(row[j] - mx);
    const double lse = mx + std::log(sum);
    if (arg == top_ids[i][0]) ++top1_same;
    for (size_t k = 0; k < top_ids[i].size(); ++k) {
      abs_diff += std::fabs((row[top_ids[i][k]] - lse) - top_lp[i][k]);
      ++n_diff;
    }
  }
  const double agree = static_cast<double>(top1_same) / n;
  const double mad = abs_diff / n_diff;
  std::printf("[ %s ] top-1 agreement %.4f over %lld positions, mean |dlogp| %.5f\n",
              GetParam().fixture, agree, static_cast<long long>(n), mad);
  if (GetParam().quantized) {
    EXPECT_GE(agree, 0.93);
    EXPECT_LT(mad, 0.12);
  } else {
    EXPECT_GE(agree, 0.99);
    EXPECT_LT(mad, 0.02);
  }
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
  if (GetParam().quantized)
    GTEST_SKIP() << "greedy identity is checked on the F32 variant (see Case::quantized)";
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
        Case{"stories260K", KVS_STORIES, ""}, Case{"smollm2", KVS_SMOLLM2, "", true},
        Case{"gemma3", KVS_GEMMA3, "", true},
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
