// kvsieve's cache policies against NVIDIA kvpress (tools/gen_kvpress_fixtures.py, semantics in
// docs/kvpress-parity.md): on SmolLM2-135M (the HF directory `kvsieve convert --dtype f32`
// writes, which transformers ran in float32) and a 600-token prompt, each press's prefill
// compression kept some token positions per (layer, KV head). The fixture's cache plan must make
// kvsieve keep the same ones: agreement = |kvsieve ∩ kvpress| / |kvpress|, averaged over heads,
// at least 0.99. A fixture whose policy kvsieve does not register is skipped by name; one with a
// "known_gap" (kvsieve cannot express the press yet) is skipped while it stays below the bar.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cache/plan.h"
#include "cache/policy.h"
#include "engine/engine.h"
#include "engine/session.h"
#include "models/convert/convert.h"
#include "support/paths.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr double kMinAgreement = 0.99;

std::string fixture_dir() {
  return test::fixture("kvpress");
}

json load_json(const std::string& path) {
  std::ifstream f(path);
  return json::parse(f);
}

// The HF directory both engines load; converted from the shipped GGUF when absent. The
// conversion goes to a private directory renamed into place, so concurrent tests never see
// half a model.
std::string hf_model_dir() {
  const std::string dir = test::model_cache("derived/smollm2-hf");
  if (test::exists(dir + "/model.safetensors") || !test::exists(KVS_SMOLLM2)) return dir;
  const std::string tmp = dir + ".tmp." + std::to_string(::getpid());
  fs::create_directories(fs::path(dir).parent_path());
  fs::remove_all(tmp);
  convert_gguf_to_hf(KVS_SMOLLM2, tmp, DType::F32);
  std::error_code ec;
  fs::rename(tmp, dir, ec);
  if (ec) fs::remove_all(tmp);  // another process won the race
  return dir;
}

const Engine& engine() {
  static std::once_flag once;
  static std::unique_ptr<Engine> e;
  std::call_once(once, [] {
    EngineOptions eo;
    eo.threads = 0;
    e = Engine::load(hf_model_dir(), eo);
  });
  return *e;
}

// Hex bitmask (character j holds positions 4j..4j+3, bit k = position 4j+k) -> positions.
std::vector<int32_t> decode_mask(const std::string& hex) {
  std::vector<int32_t> out;
  for (size_t j = 0; j < hex.size(); ++j) {
    const char c = hex[j];
    const int v = c <= '9' ? c - '0' : c - 'a' + 10;
    for (int k = 0; k < 4; ++k)
      if (v >> k & 1) out.push_back(static_cast<int32_t>(4 * j + k));
  }
  return out;
}

// A relative "calibration" path in a fixture's plan names a file beside the fixture.
CachePlan fixture_plan(json plan, const std::string& where) {
  if (plan.contains("calibration")) {
    const fs::path p = plan["calibration"].get<std::string>();
    if (p.is_relative()) plan["calibration"] = (fs::path(fixture_dir()) / p).string();
  }
  return parse_cache_plan(plan, where);
}

struct Agreement {
  double mean = 0.0, worst = 1.0;
  int worst_layer = 0, worst_head = 0;
};

Agreement run_plan(const json& fx, const CachePlan& plan) {
  const Engine& e = engine();
  const auto ids = fx["token_ids"].get<std::vector<int32_t>>();
  SessionOptions so;
  so.n_ctx = static_cast<int>(ids.size()) + 16;
  so.plan = std::make_shared<const CachePlan>(plan);
  Session s(e, so);
  s.eval(ids, 1);
  const KVCache& cache = s.cache();
  const int L = fx["n_layer"], H = fx["n_head_kv"];
  Agreement a;
  for (int l = 0; l < L; ++l)
    for (int h = 0; h < H; ++h) {
      const auto want = decode_mask(fx["kept"][l][h].get<std::string>());
      std::vector<int32_t> got(cache.positions(l, h), cache.positions(l, h) + cache.len(l, h));
      std::sort(got.begin(), got.end());
      std::vector<int32_t> both;
      std::set_intersection(want.begin(), want.end(), got.begin(), got.end(),
                            std::back_inserter(both));
      const double r =
          want.empty() ? 1.0 : static_cast<double>(both.size()) / static_cast<double>(want.size());
      a.mean += r;
      if (r < a.worst) {
        a.worst = r;
        a.worst_layer = l;
        a.worst_head = h;
      }
    }
  a.mean /= L * H;
  return a;
}

std::vector<std::string> fixture_names() {
  std::vector<std::string> names;
  std::error_code ec;
  for (const auto& ent : fs::directory_iterator(fixture_dir(), ec)) {
    const std::string stem = ent.path().stem().string();
    if (ent.path().extension() == ".json" && stem != "logits" && stem != "qfilter_calibration")
      names.push_back(stem);
  }
  std::sort(names.begin(), names.end());
  if (names.empty()) names.push_back("none");  // keeps the suite listed; the test skips
  return names;
}

// Same weights, same math: transformers' logits (top 16 at a few positions) and kvsieve's.
TEST(KvpressAgreement, ModelLogitsMatchTransformers) {
  KVS_REQUIRE_FILE(fixture_dir() + "/logits.json");
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  const json fx = load_json(fixture_dir() + "/logits.json");
  const Engine& e = engine();
  const auto ids = fx["token_ids"].get<std::vector<int32_t>>();
  Session s(e, SessionOptions{});
  const auto logits = s.eval(ids, static_cast<int64_t>(ids.size()));
  const int V = e.config().n_vocab;
  // KVS_KVPRESS_DUMP_LOGITS=FILE writes every logit (f32, [tokens][vocab]) for a full-vocabulary
  // comparison against gen_kvpress_fixtures.py --dump-logits.
  if (const char* dump = std::getenv("KVS_KVPRESS_DUMP_LOGITS")) {
    std::ofstream f(dump, std::ios::binary);
    f.write(reinterpret_cast<const char*>(logits.data()),
            static_cast<std::streamsize>(logits.size() * sizeof(float)));
  }
  double max_diff = 0.0;
  int argmax_same = 0;
  for (const auto& row : fx["top"]) {
    const int p = row["pos"];
    const float* lp = logits.data() + static_cast<size_t>(p) * V;
    const auto tid = row["ids"].get<std::vector<int>>();
    const auto tv = row["logits"].get<std::vector<double>>();
    for (size_t i = 0; i < tid.size(); ++i)
      max_diff = std::max(max_diff, std::fabs(lp[tid[i]] - tv[i]));
    argmax_same += std::max_element(lp, lp + V) - lp == tid[0];
  }
  std::printf(
      "[kvpress] logits: max |kvsieve - transformers| over top-16 at %zu positions = %.2e\n",
      fx["top"].size(), max_diff);
  EXPECT_LT(max_diff, 2e-3);
  EXPECT_EQ(argmax_same, static_cast<int>(fx["top"].size()));
}

class KvpressAgreementTest : public ::testing::TestWithParam<std::string> {};

TEST_P(KvpressAgreementTest, KeptSlotsMatchKvpress) {
  const std::string path = fixture_dir() + "/" + GetParam() + ".json";
  KVS_REQUIRE_FILE(path);
  KVS_REQUIRE_FILE(KVS_SMOLLM2);
  const json fx = load_json(path);
  const std::string policy = fx["plan"]["policy"];
  const auto reg = policies();
  if (std::none_of(reg.begin(), reg.end(), [&](const PolicyInfo* p) { return p->name == policy; }))
    GTEST_SKIP() << "kvsieve has no policy '" << policy << "' yet (kvpress "
                 << fx["press"].get<std::string>() << ")";
  ASSERT_EQ(engine().config().n_layer, fx["n_layer"].get<int>());
  ASSERT_EQ(engine().config().n_head_kv, fx["n_head_kv"].get<int>());

  for (const auto& v : fx.value("variants", json::array())) {
    const Agreement a = run_plan(fx, fixture_plan(v["plan"], path + ": " + v["name"].dump()));
    std::printf("[kvpress] %-20s variant %-28s agreement %.4f (worst %.3f at layer %d head %d)\n",
                GetParam().c_str(), v["name"].get<std::string>().c_str(), a.mean, a.worst,
                a.worst_layer, a.worst_head);
  }
  const Agreement a = run_plan(fx, fixture_plan(fx["plan"], path));
  std::printf("[kvpress] %-20s %-37s agreement %.4f (worst %.3f at layer %d head %d)\n",
              GetParam().c_str(), fx["press"].get<std::string>().c_str(), a.mean, a.worst,
              a.worst_layer, a.worst_head);
  std::fflush(stdout);
  if (fx.contains("known_gap") && a.mean < kMinAgreement)
    GTEST_SKIP() << "known gap, agreement " << a.mean << ": " << fx["known_gap"].get<std::string>();
  EXPECT_GE(a.mean, kMinAgreement)
      << "kvsieve plan " << fx["plan"].dump() << " keeps other slots than kvpress "
      << fx["press"].get<std::string>();
}

INSTANTIATE_TEST_SUITE_P(Presses, KvpressAgreementTest, ::testing::ValuesIn(fixture_names()),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace kvs
