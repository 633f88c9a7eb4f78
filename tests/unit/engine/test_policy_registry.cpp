// Conformance of every registered cache policy (a policy added later is tested the moment it
// registers): on a synthetic model driven through the same hooks the Session uses, the
// manager keeps the protected slots plus the policy's top scores, within the budget, with
// positions and K/V preserved, deterministically.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "cache/manager.h"
#include "cache/plan.h"
#include "cache/policy.h"
#include "kernels/attention/backend.h"
#include "kernels/core/error.h"
#include "kernels/core/thread_pool.h"
#include "support/temp_dir.h"

namespace kvs {
namespace {

using json = nlohmann::json;

// Policies that need more than {policy, budget, sinks, recent} get the plan keys they need:
// a synthetic calibration file when needs().calibration, a head profile (one retrieval head
// per layer) when needs().head_profile, plus any listed in extra_plan_keys(). Policies that
// cannot run on synthetic data at all are listed in skipped() with the reason. A registered
// policy must otherwise run with the plain plan.
const std::map<std::string, json>& extra_plan_keys() {
  static const std::map<std::string, json> m = {};
  return m;
}
const std::map<std::string, std::string>& skipped() {
  static const std::map<std::string, std::string> m = {};
  return m;
}

constexpr int kLayers = 2, kKV = 2, kHeads = 4, kDim = 32;
constexpr int kPrompt = 100, kChunk = 25, kDecode = 10, kTokens = kPrompt + kDecode;
constexpr int kBudget = 40, kSinks = 4, kRecent = 8;
constexpr float kScale = 0.17677669f;  // 1/sqrt(32)

// Random K/V/Q of a fake model: k [layer][t][kv][d], v likewise, q [layer][t][head][d]. Key
// norms vary per token so that norm-based policies have something to choose from.
struct Data {
  std::vector<float> k, v, q;
  Data() {
    std::mt19937 rng(1234);
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::uniform_real_distribution<float> scale(0.3f, 2.0f);
    k.resize(static_cast<size_t>(kLayers) * kTokens * kKV * kDim);
    v.resize(k.size());
    q.resize(static_cast<size_t>(kLayers) * kTokens * kHeads * kDim);
    for (size_t i = 0; i < k.size(); i += kDim) {
      const float s = scale(rng);
      for (int d = 0; d < kDim; ++d) k[i + d] = s * n(rng);
    }
    for (float& x : v) x = n(rng);
    for (float& x : q) x = n(rng);
  }
  const float* K(int l, int64_t t) const { return &k[((l * kTokens + t) * kKV) * kDim]; }
  const float* V(int l, int64_t t) const { return &v[((l * kTokens + t) * kKV) * kDim]; }
  const float* Q(int l, int64_t t) const { return &q[((l * kTokens + t) * kHeads) * kDim]; }
  const float* K(int l, int64_t t, int h) const { return K(l, t) + h * kDim; }
  const float* V(int l, int64_t t, int h) const { return V(l, t) + h * kDim; }
};

const Data& data() {
  static const Data d;
  return d;
}

CacheModelInfo model_info() {
  CacheModelInfo m;
  m.n_layer = kLayers;
  m.n_head = kHeads;
  m.n_head_kv = kKV;
  m.head_dim_k = m.head_dim_v = kDim;
  m.kq_scale = kScale;
  m.layer_is_swa.assign(kLayers, false);
  m.n_ctx = 1024;
  return m;
}

// Synthetic per-head calibration vectors (unit length) and a head profile whose (0, 0) and
// (1, 1) heads are retrieval heads, written once per test process.
struct SyntheticFiles {
  test::TempDir dir{"kvs_conformance"};
  Calibration cal;
  SyntheticFiles() {
    cal.n_layer = kLayers;
    cal.n_head_kv = kKV;
    cal.head_dim = kDim;
    std::mt19937 rng(77);
    std::normal_distribution<float> n(0.0f, 1.0f);
    for (int i = 0; i < kLayers * kKV; ++i) {
      std::vector<float> u(kDim);
      double ss = 0.0;
      for (float& x : u) {
        x = n(rng);
        ss += double(x) * x;
      }
      for (float& x : u) cal.data.push_back(static_cast<float>(x / std::sqrt(ss)));
    }
    save_calibration(cal, calibration());
    dir.write("heads.tsv", "0.9\t0.1\n0.2\t0.8\n");
  }
  std::string calibration() const { return dir / "filters.json"; }
  std::string profile() const { return dir / "heads.tsv"; }
};

const SyntheticFiles& files() {
  static const SyntheticFiles f;
  return f;
}

// A cache and its manager, fed like Session::eval / Session::attend feed them.
struct Driver {
  std::unique_ptr<CacheManager> mgr;
  std::unique_ptr<KVCache> cache;
  int64_t n_past = 0;

  explicit Driver(const CachePlan& plan) {
    mgr = std::make_unique<CacheManager>(plan, model_info());
    cache = std::make_unique<KVCache>(mgr->cache_shape(), std::vector<int32_t>(kLayers, 1024));
    mgr->attach(*cache);
  }

  // Evaluates the next n tokens in chunks; without the final after_chunk when `hold_last`
  // (the state the compression at the end of the evaluation sees).
  void eval(int64_t n, int64_t chunk, bool hold_last = false) {
    static ThreadPool pool(1);
    const AttentionBackend& ref = find_attention_backend("reference");
    const AttentionShape shape{kHeads, kKV, kDim, kDim, kScale, 0, 0.0f};
    for (int64_t done = 0; done < n;) {
      const int64_t T = std::min(chunk, n - done);
      std::vector<int32_t> pos(T);
      for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(n_past + t);
      std::vector<float> out(static_cast<size_t>(T) * kHeads * kDim);
      for (int l = 0; l < kLayers; ++l) {
        mgr->before_append(*cache, l, T, n_past + T);
        // n_rot 0: the synthetic queries are already "rotated", so projected query statistics
        // are the plain sample statistics.
        mgr->before_rope(l, data().Q(l, n_past), pos.data(), T, ops::RopeParams{});
        cache->append(l, data().K(l, n_past), data().V(l, n_past), pos.data(), T);
        const KVView view = cache->view(l);
        ref.attend(shape, data().Q(l, n_past), pos.data(), T, view, out.data(), pool);
        mgr->after_attention(l, data().Q(l, n_past), pos.data(), T);
      }
      n_past += T;
      done += T;
      if (!(hold_last && done == n)) mgr->after_chunk(*cache, done == n, n, n_past);
    }
  }

  // n decode steps: evaluations of one token each.
  void decode(int n) {
    for (int i = 0; i < n; ++i) eval(1, 1);
  }

  std::vector<int32_t> positions(int l, int h) const {
    const int32_t* p = cache->positions(l, h);
    return std::vector<int32_t>(p, p + cache->len(l, h));
  }
  std::vector<std::vector<int32_t>> all_positions() const {
    std::vector<std::vector<int32_t>> out;
    for (int l = 0; l < kLayers; ++l)
      for (int h = 0; h < kKV; ++h) out.push_back(positions(l, h));
    return out;
  }
};

PolicyNeeds needs_of(const std::string& policy) {
  return find_policy(policy, "test").make(json::object(), "test")->needs();
}

CachePlan plan_for(const std::string& policy, uint64_t seed = 0) {
  json j = {{"policy", policy}, {"budget", kBudget}, {"sinks", kSinks}, {"recent", kRecent}};
  if (seed != 0) j["seed"] = seed;
  const PolicyNeeds needs = needs_of(policy);
  if (needs.calibration) j["calibration"] = files().calibration();
  if (needs.head_profile) j["head_profile"] = files().profile();
  if (auto it = extra_plan_keys().find(policy); it != extra_plan_keys().end())
    for (const auto& [k, v] : it->second.items()) j[k] = v;
  return parse_cache_plan(j, "conformance:" + policy);
}

std::unique_ptr<CachePolicy> make_policy(const HeadPlan& hp) {
  return find_policy(hp.policy, "test").make(hp.params, "test");
}

// Skips (with the reason) policies that cannot run on synthetic data; fails for a policy
// that cannot run with the plain plan and is in neither list.
#define KVS_SKIP_UNRUNNABLE(name)                                                          \
  do {                                                                                     \
    if (auto it = skipped().find(name); it != skipped().end())                             \
      GTEST_SKIP() << (name) << ": " << it->second;                                        \
    try {                                                                                  \
      const CacheManager probe_(plan_for(name), model_info());                             \
    } catch (const Error& e) {                                                             \
      FAIL() << (name) << " cannot run with {policy, budget, sinks, recent}: " << e.what() \
             << " -- add the plan keys it needs to extra_plan_keys() or list it in "       \
             << "skipped() with a reason";                                                 \
    }                                                                                      \
  } while (0)

// Causal softmax attention of the given queries (original positions = token index) against
// one head's slots, averaged over the queries and the KV group's query heads.
std::vector<float> mean_attention(int l, int h, const std::vector<int32_t>& slot_pos,
                                  int64_t q_first, int64_t q_last) {
  const size_t n = slot_pos.size();
  std::vector<double> acc(n, 0.0), s(n);
  const int group = kHeads / kKV;
  int used = 0;
  for (int64_t t = q_first; t <= q_last; ++t) {
    for (int j = 0; j < group; ++j) {
      const float* q = data().Q(l, t) + (h * group + j) * kDim;
      double mx = -INFINITY;
      for (size_t i = 0; i < n; ++i) {
        if (slot_pos[i] > t) continue;
        double d = 0.0;
        for (int c = 0; c < kDim; ++c) d += double(q[c]) * data().K(l, slot_pos[i], h)[c];
        s[i] = d * kScale;
        mx = std::max(mx, s[i]);
      }
      double sum = 0.0;
      for (size_t i = 0; i < n; ++i)
        if (slot_pos[i] <= t) sum += std::exp(s[i] - mx);
      for (size_t i = 0; i < n; ++i)
        if (slot_pos[i] <= t) acc[i] += std::exp(s[i] - mx) / sum;
      ++used;
    }
  }
  std::vector<float> out(n);
  for (size_t i = 0; i < n; ++i) out[i] = static_cast<float>(acc[i] / used);
  return out;
}

// The slots the manager must keep: sinks, recent, then the best scores (ties: older first).
std::vector<int32_t> expected_keep(const std::vector<float>& score, int32_t budget) {
  const int32_t len = static_cast<int32_t>(score.size());
  std::vector<int32_t> cand, keep;
  for (int32_t s = 0; s < len; ++s) (s < kSinks || s >= len - kRecent ? keep : cand).push_back(s);
  std::stable_sort(cand.begin(), cand.end(),
                   [&](int32_t a, int32_t b) { return score[a] > score[b]; });
  const size_t take = std::min(cand.size(), static_cast<size_t>(budget) - keep.size());
  keep.insert(keep.end(), cand.begin(), cand.begin() + static_cast<std::ptrdiff_t>(take));
  std::sort(keep.begin(), keep.end());
  return keep;
}

// Budget, protection, order and preserved content of every head of a compressed run. A
// compensating policy (razor) holds one extra slot: the mean K and V of every dropped token,
// at the newest dropped position.
void check_invariants(const Driver& r, int64_t n_seen) {
  for (int l = 0; l < kLayers; ++l) {
    for (int h = 0; h < kKV; ++h) {
      SCOPED_TRACE("layer " + std::to_string(l) + " head " + std::to_string(h));
      const std::vector<int32_t> pos = r.positions(l, h);
      const auto pol = make_policy(r.mgr->resolved().at(l, h));
      if (pol->keeps_everything()) {
        EXPECT_EQ(static_cast<int64_t>(pos.size()), n_seen);
        continue;
      }
      EXPECT_EQ(static_cast<int>(pos.size()), kBudget);  // exactly the budget, +0
      for (size_t i = 1; i < pos.size(); ++i) ASSERT_LT(pos[i - 1], pos[i]);
      for (int32_t p : pos) ASSERT_TRUE(p >= 0 && p < n_seen) << p;
      const std::set<int32_t> kept(pos.begin(), pos.end());
      for (int32_t p = 0; p < kSinks; ++p) EXPECT_TRUE(kept.count(p)) << "sink " << p;
      for (int64_t p = n_seen - kRecent; p < n_seen; ++p)
        EXPECT_TRUE(kept.count(static_cast<int32_t>(p))) << "recent " << p;
      // Each slot still holds the K and V of its original position (but a compensation slot).
      std::vector<float> k(pos.size() * kDim), v(pos.size() * kDim);
      r.cache->read_k(l, h, k.data());
      r.cache->read_v(l, h, v.data());
      std::vector<size_t> other;
      std::set<int32_t> plain;
      for (size_t s = 0; s < pos.size(); ++s) {
        bool same = true;
        for (int d = 0; d < kDim; ++d)
          same = same && k[s * kDim + d] == data().K(l, pos[s], h)[d] &&
                 v[s * kDim + d] == data().V(l, pos[s], h)[d];
        if (same)
          plain.insert(pos[s]);
        else
          other.push_back(s);
      }
      if (!pol->compensates()) {
        EXPECT_TRUE(other.empty()) << other.size() << " slots do not hold their original K/V";
        continue;
      }
      ASSERT_EQ(other.size(), 1u) << "one compensation slot";
      const size_t c = other[0];
      std::vector<double> mk(kDim, 0.0), mv(kDim, 0.0);
      int dropped = 0;
      int32_t newest = -1;
      for (int32_t p = 0; p < n_seen; ++p) {
        if (plain.count(p)) continue;
        for (int d = 0; d < kDim; ++d) {
          mk[d] += data().K(l, p, h)[d];
          mv[d] += data().V(l, p, h)[d];
        }
        ++dropped;
        newest = p;
      }
      EXPECT_EQ(pos[c], newest);
      for (int d = 0; d < kDim; ++d) {
        EXPECT_NEAR(k[c * kDim + d], mk[d] / dropped, 1e-5) << d;
        EXPECT_NEAR(v[c * kDim + d], mv[d] / dropped, 1e-5) << d;
      }
    }
  }
}

class PolicyConformance : public ::testing::TestWithParam<std::string> {};

TEST_P(PolicyConformance, KeepsProtectedThenTopScoresWithinBudget) {
  const std::string name = GetParam();
  KVS_SKIP_UNRUNNABLE(name);
  Driver run(plan_for(name));
  run.eval(kPrompt, kChunk);
  EXPECT_EQ(run.mgr->stats().compressions, 1);
  check_invariants(run, kPrompt);

  // The state the compression saw, and the scores the policy gives it.
  Driver before(plan_for(name));
  before.eval(kPrompt, kChunk, /*hold_last=*/true);
  EXPECT_EQ(before.mgr->stats().compressions, 0);
  for (int l = 0; l < kLayers; ++l) {
    for (int h = 0; h < kKV; ++h) {
      SCOPED_TRACE("layer " + std::to_string(l) + " head " + std::to_string(h));
      const HeadPlan& hp = run.mgr->resolved().at(l, h);
      const auto pol = make_policy(hp);
      if (pol->keeps_everything()) continue;
      const PolicyNeeds needs = pol->needs();
      const std::vector<int32_t> all = before.positions(l, h);
      ASSERT_EQ(static_cast<int>(all.size()), kPrompt);
      HeadScoreInput in;
      in.layer = l;
      in.head = h;
      in.n_layer = kLayers;
      in.n_head_kv = kKV;
      in.group = kHeads / kKV;
      in.head_dim_k = in.head_dim_v = kDim;
      in.len = kPrompt;
      in.pos = all.data();
      in.n_seen = kPrompt;
      in.sinks = kSinks;
      in.kq_scale = kScale;
      if (needs.calibration) in.calibration = files().cal.at(l, h);
      std::vector<double> qmean, qcov;  // [group][kDim], [group][kDim][kDim]
      if (needs.query_stats) {
        // Sample mean and covariance (1/N) of the group's queries at positions >= skip.
        const int g = in.group, skip = needs.query_stats_skip;
        const int n = kPrompt - skip;
        qmean.assign(static_cast<size_t>(g) * kDim, 0.0);
        qcov.assign(static_cast<size_t>(g) * kDim * kDim, 0.0);
        for (int j = 0; j < g; ++j) {
          double* m = qmean.data() + j * kDim;
          double* c = qcov.data() + j * kDim * kDim;
          for (int t = skip; t < kPrompt; ++t)
            for (int a = 0; a < kDim; ++a) m[a] += data().Q(l, t)[(h * g + j) * kDim + a] / n;
          for (int t = skip; t < kPrompt; ++t) {
            const float* q = data().Q(l, t) + (h * g + j) * kDim;
            for (int a = 0; a < kDim; ++a)
              for (int b = 0; b < kDim; ++b) c[a * kDim + b] += (q[a] - m[a]) * (q[b] - m[b]) / n;
          }
        }
        in.query_mean = qmean.data();
        in.query_cov = qcov.data();
        in.n_query_stats = n;
      }
      std::vector<float> keys(kPrompt * kDim), values(kPrompt * kDim);
      before.cache->read_k(l, h, keys.data());
      before.cache->read_v(l, h, values.data());
      in.keys = keys.data();
      in.values = values.data();
      std::vector<float> acc, window, last;
      if (needs.attn_accumulated) {
        ASSERT_TRUE(before.cache->has_scores(l)) << "attach() did not enable the score sink";
        acc.assign(before.cache->scores(l, h), before.cache->scores(l, h) + kPrompt);
        // The sink holds the attention mass summed over every query and the group's heads.
        const std::vector<float> mine = mean_attention(l, h, all, 0, kPrompt - 1);
        for (int i = 0; i < kPrompt; ++i)
          ASSERT_NEAR(acc[i], mine[i] * kPrompt * in.group, 1e-4f * (1.0f + acc[i])) << i;
        in.attn_acc = acc.data();
      }
      if (needs.attn_window > 0) {
        const int w = std::min(needs.attn_window, kPrompt);
        window = mean_attention(l, h, all, kPrompt - w, kPrompt - 1);
        in.attn_window = window.data();
      }
      std::vector<float> last_layer;
      if (needs.attn_last_row) {
        last = mean_attention(l, h, all, kPrompt - 1, kPrompt - 1);
        in.attn_last = last.data();
        // The same row averaged over every query head of the layer, matched by position.
        std::map<int32_t, std::pair<double, int>> by_pos;
        for (int h2 = 0; h2 < kKV; ++h2) {
          const std::vector<int32_t> pos2 = before.positions(l, h2);
          const std::vector<float> row = mean_attention(l, h2, pos2, kPrompt - 1, kPrompt - 1);
          for (size_t i = 0; i < pos2.size(); ++i) {
            by_pos[pos2[i]].first += row[i];
            ++by_pos[pos2[i]].second;
          }
        }
        for (int32_t p : all)
          last_layer.push_back(static_cast<float>(by_pos[p].first / by_pos[p].second));
        in.attn_last_layer = last_layer.data();
      }
      std::vector<float> score(kPrompt), other(kPrompt);
      in.seed = 1;
      pol->score(in, score);
      in.seed = 2;
      pol->score(in, other);
      for (float s : score) ASSERT_FALSE(std::isnan(s));
      if (score != other) continue;  // randomized: covered by the seed tests below
      std::vector<int32_t> want;
      // A compensating head spends one slot of its budget on the compensation token.
      for (int32_t s : expected_keep(score, kBudget - (pol->compensates() ? 1 : 0)))
        want.push_back(all[s]);
      std::vector<int32_t> got = run.positions(l, h);
      if (pol->compensates()) {
        std::vector<float> k(got.size() * kDim);
        run.cache->read_k(l, h, k.data());
        std::vector<int32_t> plain;
        for (size_t s = 0; s < got.size(); ++s)
          if (std::equal(k.begin() + s * kDim, k.begin() + (s + 1) * kDim, data().K(l, got[s], h)))
            plain.push_back(got[s]);
        got = plain;
      }
      EXPECT_EQ(got, want);
    }
  }

  // Decode steps then a compression: still within budget, newest tokens kept.
  run.decode(kDecode);
  for (int h = 0; h < kKV; ++h) {
    if (!make_policy(run.mgr->resolved().at(0, h))->keeps_everything()) {
      EXPECT_EQ(run.cache->len(0, h), kBudget + kDecode);  // prefill mode: no decode eviction
    }
  }
  run.mgr->compress(*run.cache, run.n_past);
  check_invariants(run, kTokens);
}

TEST_P(PolicyConformance, DeterministicForASeed) {
  const std::string name = GetParam();
  KVS_SKIP_UNRUNNABLE(name);
  auto run = [&](uint64_t seed) {
    Driver r(plan_for(name, seed));
    r.eval(kPrompt, kChunk);
    auto a = r.all_positions();
    r.decode(kDecode);
    r.mgr->compress(*r.cache, r.n_past);
    auto b = r.all_positions();
    a.insert(a.end(), b.begin(), b.end());
    return a;
  };
  const auto first = run(5);
  EXPECT_EQ(first, run(5));
  // Randomized policies (scores depend on the seed) must change their choice with the seed;
  // the others must not depend on it.
  Driver probe(plan_for(name));
  const auto pol = make_policy(probe.mgr->resolved().at(1, 0));
  if (pol->keeps_everything()) return;
  std::vector<int32_t> pos(kPrompt);
  for (int i = 0; i < kPrompt; ++i) pos[i] = i;
  std::vector<float> keys(kPrompt * kDim), values(kPrompt * kDim), flat(kPrompt, 0.01f);
  for (int t = 0; t < kPrompt; ++t)
    for (int d = 0; d < kDim; ++d) {
      keys[t * kDim + d] = data().K(1, t, 0)[d];
      values[t * kDim + d] = data().V(1, t, 0)[d];
    }
  HeadScoreInput in;
  in.layer = 1;
  in.n_layer = kLayers;
  in.n_head_kv = kKV;
  in.group = kHeads / kKV;
  in.head_dim_k = in.head_dim_v = kDim;
  in.len = kPrompt;
  in.pos = pos.data();
  in.keys = keys.data();
  in.values = values.data();
  in.attn_acc = in.attn_last = in.attn_window = in.attn_last_layer = flat.data();
  in.calibration = files().cal.at(1, 0);
  in.kq_scale = kScale;
  in.sinks = kSinks;
  in.n_seen = kPrompt;
  std::vector<float> s1(kPrompt), s2(kPrompt);
  in.seed = 11;
  pol->score(in, s1);
  in.seed = 12;
  pol->score(in, s2);
  if (s1 != s2) {
    EXPECT_NE(first, run(6)) << name << " is randomized but ignores the plan's seed";
  } else {
    EXPECT_EQ(first, run(6)) << name << " depends on the seed but its scores do not";
  }
}

// Every registered policy must be constructible with no parameters or be listed above, and
// reject unknown parameters naming the key.
TEST_P(PolicyConformance, RejectsUnknownParameters) {
  const std::string name = GetParam();
  const PolicyInfo& info = find_policy(name, "test");
  EXPECT_EQ(info.name, name);
  EXPECT_FALSE(info.description.empty());
  try {
    info.make(json{{"no_such_param", 1}}, "layers.3.params");
    ADD_FAILURE() << name << " accepted an unknown parameter";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("layers.3.params"), std::string::npos) << m;
    EXPECT_NE(m.find("no_such_param"), std::string::npos) << m;
  }
  if (!extra_plan_keys().count(name) && !skipped().count(name)) {
    const auto pol = info.make(json::object(), "params");
    EXPECT_EQ(pol->name(), name);
  }
}

std::vector<std::string> policy_names() {
  std::vector<std::string> out;
  for (const PolicyInfo* p : policies()) out.push_back(p->name);
  return out;
}

INSTANTIATE_TEST_SUITE_P(Registered, PolicyConformance, ::testing::ValuesIn(policy_names()),
                         [](const ::testing::TestParamInfo<std::string>& info) {
                           std::string s = info.param;
                           for (char& c : s)
                             if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
                           return s;
                         });

TEST(PolicyRegistry, ListsTheBaselinePoliciesSortedAndRejectsUnknownNames) {
  const auto names = policy_names();
  EXPECT_TRUE(std::is_sorted(names.begin(), names.end()));
  for (const char* want :
       {"full", "window", "streaming", "h2o", "tova", "snapkv", "knorm", "random"})
    EXPECT_NE(std::find(names.begin(), names.end(), want), names.end()) << want;
  try {
    find_policy("no-such-policy", "heads.1:2");
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("heads.1:2"), std::string::npos) << m;
    EXPECT_NE(m.find("'no-such-policy'"), std::string::npos) << m;
    EXPECT_NE(m.find("knorm"), std::string::npos) << m;
  }
}

}  // namespace
}  // namespace kvs
