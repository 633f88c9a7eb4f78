// Cache plans (docs/cache-plans.md): parsing, every default, overrides, storage types and
// compress modes; every malformed plan is a kvs::Error whose message names the key.
#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>

#include "cache/manager.h"
#include "cache/plan.h"
#include "kernels/core/error.h"
#include "support/scoped_env.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

using json = nlohmann::json;

CachePlan parse(const std::string& text) {
  return parse_cache_plan(json::parse(text), "inline");
}

// The kvs::Error message of `f`, or "" (and a test failure) when it throws nothing.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "no kvs::Error was thrown";
  return "";
}

bool has(const std::string& msg, const std::string& part) {
  return msg.find(part) != std::string::npos;
}

#define EXPECT_HAS(msg, part) EXPECT_TRUE(has(msg, part)) << "message: " << (msg)

std::string parse_error(const std::string& text) {
  return error_of([&] { parse(text); });
}

// 6 layers x 3 KV heads, head dims 64.
ResolvedPlan resolve(const std::string& text, int n_layer = 6, int n_kv = 3, int hd_k = 64,
                     int hd_v = 64) {
  return resolve_cache_plan(parse(text), n_layer, n_kv, hd_k, hd_v);
}

std::string resolve_error(const std::string& text, int hd_k = 64, int hd_v = 64) {
  return error_of([&] { resolve(text, 6, 3, hd_k, hd_v); });
}

CacheModelInfo model_info(int n_layer = 2, int n_kv = 2) {
  CacheModelInfo m;
  m.n_layer = n_layer;
  m.n_head = 2 * n_kv;
  m.n_head_kv = n_kv;
  m.head_dim_k = m.head_dim_v = 32;
  m.kq_scale = 0.17677669f;
  m.layer_is_swa.assign(n_layer, false);
  m.n_ctx = 1024;
  return m;
}

void build_manager(const CachePlan& plan, const CacheModelInfo& info) {
  const CacheManager m(plan, info);
}

TEST(CachePlan, SmallestPlanAndEveryDefault) {
  const CachePlan p = parse(R"({"policy": "knorm", "budget": 0.5})");
  EXPECT_EQ(p.source, "inline");
  EXPECT_EQ(p.json, json::parse(R"({"policy": "knorm", "budget": 0.5})"));
  EXPECT_EQ(p.defaults.policy, "knorm");
  EXPECT_EQ(p.defaults.params, json::object());
  EXPECT_TRUE(p.defaults.budget.is_fraction);
  EXPECT_EQ(p.defaults.budget.value, 0.5);
  EXPECT_EQ(p.defaults.sinks, 0);
  EXPECT_EQ(p.defaults.recent, 0);
  EXPECT_TRUE(p.layer_overrides.empty());
  EXPECT_TRUE(p.head_overrides.empty());
  EXPECT_EQ(p.allocator, "uniform");
  EXPECT_EQ(p.allocator_params, json::object());
  EXPECT_EQ(p.when, CompressWhen::Prefill);
  EXPECT_EQ(p.every, 1);
  EXPECT_EQ(p.margin, 16);
  EXPECT_FALSE(p.cache_positions);
  EXPECT_EQ(p.k_dtype, DType::F32);
  EXPECT_EQ(p.v_dtype, DType::F32);
  EXPECT_EQ(p.head_profile, "");
  EXPECT_LT(p.retrieval_threshold, 0.0);
  EXPECT_LT(p.retrieval_fraction, 0.0);
  EXPECT_EQ(p.seed, 0u);
  // Resolved: every head gets the defaults, every layer f32.
  const ResolvedPlan r = resolve_cache_plan(p, 3, 2, 64, 64);
  ASSERT_EQ(r.heads.size(), 6u);
  for (const HeadPlan& hp : r.heads) {
    EXPECT_EQ(hp.policy, "knorm");
    EXPECT_EQ(hp.budget.value, 0.5);
  }
  EXPECT_EQ(r.k_dtype, std::vector<DType>(3, DType::F32));
  EXPECT_EQ(r.v_dtype, std::vector<DType>(3, DType::F32));
}

TEST(CachePlan, FullNeedsNoBudgetAndKeepsEverything) {
  const CachePlan p = parse(R"({"policy": "full"})");
  EXPECT_TRUE(p.defaults.budget.is_fraction);
  EXPECT_EQ(p.defaults.budget.value, 1.0);
  EXPECT_EQ(p.defaults.budget.tokens(1234), 1234);
}

TEST(CachePlan, FractionBudgetsRoundUpAndKeepAtLeastOneToken) {
  const CachePlan p = parse(R"({"policy": "knorm", "budget": 0.5})");
  EXPECT_EQ(p.defaults.budget.tokens(100), 50);
  EXPECT_EQ(p.defaults.budget.tokens(101), 51);
  EXPECT_EQ(p.defaults.budget.tokens(0), 1);
  EXPECT_EQ(parse(R"({"policy": "knorm", "budget": 0.001})").defaults.budget.tokens(10), 1);
}

TEST(CachePlan, IntegerBudgetsAreTokenCounts) {
  for (const char* text :
       {R"({"policy": "knorm", "budget": 40})", R"({"policy": "knorm", "budget": 40.0})"}) {
    const CachePlan p = parse(text);
    EXPECT_FALSE(p.defaults.budget.is_fraction) << text;
    EXPECT_EQ(p.defaults.budget.tokens(10), 40) << text;
    EXPECT_EQ(p.defaults.budget.tokens(1000), 40) << text;
  }
  const CachePlan one = parse(R"({"policy": "knorm", "budget": 1})");
  EXPECT_FALSE(one.defaults.budget.is_fraction);
  EXPECT_EQ(one.defaults.budget.tokens(500), 1);
  const CachePlan all = parse(R"({"policy": "knorm", "budget": 1.0})");  // a fraction: all
  EXPECT_TRUE(all.defaults.budget.is_fraction);
  EXPECT_EQ(all.defaults.budget.tokens(500), 500);
}

TEST(CachePlan, SinksRecentParamsSeedAndDocumentationKeys) {
  const CachePlan p = parse(R"({"name": "x", "description": "y", "policy": "snapkv",
      "params": {"window": 8, "kernel": 3}, "budget": 64, "sinks": 4, "recent": 8,
      "seed": 7, "margin": 0})");
  EXPECT_EQ(p.defaults.policy, "snapkv");
  EXPECT_EQ(p.defaults.params, json::parse(R"({"window": 8, "kernel": 3})"));
  EXPECT_EQ(p.defaults.sinks, 4);
  EXPECT_EQ(p.defaults.recent, 8);
  EXPECT_EQ(p.seed, 7u);
  EXPECT_EQ(p.margin, 0);
}

TEST(CachePlan, LayerRangesThenHeadOverrides) {
  const ResolvedPlan r = resolve(R"({"policy": "knorm", "budget": 0.5,
      "layers": {"0-1": "full", "3": {"policy": "h2o", "budget": 64, "recent": 8}},
      "heads": {"5:2": {"budget": 0.25, "sinks": 2}, "3:1": "window", "0:0": "streaming"}})");
  EXPECT_EQ(r.n_layer, 6);
  EXPECT_EQ(r.n_head_kv, 3);
  for (int h = 0; h < 3; ++h) {
    EXPECT_EQ(r.at(1, h).policy, "full");
    EXPECT_EQ(r.at(2, h).policy, "knorm");
    EXPECT_EQ(r.at(4, h).policy, "knorm");
  }
  EXPECT_EQ(r.at(0, 0).policy, "streaming");  // a head override wins over its layer's
  EXPECT_EQ(r.at(0, 1).policy, "full");
  EXPECT_EQ(r.at(3, 0).policy, "h2o");
  EXPECT_FALSE(r.at(3, 0).budget.is_fraction);
  EXPECT_EQ(r.at(3, 0).budget.value, 64);
  EXPECT_EQ(r.at(3, 0).recent, 8);
  // A policy name only replaces the policy (and its params): the layer's budget stays.
  EXPECT_EQ(r.at(3, 1).policy, "window");
  EXPECT_EQ(r.at(3, 1).budget.value, 64);
  EXPECT_EQ(r.at(3, 1).recent, 8);
  EXPECT_EQ(r.at(5, 2).policy, "knorm");
  EXPECT_TRUE(r.at(5, 2).budget.is_fraction);
  EXPECT_EQ(r.at(5, 2).budget.value, 0.25);
  EXPECT_EQ(r.at(5, 2).sinks, 2);
  EXPECT_EQ(r.at(5, 1).budget.value, 0.5);
  EXPECT_EQ(r.at(5, 1).sinks, 0);
}

TEST(CachePlan, OverridePolicyResetsParamsUnlessGiven) {
  const ResolvedPlan r = resolve(R"({"policy": "snapkv", "params": {"window": 8}, "budget": 0.5,
      "layers": {"1": {"policy": "knorm"}, "2": {"policy": "knorm", "params": {"skip_layers": 1}},
                 "3": {"budget": 0.25}}})");
  EXPECT_EQ(r.at(0, 0).params, json::parse(R"({"window": 8})"));
  EXPECT_EQ(r.at(1, 0).params, json::object());
  EXPECT_EQ(r.at(2, 0).params, json::parse(R"({"skip_layers": 1})"));
  EXPECT_EQ(r.at(3, 0).policy, "snapkv");
  EXPECT_EQ(r.at(3, 0).params, json::parse(R"({"window": 8})"));
}

TEST(CachePlan, StorageTypes) {
  const std::pair<const char*, DType> types[] = {{"f32", DType::F32},
                                                 {"f16", DType::F16},
                                                 {"bf16", DType::BF16},
                                                 {"q8", DType::Q8_0},
                                                 {"q4", DType::Q4_0}};
  for (const auto& [name, t] : types) {
    const CachePlan p = parse(std::string(R"({"policy": "full", "storage": ")") + name + R"("})");
    EXPECT_EQ(p.k_dtype, t) << name;
    EXPECT_EQ(p.v_dtype, t) << name;
  }
  const CachePlan kv = parse(R"({"policy": "full", "storage": {"k": "q8", "v": "q4"}})");
  EXPECT_EQ(kv.k_dtype, DType::Q8_0);
  EXPECT_EQ(kv.v_dtype, DType::Q4_0);
  const CachePlan konly = parse(R"({"policy": "full", "storage": {"k": "f16"}})");
  EXPECT_EQ(konly.k_dtype, DType::F16);
  EXPECT_EQ(konly.v_dtype, DType::F32);
  // Per layer: a layer override may change the storage type of its layers only.
  const ResolvedPlan r = resolve(R"({"policy": "full", "storage": "f16",
      "layers": {"1-2": {"storage": "q8"}, "4": {"storage": {"v": "q4"}}}})");
  EXPECT_EQ(r.k_dtype, (std::vector<DType>{DType::F16, DType::Q8_0, DType::Q8_0, DType::F16,
                                           DType::F16, DType::F16}));
  EXPECT_EQ(r.v_dtype, (std::vector<DType>{DType::F16, DType::Q8_0, DType::Q8_0, DType::F16,
                                           DType::Q4_0, DType::F16}));
}

TEST(CachePlan, CompressModes) {
  EXPECT_EQ(parse(R"({"policy": "full", "compress": "prefill"})").when, CompressWhen::Prefill);
  EXPECT_EQ(parse(R"({"policy": "full", "compress": "chunk"})").when, CompressWhen::Chunk);
  EXPECT_EQ(parse(R"({"policy": "full", "compress": "overflow"})").when, CompressWhen::Overflow);
  const CachePlan d = parse(R"({"policy": "full", "compress": {"when": "decode", "every": 16}})");
  EXPECT_EQ(d.when, CompressWhen::Decode);
  EXPECT_EQ(d.every, 16);
  const CachePlan d1 = parse(R"({"policy": "full", "compress": "decode"})");
  EXPECT_EQ(d1.when, CompressWhen::Decode);
  EXPECT_EQ(d1.every, 1);
  EXPECT_EQ(parse(R"({"policy": "full", "compress": {"when": "chunk"}})").when,
            CompressWhen::Chunk);
}

TEST(CachePlan, PositionsAllocatorsAndRetrieval) {
  EXPECT_TRUE(parse(R"({"policy": "full", "positions": "cache"})").cache_positions);
  EXPECT_FALSE(parse(R"({"policy": "full", "positions": "original"})").cache_positions);
  for (const char* a : {"uniform", "pyramid", "adaptive"})
    EXPECT_EQ(parse(std::string(R"({"policy": "full", "allocator": ")") + a + R"("})").allocator,
              a);
  // The profile allocator takes its budgets from a head profile, so it needs one.
  EXPECT_EQ(
      parse(R"({"policy": "full", "allocator": "profile", "head_profile": "h.tsv"})").allocator,
      "profile");
  EXPECT_THROW(parse(R"({"policy": "full", "allocator": "profile"})"), Error);
  const CachePlan p = parse(R"({"policy": "full", "allocator": {"name": "pyramid", "beta": 10}})");
  EXPECT_EQ(p.allocator, "pyramid");
  EXPECT_EQ(p.allocator_params, json::parse(R"({"beta": 10})"));
  const CachePlan t = parse(R"({"policy": "full", "retrieval": {"threshold": 0.7}})");
  EXPECT_EQ(t.retrieval_threshold, 0.7);
  const CachePlan f = parse(R"({"policy": "full", "retrieval": {"fraction": 0.25},
                                "head_profile": "heads.tsv"})");
  EXPECT_EQ(f.retrieval_fraction, 0.25);
  EXPECT_EQ(f.head_profile, "heads.tsv");
}

TEST(CachePlan, EveryShippedPlanLoadsAndResolves) {
  const std::filesystem::path dir = std::filesystem::path(KVS_SOURCE_DIR) / "configs" / "cache";
  int n = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    if (e.path().extension() != ".json") continue;
    ++n;
    SCOPED_TRACE(e.path().string());
    const CachePlan by_name = load_cache_plan(e.path().stem().string());
    const CachePlan by_path = load_cache_plan(e.path().string());
    EXPECT_EQ(by_name.json, by_path.json);
    // Head profiles and calibration files are model-specific: resolve only.
    EXPECT_NO_THROW(resolve_cache_plan(by_name, 4, 2, 64, 64));
  }
  EXPECT_GE(n, 5);
  // The shipped plans the CLI tests and docs rely on.
  const CachePlan k = load_cache_plan("knorm-50");
  EXPECT_EQ(k.defaults.policy, "knorm");
  EXPECT_EQ(k.defaults.budget.value, 0.5);
  const CachePlan s = load_cache_plan("streaming-512");
  EXPECT_EQ(s.when, CompressWhen::Chunk);
  EXPECT_EQ(s.defaults.budget.tokens(100000), 512);
}

TEST(CachePlan, ConfigDirComesFromTheEnvironment) {
  test::TempDir dir("kvs_plan");
  std::filesystem::create_directories(dir / "cache");
  dir.write("cache/mine.json", R"({"policy": "window", "budget": 3})");
  test::ScopedEnv env("KVSIEVE_CONFIG_DIR", dir.path());
  EXPECT_EQ(load_cache_plan("mine").defaults.policy, "window");
  EXPECT_HAS(error_of([] { load_cache_plan("knorm-50"); }), "mine");
}

// ---- malformed plans: one test each, the message names the key ----

TEST(CachePlanErrors, NotAnObjectAndMissingKeys) {
  EXPECT_HAS(parse_error("[1, 2]"), "must be a JSON object");
  EXPECT_HAS(parse_error(R"({"budget": 0.5})"), "'policy' missing");
  EXPECT_HAS(parse_error(R"({"policy": "knorm"})"), "'budget' missing");
}

TEST(CachePlanErrors, UnknownPolicyListsTheRegisteredOnes) {
  const std::string m = parse_error(R"({"policy": "lru", "budget": 0.5})");
  EXPECT_HAS(m, "inline");
  EXPECT_HAS(m, "'lru'");
  EXPECT_HAS(m, "knorm");
  EXPECT_HAS(m, "streaming");
  EXPECT_HAS(m, "policy");
}

TEST(CachePlanErrors, UnknownPolicyInAnOverride) {
  const std::string m = resolve_error(R"({"policy": "knorm", "budget": 0.5,
                                          "layers": {"2": "lru"}})");
  EXPECT_HAS(m, "layers.2");
  EXPECT_HAS(m, "'lru'");
}

TEST(CachePlanErrors, UnknownTopLevelKey) {
  const std::string m = parse_error(R"({"policy": "knorm", "budget": 0.5, "budgte": 3})");
  EXPECT_HAS(m, "inline");
  EXPECT_HAS(m, "'budgte'");
}

TEST(CachePlanErrors, UnknownKeyInsideALayerOverride) {
  const std::string m = resolve_error(R"({"policy": "knorm", "budget": 0.5,
                                          "layers": {"0-1": {"policy": "full", "bogus": 1}}})");
  EXPECT_HAS(m, "'layers.0-1.bogus'");
}

TEST(CachePlanErrors, UnknownKeyInsideAHeadOverride) {
  // Storage is per layer: a head override cannot change it.
  const std::string m = resolve_error(R"({"policy": "knorm", "budget": 0.5,
                                          "heads": {"1:0": {"storage": "q8"}}})");
  EXPECT_HAS(m, "'heads.1:0.storage'");
}

TEST(CachePlanErrors, UnknownKeysInsideCompressStorageRetrieval) {
  EXPECT_HAS(parse_error(R"({"policy": "full", "compress": {"when": "decode", "often": 2}})"),
             "'compress.often'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "storage": {"key": "f16"}})"), "'storage.key'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "retrieval": {"top": 0.5}})"), "'retrieval.top'");
}

TEST(CachePlanErrors, UnknownPolicyParameter) {
  const std::string m = parse_error(R"({"policy": "knorm", "budget": 0.5, "params": {"skip": 2}})");
  EXPECT_HAS(m, "'skip'");
  EXPECT_HAS(m, "skip_layers");  // lists the known ones
  EXPECT_HAS(parse_error(R"({"policy": "snapkv", "budget": 0.5, "params": {"kernel": 4}})"),
             "kernel");
  // In an override, the policy is built (and its params checked) with the manager.
  const std::string o = error_of([] {
    build_manager(parse(R"({"policy": "knorm", "budget": 0.5,
                            "layers": {"1": {"params": {"skip": 2}}}})"),
                  model_info());
  });
  EXPECT_HAS(o, "layer 1");
  EXPECT_HAS(o, "'skip'");
}

TEST(CachePlanErrors, BudgetNotPositive) {
  for (const char* b : {"0", "-3", "-0.5", "0.0"}) {
    const std::string m = parse_error(std::string(R"({"policy": "knorm", "budget": )") + b + "}");
    EXPECT_HAS(m, "budget");
    EXPECT_HAS(m, b);
  }
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": "half"})"), "budget");
}

TEST(CachePlanErrors, BudgetFractionAboveOne) {
  const std::string m = parse_error(R"({"policy": "knorm", "budget": 1.5})");
  EXPECT_HAS(m, "budget");
  EXPECT_HAS(m, "1.5");
}

TEST(CachePlanErrors, TopLevelKeysAreNamedWithoutALeadingDot) {
  // Top-level keys are reported as written: 'budget', not '.budget'.
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 0})"), "key 'budget'");
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 8, "sinks": 9})"), "key 'sinks'");
  const std::string m = parse_error(R"({"policy": "lru", "budget": 0.5})");
  EXPECT_FALSE(has(m, ".policy")) << m;
}

TEST(CachePlanErrors, HugeBudgetIsTooLarge) {
  // 1e30 is integral: it must be rejected as too large, not converted (undefined behaviour).
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 1e30})"), "too large");
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 100000000})"), "too large");
}

TEST(CachePlanErrors, SinksPlusRecentAboveATokenBudget) {
  const std::string m =
      parse_error(R"({"policy": "knorm", "budget": 10, "sinks": 4, "recent": 8})");
  EXPECT_HAS(m, "sinks");
  EXPECT_HAS(m, "12");
  EXPECT_HAS(m, "10 tokens");
  // Equal is fine; fractions are checked against the tokens seen at compression time.
  EXPECT_NO_THROW(parse(R"({"policy": "knorm", "budget": 12, "sinks": 4, "recent": 8})"));
  EXPECT_NO_THROW(parse(R"({"policy": "knorm", "budget": 0.1, "sinks": 4, "recent": 800})"));
  // In an override, after the override's fields are applied.
  const std::string o = resolve_error(R"({"policy": "knorm", "budget": 10,
                                          "heads": {"2:1": {"recent": 11}}})");
  EXPECT_HAS(o, "heads.2:1");
  EXPECT_HAS(o, "sinks");
}

TEST(CachePlanErrors, NegativeOrFractionalCounts) {
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 0.5, "sinks": -1})"), "sinks");
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 0.5, "recent": 2.5})"), "recent");
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 0.5, "margin": -4})"), "'margin'");
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 0.5, "seed": -1})"), "'seed'");
}

TEST(CachePlanErrors, HeadProfileShapeIsNotLayersByKVHeads) {
  test::TempDir dir("kvs_plan");
  dir.write("heads.tsv", "0.9\t0.1\t0.5\n0.2\t0.8\t0.1\n");  // 2 x 3, the model is 2 x 2
  const CachePlan p = parse(R"({"policy": "streaming", "budget": 64, "head_profile": ")" +
                            (dir / "heads.tsv") + R"("})");
  const std::string m = error_of([&] { build_manager(p, model_info(2, 2)); });
  EXPECT_HAS(m, dir / "heads.tsv");
  EXPECT_HAS(m, "2 x 3");
  EXPECT_HAS(m, "2 KV heads");
  // The right shape is accepted; heads at or above the threshold (default 0.5) keep everything.
  dir.write("ok.tsv", "0.9\t0.1\n0.2\t0.5\n");
  const CachePlan q = parse(R"({"policy": "streaming", "budget": 64, "head_profile": ")" +
                            (dir / "ok.tsv") + R"("})");
  const CacheManager mgr(q, model_info(2, 2));
  EXPECT_EQ(mgr.resolved().at(0, 0).policy, "full");
  EXPECT_EQ(mgr.resolved().at(0, 1).policy, "streaming");
  EXPECT_EQ(mgr.resolved().at(1, 0).policy, "streaming");
  EXPECT_EQ(mgr.resolved().at(1, 1).policy, "full");
  // A fraction instead: the single highest head.
  const CachePlan fr = parse(R"({"policy": "streaming", "budget": 64, "head_profile": ")" +
                             (dir / "ok.tsv") + R"(", "retrieval": {"fraction": 0.25}})");
  const CacheManager mf(fr, model_info(2, 2));
  EXPECT_EQ(mf.resolved().at(0, 0).policy, "full");
  EXPECT_EQ(mf.resolved().at(1, 1).policy, "streaming");
}

TEST(CachePlanErrors, CalibrationShapeIsNotTheModels) {
  test::TempDir dir("kvs_plan");
  Calibration c;
  c.n_layer = 2;
  c.n_head_kv = 2;
  c.head_dim = 16;  // the model's head dim is 32
  c.data.assign(2 * 2 * 16, 0.25f);
  save_calibration(c, dir / "cal.bin");
  const CachePlan p = parse(R"({"policy": "qfilter", "budget": 0.5, "calibration": ")" +
                            (dir / "cal.bin") + R"("})");
  const std::string m = error_of([&] { build_manager(p, model_info(2, 2)); });
  EXPECT_HAS(m, dir / "cal.bin");
  EXPECT_HAS(m, "'calibration'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "calibration": 3})"), "'calibration'");
}

TEST(CachePlanErrors, MissingHeadProfileFile) {
  const CachePlan p =
      parse(R"({"policy": "streaming", "budget": 64, "head_profile": "/nonexistent/heads.tsv"})");
  EXPECT_HAS(error_of([&] { build_manager(p, model_info()); }), "/nonexistent/heads.tsv");
}

TEST(CachePlanErrors, LayerOverrideOutOfRange) {
  const std::string m = resolve_error(R"({"policy": "knorm", "budget": 0.5,
                                          "layers": {"4-9": "full"}})");
  EXPECT_HAS(m, "'layers.4-9'");
  EXPECT_HAS(m, "layer 9");
  EXPECT_HAS(m, "has 6");
  EXPECT_HAS(resolve_error(R"({"policy": "knorm", "budget": 0.5, "layers": {"6": "full"}})"),
             "'layers.6'");
}

TEST(CachePlanErrors, HeadOverrideLayerOutOfRange) {
  const std::string m = resolve_error(R"({"policy": "knorm", "budget": 0.5,
                                          "heads": {"9:0": "full"}})");
  EXPECT_HAS(m, "'heads.9:0'");
  EXPECT_HAS(m, "layer 9");
}

TEST(CachePlanErrors, HeadOverrideHeadOutOfRange) {
  const std::string m = resolve_error(R"({"policy": "knorm", "budget": 0.5,
                                          "heads": {"1:3": "full"}})");
  EXPECT_HAS(m, "'heads.1:3'");
  EXPECT_HAS(m, "KV head 3");
  EXPECT_HAS(m, "has 3");
}

TEST(CachePlanErrors, MalformedLayerAndHeadKeys) {
  for (const char* k : {"a", "1-b", "-1", "3-1", "1-2-3"})
    EXPECT_HAS(
        parse_error(std::string(R"({"policy": "full", "layers": {")") + k + R"(": "full"}})"),
        std::string("layers.") + k);
  for (const char* k : {"5", "1-2:0", "1:0-1", "x:1", "1:-1"})
    EXPECT_HAS(parse_error(std::string(R"({"policy": "full", "heads": {")") + k + R"(": "full"}})"),
               std::string("heads.") + k);
  EXPECT_HAS(parse_error(R"({"policy": "full", "layers": ["full"]})"), "'layers'");
  // The value of an override is checked when the plan is resolved against a model.
  EXPECT_HAS(resolve_error(R"({"policy": "full", "layers": {"0": 3}})"), "'layers.0'");
}

TEST(CachePlanErrors, BadStorageType) {
  const std::string m = parse_error(R"({"policy": "full", "storage": "q3"})");
  EXPECT_HAS(m, "'storage'");
  EXPECT_HAS(m, "q3");
  EXPECT_HAS(m, "q8");  // lists the valid ones
  EXPECT_HAS(parse_error(R"({"policy": "full", "storage": {"v": "int8"}})"), "'storage.v'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "storage": 8})"), "'storage'");
  EXPECT_HAS(resolve_error(R"({"policy": "full", "layers": {"2": {"storage": "f8"}}})"),
             "'layers.2.storage'");
}

TEST(CachePlanErrors, BlockStorageNeedsHeadDimMultipleOf32) {
  const std::string m = resolve_error(R"({"policy": "full", "storage": "q8"})", 48, 48);
  EXPECT_HAS(m, "'storage'");
  EXPECT_HAS(m, "multiple of 32");
  EXPECT_HAS(resolve_error(R"({"policy": "full", "storage": {"v": "q4"}})", 64, 40), "storage");
  EXPECT_NO_THROW(resolve(R"({"policy": "full", "storage": "f16"})", 6, 3, 48, 40));
  EXPECT_NO_THROW(resolve(R"({"policy": "full", "storage": "q4"})", 6, 3, 96, 32));
}

TEST(CachePlanErrors, BadCompressPositionsAllocatorRetrieval) {
  EXPECT_HAS(parse_error(R"({"policy": "full", "compress": "sometimes"})"), "'compress'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "compress": {"every": 4}})"), "'compress'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "compress": {"when": "decode", "every": 0}})"),
             "compress.every");
  EXPECT_HAS(parse_error(R"({"policy": "full", "positions": "relative"})"), "'positions'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "allocator": "fancy"})"), "'allocator'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "allocator": {"beta": 3}})"), "'allocator'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "retrieval": {"threshold": 1.5}})"),
             "'retrieval.threshold'");
  EXPECT_HAS(parse_error(R"({"policy": "full", "head_profile": 3})"), "'head_profile'");
}

TEST(CachePlanErrors, AllocatorParametersAreChecked) {
  // Unknown allocator parameters and out-of-range values are plan errors like any other key.
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 0.5,
                             "allocator": {"name": "pyramid", "betta": 10}})"),
             "betta");
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 0.5,
                             "allocator": {"name": "pyramid", "beta": 0}})"),
             "beta");
  EXPECT_HAS(parse_error(R"({"policy": "knorm", "budget": 0.5,
                             "allocator": {"name": "adaptive", "floor": "high"}})"),
             "floor");
}

TEST(CachePlanErrors, QueryWindowPoliciesNeedOriginalPositions) {
  const std::string m = error_of([] {
    build_manager(parse(R"({"policy": "snapkv", "budget": 0.5, "positions": "cache"})"),
                  model_info());
  });
  EXPECT_HAS(m, "snapkv");
  EXPECT_HAS(m, "positions");
}

TEST(CachePlanErrors, MalformedJsonFileNamesTheFile) {
  test::TempDir dir("kvs_plan");
  dir.write("bad.json", R"({"policy": "knorm", "budget": 0.5,)");
  const std::string m = error_of([&] { load_cache_plan(dir / "bad.json"); });
  EXPECT_HAS(m, dir / "bad.json");
  EXPECT_HAS(m, "not valid JSON");
  // A well-formed file with a bad key names the file and the key.
  dir.write("key.json", R"({"policy": "knorm", "budget": 0.5, "sink": 4})");
  const std::string k = error_of([&] { load_cache_plan(dir / "key.json"); });
  EXPECT_HAS(k, dir / "key.json");
  EXPECT_HAS(k, "'sink'");
}

TEST(CachePlanErrors, UnknownShippedPlanListsTheShippedOnes) {
  const std::string m = error_of([] { load_cache_plan("knorm-5O"); });
  EXPECT_HAS(m, "'knorm-5O'");
  for (const char* name : {"full", "knorm-50", "snapkv-50", "h2o-50", "streaming-512"})
    EXPECT_HAS(m, name);
}

}  // namespace
}  // namespace kvs
