// The whole model on the device against the CPU: greedy continuations identical for 64
// tokens, and prefill/decode logits close, on stories260K, SmolLM2-135M and Gemma 3 270M.
#include <algorithm>
#include <cmath>
#include <cstdlib>

#include "cuda_test_support.h"
#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/session.h"
#include "kernels/core/error.h"
#include "support/paths.h"

namespace kvs {
namespace {

std::unique_ptr<Engine> load(const std::string& path, const char* device) {
  EngineOptions eo;
  eo.threads = 4;
  eo.device = device;
  return Engine::load(path, eo);
}

std::vector<int32_t> greedy(const Engine& e, const std::string& prompt, int n) {
  SessionOptions so;
  so.n_ctx = 1024;
  so.device = e.device_model() != nullptr ? "cuda" : "cpu";
  Session s(e, so);
  EXPECT_STREQ(s.device(), so.device.c_str());
  GenerateOptions go;
  go.n_predict = n;
  go.sampling.temperature = 0.0f;
  go.ignore_eos = true;
  const auto toks = e.tokenizer().encode(prompt, true, false);
  return generate(s, toks, go, [](std::string_view) {}).tokens;
}

class CudaModelTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaModelTest, Greedy64TokensIdenticalToCpu) {
  KVS_REQUIRE_CUDA();
  KVS_REQUIRE_FILE(GetParam());
  const auto cpu = load(GetParam(), "cpu");
  const auto gpu = load(GetParam(), "cuda");
  ASSERT_NE(gpu->device_model(), nullptr);
  for (const char* prompt :
       {"Once upon a time", "The capital of France is", "def fibonacci(n):\n    "}) {
    SCOPED_TRACE(prompt);
    EXPECT_EQ(greedy(*gpu, prompt, 64), greedy(*cpu, prompt, 64));
  }
}

// Logits of a 300-token prefill (GEMM path) and of single-token steps (GEMV path): the
// top-1 token agrees and the largest difference stays small against the logits' scale.
TEST_P(CudaModelTest, PrefillAndDecodeLogitsCloseToCpu) {
  KVS_REQUIRE_CUDA();
  KVS_REQUIRE_FILE(GetParam());
  const auto cpu = load(GetParam(), "cpu");
  const auto gpu = load(GetParam(), "cuda");
  std::string text;
  for (int i = 0; i < 30; ++i) text += "The little cat sat on the warm mat and looked at the sun. ";
  const auto toks = cpu->tokenizer().encode(text, true, false);
  const int64_t n = std::min<int64_t>(300, static_cast<int64_t>(toks.size()));
  const std::span<const int32_t> all(toks.data(), static_cast<size_t>(n));
  SessionOptions sc, sg;
  sc.device = "cpu";
  sg.device = "cuda";
  sc.n_ctx = sg.n_ctx = 512;
  Session a(*cpu, sc), b(*gpu, sg);
  const int V = cpu->config().n_vocab;
  auto compare = [&](const std::vector<float>& x, const std::vector<float>& y, int64_t rows) {
    for (int64_t r = 0; r < rows; ++r) {
      const float* p = x.data() + r * V;
      const float* q = y.data() + r * V;
      EXPECT_EQ(std::max_element(p, p + V) - p, std::max_element(q, q + V) - q) << "row " << r;
      float diff = 0.0f, scale = 1.0f;
      for (int i = 0; i < V; ++i) {
        diff = std::max(diff, std::abs(p[i] - q[i]));
        scale = std::max(scale, std::abs(p[i]));
      }
      EXPECT_LT(diff / scale, 0.05f) << "row " << r;
    }
  };
  compare(a.eval(all.first(n - 4), 8), b.eval(all.first(n - 4), 8), 8);
  for (int64_t i = n - 4; i < n; ++i)
    compare(a.eval(all.subspan(i, 1), 1), b.eval(all.subspan(i, 1), 1), 1);
  // Global layers hold every token on both devices.
  for (int il = 0; il < cpu->config().n_layer; ++il)
    if (!cpu->config().is_swa(il)) {
      EXPECT_EQ(b.kv_tokens_in_layer(il), a.kv_tokens_in_layer(il));
    }
}

// Decode steps replayed from the captured CUDA graph give the eager launches' logits, bit for
// bit (the same kernels with the same arguments); KVSIEVE_CUDA_GRAPHS=0 turns the graph off.
TEST_P(CudaModelTest, DecodeGraphEqualsEagerLaunches) {
  KVS_REQUIRE_CUDA();
  KVS_REQUIRE_FILE(GetParam());
  const auto gpu = load(GetParam(), "cuda");
  const auto toks = gpu->tokenizer().encode("Once upon a time there was a tiny robot", true, false);
  auto run = [&](bool graphs) {
    if (graphs)
      unsetenv("KVSIEVE_CUDA_GRAPHS");
    else
      setenv("KVSIEVE_CUDA_GRAPHS", "0", 1);
    SessionOptions so;
    so.device = "cuda";
    so.n_ctx = 256;
    Session s(*gpu, so);
    std::vector<std::vector<float>> steps;
    steps.push_back(s.eval(toks, 1));
    int32_t next = 0;
    for (int i = 0; i < 16; ++i) {
      const std::vector<float>& l = steps.back();
      next = static_cast<int32_t>(std::max_element(l.begin(), l.end()) - l.begin());
      steps.push_back(s.eval(std::span<const int32_t>(&next, 1), 1));
    }
    return steps;
  };
  const auto eager = run(false);
  const auto graph = run(true);
  ASSERT_EQ(graph.size(), eager.size());
  for (size_t i = 0; i < graph.size(); ++i) EXPECT_EQ(graph[i], eager[i]) << "step " << i;
}

INSTANTIATE_TEST_SUITE_P(Models, CudaModelTest,
                         ::testing::Values(KVS_STORIES, KVS_SMOLLM2, KVS_GEMMA3));

TEST(CudaSession, RefusesWhatNeedsTheCpuCache) {
  KVS_REQUIRE_CUDA();
  KVS_REQUIRE_FILE(KVS_STORIES);
  const auto gpu = load(KVS_STORIES, "cuda");
  SessionOptions so;
  so.device = "cuda";
  so.plan = std::make_shared<CachePlan>(
      parse_cache_plan(nlohmann::json{{"policy", "knorm"}, {"budget", 0.5}}, "test"));
  try {
    Session s(*gpu, so);
    FAIL() << "an evicting plan on --device cuda must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cache plans that evict tokens run on the CPU"),
              std::string::npos);
  }
  // auto with an evicting plan falls back to the CPU.
  so.device = "auto";
  Session s(*gpu, so);
  EXPECT_STREQ(s.device(), "cpu");
}

// A plan that keeps every token runs on the device with the cache in its storage types: the
// same greedy tokens as the CPU session with that plan, and the same KV bytes in use.
class CudaStoragePlanTest : public ::testing::TestWithParam<std::string> {};

TEST_P(CudaStoragePlanTest, FullPlanStorageTypesMatchTheCpu) {
  KVS_REQUIRE_CUDA();
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  const auto cpu = load(KVS_SMOLLM2, "cpu");
  const auto gpu = load(KVS_SMOLLM2, "cuda");
  const auto plan = std::make_shared<CachePlan>(parse_cache_plan(
      nlohmann::json{{"policy", "full"}, {"storage", GetParam()}}, "test " + GetParam()));
  const auto toks = cpu->tokenizer().encode("The capital of France is", true, false);
  auto run = [&](const Engine& e, const char* device, size_t* kv_bytes) {
    SessionOptions so;
    so.device = device;
    so.n_ctx = 256;
    so.plan = plan;
    Session s(e, so);
    EXPECT_STREQ(s.device(), device);
    GenerateOptions go;
    go.n_predict = 32;
    go.sampling.temperature = 0.0f;
    go.ignore_eos = true;
    auto out = generate(s, toks, go, [](std::string_view) {}).tokens;
    *kv_bytes = s.kv_bytes_in_use();
    return out;
  };
  size_t cpu_bytes = 0, gpu_bytes = 0;
  EXPECT_EQ(run(*gpu, "cuda", &gpu_bytes), run(*cpu, "cpu", &cpu_bytes));
  EXPECT_EQ(gpu_bytes, cpu_bytes);
}

INSTANTIATE_TEST_SUITE_P(Storage, CudaStoragePlanTest,
                         ::testing::Values("f16", "bf16", "q8_0", "q4_0"));

}  // namespace
}  // namespace kvs
