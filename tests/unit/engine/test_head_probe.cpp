// Head probes (engine/head_probe.h) on hand-made attention: echo and induction scores, needle
// mass, GQA reduction, normalization, the TSV they are written as, and the reference softmax
// the probe recomputes attention with.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <set>
#include <vector>

#include "cache/manager.h"
#include "cache/plan.h"
#include "engine/head_probe.h"
#include "kernels/attention/backend.h"
#include "kernels/core/error.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

constexpr int kBos = 1;
constexpr int kSegment = 16;
constexpr int kRepeats = 4;

// BOS then kRepeats copies of kSegment distinct tokens: [1 + kSegment * kRepeats].
std::vector<int32_t> repeated_sequence() {
  std::vector<int32_t> seq = {kBos};
  for (int r = 0; r < kRepeats; ++r)
    for (int i = 0; i < kSegment; ++i) seq.push_back(100 + 7 * i);
  return seq;
}

// Synthetic attention of four query heads for a query at position q (row over 0..q):
//   0 previous token, 1 copy (the token after the previous copy: induction),
//   2 echo (the previous copy itself), 3 uniform.
std::vector<float> synthetic_row(int head, int64_t q) {
  std::vector<float> row(static_cast<size_t>(q) + 1, 0.0f);  // [q + 1]
  switch (head) {
    case 0:
      row[q - 1] = 1.0f;
      break;
    case 1:
      row[q - kSegment + 1] = 0.8f;
      row[0] = 0.2f;
      break;
    case 2:
      row[q - kSegment] = 0.7f;
      row[0] = 0.3f;
      break;
    default:
      for (auto& p : row) p = 1.0f / static_cast<float>(q + 1);
  }
  return row;
}

// Scores every query of the repeated segments, as probe_razor does. Layer 0 holds the four
// synthetic heads (KV head 0 = {previous token, copy}, KV head 1 = {echo, uniform}); layer 1
// has uniform heads only. Returns the per-KV-head echo and induction means.
std::pair<std::vector<double>, std::vector<double>> score_synthetic(HeadMeans& echo,
                                                                    HeadMeans& induction) {
  const std::vector<int32_t> seq = repeated_sequence();
  for (int64_t q = 1 + kSegment; q < static_cast<int64_t>(seq.size()); ++q)
    for (int layer = 0; layer < 2; ++layer)
      for (int h = 0; h < 4; ++h) {
        const std::vector<float> row = synthetic_row(layer == 0 ? h : 3, q);
        const CopyMass m = copy_mass(row, seq, q);
        echo.add(layer, h, m.echo);
        induction.add(layer, h, m.induction);
      }
  return {max_over_groups(echo.means(), 2, 4, 2), max_over_groups(induction.means(), 2, 4, 2)};
}

TEST(HeadProbe, CopyHeadRanksFirst) {
  HeadMeans echo(2, 4), induction(2, 4);
  const auto [e_kv, ind_kv] = score_synthetic(echo, induction);
  const HeadProfile p = razor_profile(e_kv, ind_kv, 2, 2, Normalize::Model);
  ASSERT_EQ(p.n_layer, 2);
  ASSERT_EQ(p.n_head_kv, 2);
  const std::vector<RankedHead> ranked = rank_heads(p);
  EXPECT_EQ(ranked[0].layer, 0);
  EXPECT_EQ(ranked[0].head, 0);  // the KV head of the copying query head
  EXPECT_DOUBLE_EQ(ranked[0].value, 1.0);
  EXPECT_EQ(ranked[1].layer, 0);
  EXPECT_EQ(ranked[1].head, 1);  // the echo head, weaker (0.7 against 0.8)
  EXPECT_NEAR(ranked[1].value, 0.7 / 0.8, 1e-6);
  // Uniform heads echo a little (earlier copies get 1/(q+1) each) but far less.
  EXPECT_LT(ranked[2].value, 0.2);
  // The top quarter of the heads is the copy head, as a plan with {"fraction": 0.25} sees it.
  const std::vector<bool> chosen = retrieval_heads(p, -1.0, 0.25);
  EXPECT_EQ(std::count(chosen.begin(), chosen.end(), true), 1);
  EXPECT_TRUE(chosen[0]);
}

TEST(HeadProbe, EchoAndInductionAreDistinguished) {
  HeadMeans echo(2, 4), induction(2, 4);
  score_synthetic(echo, induction);
  const std::vector<double> e = echo.means(), ind = induction.means();  // [2][4]
  EXPECT_DOUBLE_EQ(e[0], 0.0);                                          // previous token: neither
  EXPECT_DOUBLE_EQ(ind[0], 0.0);
  EXPECT_NEAR(ind[1], 0.8, 1e-6);  // copy head: induction only
  EXPECT_DOUBLE_EQ(e[1], 0.0);
  EXPECT_NEAR(e[2], 0.7, 1e-6);  // echo head: echo only
  EXPECT_DOUBLE_EQ(ind[2], 0.0);
  EXPECT_GT(e[3], 0.0);  // uniform: a little of both
  EXPECT_LT(e[3], 0.1);
  EXPECT_EQ(echo.count(0, 0), kSegment * (kRepeats - 1));

  // Every earlier copy counts, and collisions of the current token with other tokens too.
  const std::vector<int32_t> toks = {5, 9, 5, 9, 5, 7, 5};
  std::vector<float> row(7, 0.0f);  // query at position 6 (token 5)
  row[0] = 0.1f;                    // copy of 5
  row[1] = 0.2f;                    // follows a copy of 5
  row[4] = 0.3f;                    // copy of 5
  row[5] = 0.15f;                   // follows a copy of 5
  row[6] = 0.25f;                   // the query's own slot: neither
  const CopyMass m = copy_mass(row, toks, 6);
  EXPECT_NEAR(m.echo, 0.4, 1e-6);
  EXPECT_NEAR(m.induction, 0.35, 1e-6);
}

TEST(HeadProbe, NeedleMass) {
  std::vector<float> row = {0.1f, 0.05f, 0.3f, 0.25f, 0.1f, 0.2f};
  EXPECT_NEAR(span_mass(row, 2, 4), 0.55, 1e-6);
  EXPECT_NEAR(span_mass(row, 4, 100), 0.3, 1e-6);  // clipped to the row
  EXPECT_DOUBLE_EQ(span_mass(row, 3, 3), 0.0);

  // Two layers x 2 query heads x 1 KV head; the retrieval head (layer 1, query head 0) puts
  // most of its mass on the needle [2, 4) for every query.
  HeadMeans mass(2, 2);
  const std::vector<std::vector<float>> rows = {
      {0.9f, 0.0f, 0.05f, 0.05f, 0.0f, 0.0f},  // sink
      {0.1f, 0.1f, 0.1f, 0.1f, 0.3f, 0.3f},    // recent
      {0.1f, 0.0f, 0.4f, 0.4f, 0.05f, 0.05f},  // retrieval
      {0.2f, 0.2f, 0.2f, 0.2f, 0.1f, 0.1f}};   // spread
  for (int q = 0; q < 3; ++q)
    for (int i = 0; i < 4; ++i) mass.add(i / 2, i % 2, span_mass(rows[i], 2, 4));
  const std::vector<double> kv = max_over_groups(mass.means(), 2, 2, 1);  // [2][1]
  EXPECT_NEAR(kv[0], 0.2, 1e-6);
  EXPECT_NEAR(kv[1], 0.8, 1e-6);
  const HeadProfile by_model = normalized_profile(kv, 2, 1, Normalize::Model);
  EXPECT_NEAR(by_model.at(0, 0), 0.25, 1e-6);
  EXPECT_DOUBLE_EQ(by_model.at(1, 0), 1.0);
  // Per layer every layer's best head is 1: with one KV head per layer that says nothing.
  const HeadProfile by_layer = normalized_profile(kv, 2, 1, Normalize::Layer);
  EXPECT_DOUBLE_EQ(by_layer.at(0, 0), 1.0);
  EXPECT_DOUBLE_EQ(by_layer.at(1, 0), 1.0);
  // A layer that never sees the needle (a sliding window) stays 0 instead of dividing by 0.
  const std::vector<double> blind = {0.0, 0.0, 0.3, 0.6};
  const HeadProfile b = normalized_profile(blind, 2, 2, Normalize::Layer);
  EXPECT_DOUBLE_EQ(b.at(0, 0), 0.0);
  EXPECT_DOUBLE_EQ(b.at(0, 1), 0.0);
  EXPECT_DOUBLE_EQ(b.at(1, 0), 0.5);
  EXPECT_EQ(parse_normalize("layer"), Normalize::Layer);
  EXPECT_THROW(parse_normalize("global"), Error);
}

TEST(HeadProbe, ProfileRoundTripsThroughTsv) {
  HeadMeans echo(2, 4), induction(2, 4);
  const auto [e_kv, ind_kv] = score_synthetic(echo, induction);
  const HeadProfile p = razor_profile(e_kv, ind_kv, 2, 2, Normalize::Model);
  for (double v : p.values) {
    EXPECT_GE(v, 0.0);
    EXPECT_LE(v, 1.0);
  }
  test::TempDir dir("kvs_probe");
  save_head_profile(p, dir / "heads.tsv");
  const HeadProfile q = load_head_profile(dir / "heads.tsv");
  ASSERT_EQ(q.n_layer, p.n_layer);
  ASSERT_EQ(q.n_head_kv, p.n_head_kv);
  for (size_t i = 0; i < p.values.size(); ++i) EXPECT_NEAR(q.values[i], p.values[i], 1e-6);
  EXPECT_EQ(retrieval_heads(q, -1.0, 0.25), retrieval_heads(p, -1.0, 0.25));
}

TEST(HeadProbe, RandomProfileIsDeterministicPerSeed) {
  const HeadProfile a = random_profile(30, 3, 7), b = random_profile(30, 3, 7);
  const HeadProfile c = random_profile(30, 3, 8);
  EXPECT_EQ(a.values, b.values);
  EXPECT_NE(a.values, c.values);
  ASSERT_EQ(a.values.size(), 90u);
  for (double v : a.values) {
    EXPECT_GE(v, 0.0);
    EXPECT_LT(v, 1.0);
  }
  // Spread over [0, 1), not clumped.
  const auto [mn, mx] = std::minmax_element(a.values.begin(), a.values.end());
  EXPECT_LT(*mn, 0.1);
  EXPECT_GT(*mx, 0.9);
}

TEST(HeadProbe, RepeatedRandomTokens) {
  const std::vector<int32_t> vocab = {3, 5, 8, 13, 21, 34, 55, 89};
  const std::vector<int32_t> t = repeated_random_tokens(vocab, 10, 3, 42);
  ASSERT_EQ(t.size(), 30u);
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(t[i], t[i + 10]);
    EXPECT_EQ(t[i], t[i + 20]);
  }
  const std::set<int32_t> allowed(vocab.begin(), vocab.end());
  for (int32_t x : t) EXPECT_TRUE(allowed.count(x)) << x;
  EXPECT_EQ(t, repeated_random_tokens(vocab, 10, 3, 42));
  EXPECT_NE(t, repeated_random_tokens(vocab, 10, 3, 43));
}

TEST(HeadProbe, MaxOverGroups) {
  // 1 layer, 6 query heads, 2 KV heads: groups {0, 1, 2} and {3, 4, 5}.
  const std::vector<double> q = {0.1, 0.5, 0.2, 0.9, 0.3, 0.4};
  EXPECT_EQ(max_over_groups(q, 1, 6, 2), (std::vector<double>{0.5, 0.9}));
  EXPECT_EQ(max_over_groups(q, 1, 6, 6), q);
}

// The probabilities the probe recomputes are the reference backend's: their weighted sum of
// values is its output, with GQA, a causal mask and a sliding window.
TEST(HeadProbe, AttentionProbsMatchTheReferenceBackend) {
  const AttentionBackend& be = find_attention_backend("reference");
  ThreadPool pool(1);
  const int n_head = 4, n_kv = 2, dk = 16, dv = 8, n = 24, window = 10;
  const float scale = 0.25f;
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  std::vector<float> K(static_cast<size_t>(n_kv) * n * dk);  // [n_kv][n][dk]
  std::vector<float> V(static_cast<size_t>(n_kv) * n * dv);  // [n_kv][n][dv]
  for (auto& x : K) x = nd(rng);
  for (auto& x : V) x = nd(rng);
  std::vector<int32_t> pos(n);  // [n]
  for (int j = 0; j < n; ++j) pos[j] = j;
  const int T = 3;
  const int32_t qpos[T] = {5, 17, 23};
  std::vector<float> q(static_cast<size_t>(T) * n_head * dk);  // [T][n_head][dk]
  for (auto& x : q) x = nd(rng);
  for (const int win : {0, window}) {
    KVView kv;
    kv.heads.resize(n_kv);
    for (int g = 0; g < n_kv; ++g)
      kv.heads[g] = {K.data() + g * n * dk, V.data() + g * n * dv, pos.data(), n, nullptr, nullptr};
    const AttentionShape s{n_head, n_kv, dk, dv, scale, win, 0.0f};
    std::vector<float> out(static_cast<size_t>(T) * n_head * dv);  // [T][n_head][dv]
    be.attend(s, q.data(), qpos, T, kv, out.data(), pool);
    std::vector<float> p(n);  // [n]
    for (int t = 0; t < T; ++t)
      for (int h = 0; h < n_head; ++h) {
        const int g = h / (n_head / n_kv);
        attention_probs(q.data() + (t * n_head + h) * dk, K.data() + g * n * dk, pos.data(), n, dk,
                        scale, 0.0f, win, qpos[t], p);
        double total = 0.0;
        for (int j = 0; j < n; ++j) {
          total += p[j];
          if (pos[j] > qpos[t] || (win > 0 && qpos[t] - pos[j] >= win)) {
            EXPECT_EQ(p[j], 0.0f);
          }
        }
        EXPECT_NEAR(total, 1.0, 1e-5);
        for (int d = 0; d < dv; ++d) {
          double o = 0.0;
          for (int j = 0; j < n; ++j) o += p[j] * V[(static_cast<size_t>(g) * n + j) * dv + d];
          EXPECT_NEAR(o, out[(static_cast<size_t>(t) * n_head + h) * dv + d], 1e-4)
              << "window " << win << " query " << t << " head " << h;
        }
      }
  }
}

// The shipped profiles (kvsieve profile-heads on the real models, docs/head-profiling.md) have
// their models' shapes, and the shipped duo plans turn the top quarter of heads into full ones.
TEST(HeadProbe, ShippedProfilesAndDuoPlansMatchTheirModels) {
  const std::string src = KVS_SOURCE_DIR;
  struct Shipped {
    const char* plan;
    const char* model;
    int n_layer, n_head, n_head_kv, head_dim, window;
    double fraction;
  };
  for (const Shipped& m : {Shipped{"duo-smollm2", "smollm2", 30, 9, 3, 64, 0, 0.25},
                           Shipped{"duo-gemma3", "gemma3-270m", 18, 4, 1, 256, 512, 0.67}}) {
    SCOPED_TRACE(m.plan);
    for (const char* method : {"razor", "retrieval"}) {
      const HeadProfile p =
          load_head_profile(src + "/configs/cache/profiles/" + m.model + "-" + method + ".tsv");
      EXPECT_EQ(p.n_layer, m.n_layer);
      EXPECT_EQ(p.n_head_kv, m.n_head_kv);
      EXPECT_DOUBLE_EQ(*std::max_element(p.values.begin(), p.values.end()), 1.0);
    }
    const CachePlan plan = load_cache_plan(m.plan);
    EXPECT_EQ(plan.defaults.policy, "duo");
    EXPECT_EQ(plan.retrieval_fraction, m.fraction);
    EXPECT_EQ(plan.head_profile,
              std::string("configs/cache/profiles/") + m.model + "-retrieval.tsv");
    // The plan names the profile relative to the repository root; the manager reads it there.
    nlohmann::json j = plan.json;
    j["head_profile"] = src + "/" + plan.head_profile;
    CacheModelInfo info;
    info.n_layer = m.n_layer;
    info.n_head = m.n_head;
    info.n_head_kv = m.n_head_kv;
    info.head_dim_k = info.head_dim_v = m.head_dim;
    info.sliding_window = m.window;
    info.layer_is_swa.assign(m.n_layer, false);
    for (int l = 0; l < m.n_layer && m.window > 0; ++l) info.layer_is_swa[l] = l % 6 < 5;
    info.n_ctx = 4096;
    const CacheManager mgr(parse_cache_plan(j, plan.source), info);
    // The fraction counts the heads a plan can compress (gemma3: the 3 global layers).
    int full = 0, compressible = 0;
    for (size_t i = 0; i < mgr.resolved().heads.size(); ++i) {
      const bool swa = info.layer_is_swa[i / m.n_head_kv];
      compressible += swa ? 0 : 1;
      full += !swa && mgr.resolved().heads[i].policy == "full" ? 1 : 0;
    }
    EXPECT_EQ(full, static_cast<int>(std::llround(m.fraction * compressible)));
  }
}

}  // namespace
}  // namespace kvs
