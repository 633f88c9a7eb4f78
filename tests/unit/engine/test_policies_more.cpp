// Scores of vatp, keydiff, lagkv, expected_attention, caote, qfilter, duo and razor against
// hand-computed values, Q-Filters calibration on queries with a known direction, and razor's
// compensation token through a small CacheManager run.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <vector>

#include "cache/head_profile.h"
#include "cache/kv_cache.h"
#include "cache/manager.h"
#include "cache/plan.h"
#include "cache/policies/qfilter.h"
#include "cache/policy.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

using json = nlohmann::json;
constexpr float kMax = std::numeric_limits<float>::max();

std::vector<float> run(const std::string& name, const json& params, const HeadScoreInput& in) {
  auto p = find_policy(name, "test").make(params, "test");
  std::vector<float> out(in.len, -1.0f);
  p->score(in, out);
  return out;
}

HeadScoreInput input(int32_t len, int dk, int dv) {
  HeadScoreInput in;
  in.len = len;
  in.head_dim_k = dk;
  in.head_dim_v = dv;
  return in;
}

std::string temp_path(const std::string& name) {
  return (std::filesystem::temp_directory_path() /
          ("kvs_pol_" + std::to_string(::getpid()) + "_" + name))
      .string();
}

TEST(PoliciesMore, VatpIsAttentionTimesValueL1) {
  const std::vector<float> acc = {1.0f, 0.5f, 0.2f, 0.4f, 0.1f};
  const std::vector<float> v = {0.1f, 0.1f, 1.0f, -2.0f, 4.0f, 0.0f, -0.5f, 0.5f, 3.0f, 3.0f};
  HeadScoreInput in = input(5, 2, 2);
  in.attn_acc = acc.data();
  in.values = v.data();
  const auto s = run("vatp", json{{"sinks", 1}}, in);
  EXPECT_EQ(s[0], kMax);  // sink, however small its value
  EXPECT_FLOAT_EQ(s[1], 0.5f * 3.0f);
  EXPECT_FLOAT_EQ(s[2], 0.2f * 4.0f);
  EXPECT_FLOAT_EQ(s[3], 0.4f * 1.0f);
  EXPECT_FLOAT_EQ(s[4], 0.1f * 6.0f);
  EXPECT_FLOAT_EQ(run("vatp", json{{"sinks", 0}}, in)[0], 1.0f * 0.2f);
}

TEST(PoliciesMore, KeyDiffIsMinusCosineToMeanDirection) {
  // Normalized keys (1,0), (0,1), (.71,.71), (-1,0): their mean lies at 67.5 degrees.
  const std::vector<float> k = {1, 0, 0, 2, 1, 1, -3, 0};
  HeadScoreInput in = input(4, 2, 2);
  in.keys = k.data();
  const float c22 = std::cos(M_PI / 8), c67 = std::cos(3 * M_PI / 8);
  auto s = run("keydiff", json::object(), in);
  EXPECT_NEAR(s[0], -c67, 1e-6);
  EXPECT_NEAR(s[1], -c22, 1e-6);
  EXPECT_NEAR(s[2], -c22, 1e-6);
  EXPECT_NEAR(s[3], c67, 1e-6);
  // Block-wise: anchors of {(1,0),(0,1)} at 45 degrees, of {(.71,.71),(-1,0)} at 112.5.
  s = run("keydiff", json{{"block", 2}}, in);
  EXPECT_NEAR(s[0], -std::sqrt(0.5), 1e-6);
  EXPECT_NEAR(s[1], -std::sqrt(0.5), 1e-6);
  EXPECT_NEAR(s[2], -c67, 1e-6);
  EXPECT_NEAR(s[3], -c67, 1e-6);
}

TEST(PoliciesMore, LagKVScoresChunksAgainstTheNextOne) {
  // 1 sink + 3 chunks of 2: chunk [1,2] against [3,4], chunk [3,4] against [5,6], [5,6] kept.
  const std::vector<float> k = {9, 9, 0, 0, 1, 0, 0, 0, 2, 2, 0, 0, 4, 4};
  const std::vector<float> v = {9, 9, 0, 0, 0, 0, 0, 0, 1, 1, 0, 0, 1, 2};
  HeadScoreInput in = input(7, 2, 2);
  in.keys = k.data();
  in.values = v.data();
  in.sinks = 1;
  // Slot 2's K normalizes to (0.5, 0): std 0.5/sqrt(2), softmax against slot 1's 0. Slot 4's V
  // normalizes to (1, 0.5) against the range (1, 2) of slots 5-6.
  const double e = std::exp(0.5 / std::sqrt(2.0));
  const double lo = (1.0 / (1.0 + e) + 0.5) / 2.0, hi = (e / (1.0 + e) + 0.5) / 2.0;
  auto s = run("lagkv", json{{"lag_size", 2}, {"cross_scoring", true}}, in);
  EXPECT_EQ(s[0], kMax);
  EXPECT_NEAR(s[1], lo, 1e-6);
  EXPECT_NEAR(s[2], hi, 1e-6);
  EXPECT_NEAR(s[3], lo, 1e-6);
  EXPECT_NEAR(s[4], hi, 1e-6);
  EXPECT_EQ(s[5], kMax);
  EXPECT_EQ(s[6], kMax);
  s = run("lagkv", json{{"lag_size", 2}}, in);  // default: rank within the chunk / lag
  EXPECT_FLOAT_EQ(s[1], 0.0f);
  EXPECT_FLOAT_EQ(s[2], 0.5f);
  EXPECT_FLOAT_EQ(s[3], 0.0f);
  EXPECT_FLOAT_EQ(s[4], 0.5f);
  in.len = 4;  // fewer than sinks + 2 chunks: newest first
  s = run("lagkv", json{{"lag_size", 2}}, in);
  EXPECT_EQ(s[0], kMax);
  EXPECT_FLOAT_EQ(s[1], 0.0f);
  EXPECT_FLOAT_EQ(s[2], 1.0f / 3);
  EXPECT_FLOAT_EQ(s[3], 2.0f / 3);
  EXPECT_THROW(run("lagkv", json{{"cross_scoring", 1}}, in), Error);
}

TEST(PoliciesMore, ExpectedAttentionUsesQueryMeanAndCovariance) {
  // Query statistics mu = (2,0), Sigma = diag(1,0) (e.g. queries (1,0) and (3,0)); scale 0.5.
  const std::vector<double> mu = {2, 0}, sigma = {1, 0, 0, 0};
  const std::vector<float> k = {1, 0, 0, 1, -1, 0};
  const std::vector<float> v = {3, 4, 0, 1, 1, 0};
  HeadScoreInput in = input(3, 2, 2);
  in.keys = k.data();
  in.values = v.data();
  in.query_mean = mu.data();
  in.query_cov = sigma.data();
  in.n_query_stats = 2;
  in.kq_scale = 0.5f;
  // Logits 0.5 mu.k + 0.125 k^T Sigma k: 1.125, 0, -0.875.
  const double l[3] = {1.125, 0.0, -0.875};
  const double z = std::exp(l[0]) + std::exp(l[1]) + std::exp(l[2]);
  auto s = run("expected_attention", json{{"sinks", 0}}, in);
  EXPECT_NEAR(s[0], std::exp(l[0]) / z * 5.0, 1e-5);
  EXPECT_NEAR(s[1], std::exp(l[1]) / z * 1.0, 1e-5);
  EXPECT_NEAR(s[2], std::exp(l[2]) / z * 1.0, 1e-5);
  s = run("expected_attention", json{{"sinks", 1}, {"use_covariance", false}}, in);
  EXPECT_EQ(s[0], kMax);  // sinks are left out of the softmax
  EXPECT_NEAR(s[1], 1.0 / (1.0 + std::exp(-1.0)), 1e-5);
  EXPECT_NEAR(s[2], std::exp(-1.0) / (1.0 + std::exp(-1.0)), 1e-5);
  // A GQA group of 2: the second head has mu = (0,2), Sigma = 0.
  const std::vector<double> mu2 = {2, 0, 0, 2}, sigma2 = {1, 0, 0, 0, 0, 0, 0, 0};
  in.query_mean = mu2.data();
  in.query_cov = sigma2.data();
  in.group = 2;
  s = run("expected_attention", json{{"sinks", 0}, {"use_vnorm", false}}, in);
  const double z2 = std::exp(1.0) + 2.0;  // head 2 logits 0, 0.5 * 2, 0
  EXPECT_NEAR(s[1], (std::exp(l[1]) / z + std::exp(1.0) / z2) / 2, 1e-5);
  EXPECT_NEAR(s[0], (std::exp(l[0]) / z + 1.0 / z2) / 2, 1e-5);
  // Without statistics (no query seen yet) only epsilon * ||v|| is left.
  in.query_mean = nullptr;
  in.n_query_stats = 0;
  s = run("expected_attention", json{{"sinks", 0}, {"epsilon", 0.5}}, in);
  EXPECT_NEAR(s[0], 0.5 * 5.0, 1e-6);
  EXPECT_THROW(run("expected_attention", json{{"window", 128}}, in), Error);
}

TEST(PoliciesMore, CaoteIsOutputErrorOfEviction) {
  const std::vector<float> a = {0.5f, 0.3f, 0.2f};
  const std::vector<float> v = {1, 2, 4};  // o = 1.9
  HeadScoreInput in = input(3, 1, 1);
  in.values = v.data();
  in.attn_last = a.data();
  auto s = run("caote", json::object(), in);
  EXPECT_NEAR(s[0], 0.5 / 0.5 * 0.9, 1e-6);
  EXPECT_NEAR(s[1], 0.3 / 0.7 * 0.1, 1e-6);
  EXPECT_NEAR(s[2], 0.2 / 0.8 * 2.1, 1e-6);
  in.attn_last = nullptr;
  in.attn_window = a.data();
  s = run("caote", json{{"base", "window"}, {"window", 8}}, in);
  EXPECT_NEAR(s[2], 0.2 / 0.8 * 2.1, 1e-6);
  EXPECT_EQ(find_policy("caote", "t").make(json{{"base", "window"}}, "t")->needs().attn_window, 32);
  EXPECT_THROW(run("caote", json{{"base", "mean"}}, in), Error);
}

TEST(PoliciesMore, QFilterProjectsKeysOnTheFilter) {
  const std::vector<float> f = {0.6f, 0.8f};
  const std::vector<float> k = {1, 0, 0, 1, -1, -1};
  HeadScoreInput in = input(3, 2, 2);
  in.keys = k.data();
  in.calibration = f.data();
  const auto s = run("qfilter", json::object(), in);
  EXPECT_FLOAT_EQ(s[0], 0.6f);
  EXPECT_FLOAT_EQ(s[1], 0.8f);
  EXPECT_FLOAT_EQ(s[2], -1.4f);
}

TEST(PoliciesMore, QFilterCalibrationFindsTheDominantDirection) {
  // Two query heads of one KV head; queries c u + noise orthogonal-ish to u, mostly c > 0.
  const double u[3] = {0.6, 0.0, 0.8};
  const double c[6] = {3.0, 2.0, 4.0, -0.5, 3.0, 2.5};
  const double noise[6][3] = {{0.1, 0.2, -0.1}, {-0.2, 0.1, 0.0}, {0.0, -0.3, 0.1},
                              {0.1, 0.1, 0.1},  {0.2, 0.0, -0.2}, {-0.1, 0.2, 0.0}};
  QFilterCalibrator cal(1, 2, 1, 3);
  std::vector<float> q(6 * 2 * 3);
  for (int t = 0; t < 6; ++t)
    for (int h = 0; h < 2; ++h)
      for (int d = 0; d < 3; ++d)
        q[(t * 2 + h) * 3 + d] = static_cast<float>(c[t] * u[d] + (h ? -1 : 1) * noise[t][d]);
  cal.add(0, q.data(), 6);
  const Calibration r = cal.finish();
  ASSERT_EQ(r.data.size(), 3u);
  for (int d = 0; d < 3; ++d) EXPECT_NEAR(r.data[d], u[d], 0.03) << d;
  double n = 0.0;
  for (float x : r.data) n += x * x;
  EXPECT_NEAR(n, 1.0, 1e-6);

  // The sign follows the queries: the same set negated gives -u.
  for (float& x : q) x = -x;
  QFilterCalibrator neg(1, 2, 1, 3);
  neg.add(0, q.data(), 6);
  const Calibration rn = neg.finish();
  for (int d = 0; d < 3; ++d) EXPECT_NEAR(rn.data[d], -u[d], 0.03) << d;

  // Round trip through both file forms.
  for (const char* ext : {".json", ".bin"}) {
    const std::string path = temp_path(std::string("cal") + ext);
    save_calibration(r, path);
    const Calibration back = load_calibration(path);
    EXPECT_EQ(back.n_layer, 1);
    EXPECT_EQ(back.n_head_kv, 1);
    EXPECT_EQ(back.head_dim, 3);
    for (int d = 0; d < 3; ++d) EXPECT_FLOAT_EQ(back.data[d], r.data[d]);
    std::filesystem::remove(path);
  }
}

CacheModelInfo tiny_model(int n_layer = 1, int n_head_kv = 2, int hd = 2) {
  CacheModelInfo info;
  info.n_layer = n_layer;
  info.n_head = n_head_kv;
  info.n_head_kv = n_head_kv;
  info.head_dim_k = hd;
  info.head_dim_v = hd;
  info.layer_is_swa.assign(n_layer, false);
  info.n_ctx = 64;
  return info;
}

std::string error_of(const json& plan, const CacheModelInfo& info) {
  try {
    CacheManager m(parse_cache_plan(plan, "plan.json"), info);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(PoliciesMore, PlansNameWhatIsMissingOrMismatched) {
  EXPECT_NE(error_of({{"policy", "qfilter"}, {"budget", 0.5}}, tiny_model()).find("'calibration'"),
            std::string::npos);
  EXPECT_NE(error_of({{"policy", "duo"}, {"budget", 0.5}}, tiny_model()).find("'head_profile'"),
            std::string::npos);
  EXPECT_NE(error_of({{"policy", "razor"}, {"budget", 0.5}}, tiny_model()).find("'head_profile'"),
            std::string::npos);
  // A calibration file of another shape names the file.
  Calibration c;
  c.n_layer = 1;
  c.n_head_kv = 2;
  c.head_dim = 3;
  c.data.assign(6, 0.5f);
  const std::string path = temp_path("shape.bin");
  save_calibration(c, path);
  const json plan = {{"policy", "qfilter"}, {"budget", 0.5}, {"calibration", path}};
  EXPECT_NE(error_of(plan, tiny_model()).find(path), std::string::npos);
  EXPECT_EQ(error_of(plan, tiny_model(1, 2, 3)), "");
  std::ofstream(path, std::ios::binary) << "KVSCAL01 short";
  EXPECT_NE(error_of(plan, tiny_model(1, 2, 3)).find(path), std::string::npos);
  std::filesystem::remove(path);
}

TEST(PoliciesMore, DuoScoresSinksThenRecency) {
  const std::vector<int32_t> pos = {0, 1, 2, 3, 4};
  HeadScoreInput in = input(5, 2, 2);
  in.pos = pos.data();
  const auto s = run("duo", json{{"sinks", 2}}, in);
  EXPECT_EQ(s[0], kMax);
  EXPECT_EQ(s[1], kMax);
  EXPECT_EQ(s[2], 2.0f);
  EXPECT_EQ(s[4], 4.0f);
  EXPECT_TRUE(find_policy("duo", "t").make(json::object(), "t")->needs().head_profile);
}

TEST(PoliciesMore, RetrievalFractionCountsOnlyCompressibleHeads) {
  // Gemma 3's shape in small: layer 0 is a sliding-window layer (never compressed by a plan),
  // layers 1 and 2 are global. The profile's best head is the sliding one; a third of the
  // heads must still pick a global layer, else the plan would stream both.
  const std::string prof = temp_path("swa.tsv");
  std::ofstream(prof) << "1.0\n0.9\n0.1\n";
  HeadProfile p = load_head_profile(prof);
  const std::vector<bool> eligible = compressible_heads({true, false, false}, 1);
  EXPECT_EQ(eligible, (std::vector<bool>{false, true, true}));
  EXPECT_EQ(retrieval_heads(p, -1.0, 0.34), (std::vector<bool>{true, false, false}));
  EXPECT_EQ(retrieval_heads(p, -1.0, 0.34, eligible), (std::vector<bool>{false, true, false}));
  EXPECT_EQ(retrieval_heads(p, 0.05, -1.0, eligible), (std::vector<bool>{false, true, true}));

  CacheModelInfo info = tiny_model(3, 1, 2);
  info.layer_is_swa = {true, false, false};
  const json plan = {{"policy", "duo"},      {"params", {{"sinks", 1}}},
                     {"budget", 4},          {"margin", 0},
                     {"head_profile", prof}, {"retrieval", {{"fraction", 0.34}}}};
  CacheManager m(parse_cache_plan(plan, "plan.json"), info);
  KVCache cache(m.cache_shape(), {64, 64, 64});
  m.attach(cache);
  std::vector<float> k(8 * 2, 1.0f), v(8 * 2, 1.0f);  // [8 tokens][1 head][2]
  std::vector<int32_t> pos = {0, 1, 2, 3, 4, 5, 6, 7};
  for (int l = 0; l < 3; ++l) cache.append(l, k.data(), v.data(), pos.data(), 8);
  m.compress(cache, 8);
  EXPECT_EQ(cache.len(0, 0), 8);  // sliding-window layer: left to its window
  EXPECT_EQ(cache.len(1, 0), 8);  // the retrieval head
  EXPECT_EQ(cache.len(2, 0), 4);  // streamed to the budget
  std::filesystem::remove(prof);
}

// Token t of head h: K = (t + 100 h, 10 t), V = (-t, 100 + t).
void append_tokens(KVCache& cache, int from, int to) {
  const int T = to - from;
  std::vector<float> k(T * 2 * 2), v(T * 2 * 2);
  std::vector<int32_t> pos(T);
  for (int t = 0; t < T; ++t) {
    pos[t] = from + t;
    for (int h = 0; h < 2; ++h) {
      k[(t * 2 + h) * 2 + 0] = static_cast<float>(from + t + 100 * h);
      k[(t * 2 + h) * 2 + 1] = static_cast<float>(10 * (from + t));
      v[(t * 2 + h) * 2 + 0] = static_cast<float>(-(from + t));
      v[(t * 2 + h) * 2 + 1] = static_cast<float>(100 + from + t);
    }
  }
  cache.append(0, k.data(), v.data(), pos.data(), T);
}

TEST(PoliciesMore, RazorFoldsDroppedTokensIntoACountWeightedCompensationSlot) {
  const std::string prof = temp_path("razor.tsv");
  std::ofstream(prof) << "0.9\t0.1\n";  // head 0 retrieval (kept whole), head 1 razor
  const json plan = {{"policy", "razor"},
                     {"params", {{"sinks", 1}}},
                     {"budget", 4},
                     {"margin", 0},
                     {"head_profile", prof}};
  CacheManager m(parse_cache_plan(plan, "plan.json"), tiny_model());
  KVCache cache(m.cache_shape(), {64});
  m.attach(cache);
  append_tokens(cache, 0, 8);
  m.compress(cache, 8);
  EXPECT_EQ(cache.len(0, 0), 8);  // retrieval head
  // Head 1, budget 4: sink 0, the compensation slot (it counts against the budget), the 2
  // newest. Dropped 1-5: K = (103, 30), V = (-3, 103), at position 5, between the kept ones.
  auto check = [&](const std::vector<int32_t>& want_pos, std::vector<float> want_k,
                   std::vector<float> want_v) {
    const int32_t n = cache.len(0, 1);
    ASSERT_EQ(n, static_cast<int32_t>(want_pos.size()));
    EXPECT_EQ(std::vector<int32_t>(cache.positions(0, 1), cache.positions(0, 1) + n), want_pos);
    std::vector<float> k(n * 2), v(n * 2);
    cache.read_k(0, 1, k.data());
    cache.read_v(0, 1, v.data());
    EXPECT_FLOAT_EQ(k[2], want_k[0]);
    EXPECT_FLOAT_EQ(k[3], want_k[1]);
    EXPECT_FLOAT_EQ(v[2], want_v[0]);
    EXPECT_FLOAT_EQ(v[3], want_v[1]);
    EXPECT_FLOAT_EQ(k[0], 100.0f);                              // the sink is untouched
    EXPECT_FLOAT_EQ(k[(n - 1) * 2], 100.0f + want_pos.back());  // so are the kept slots
  };
  check({0, 5, 6, 7}, {103, 30}, {-3, 103});
  // Tokens 8-11 arrive; the next eviction folds the compensation slot (weight 5) with the
  // newly dropped 6-9: the mean of all of 1-9.
  append_tokens(cache, 8, 12);
  m.compress(cache, 12);
  EXPECT_EQ(cache.len(0, 0), 12);
  check({0, 9, 10, 11}, {105, 50}, {-5, 105});
  // Nothing new to drop: the head is left alone.
  m.compress(cache, 12);
  check({0, 9, 10, 11}, {105, 50}, {-5, 105});
  // reset() forgets the compensation slot with the cache.
  cache.clear();
  m.reset();
  append_tokens(cache, 0, 8);
  m.compress(cache, 8);
  check({0, 5, 6, 7}, {103, 30}, {-3, 103});
  std::filesystem::remove(prof);
}

}  // namespace
}  // namespace kvs
