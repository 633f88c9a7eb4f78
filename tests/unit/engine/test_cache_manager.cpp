// CacheManager invariants on synthetic data: compaction equals masking, the allocators'
// budgets (uniform, PyramidKV, AdaKV), when each compress mode fires, storage types, and
// memory that is really returned.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "cache/kv_cache.h"
#include "cache/manager.h"
#include "cache/plan.h"
#include "kernels/attention/backend.h"
#include "kernels/core/thread_pool.h"

namespace kvs {
namespace {

using json = nlohmann::json;

struct Shape {
  int n_layer = 2, n_kv = 2, n_head = 4, hd = 32, n_tokens = 160;
};

// Random K/V/Q: k [layer][t][kv][d], v likewise, q [layer][t][head][d]. key_scale[h] scales
// the keys of KV head h (to give heads different score ranges).
struct Data {
  Shape s;
  std::vector<float> k, v, q;
  explicit Data(Shape shape, std::vector<float> key_scale = {}, uint32_t seed = 99) : s(shape) {
    key_scale.resize(s.n_kv, 1.0f);
    std::mt19937 rng(seed);
    std::normal_distribution<float> n(0.0f, 1.0f);
    std::uniform_real_distribution<float> u(0.3f, 2.0f);
    k.resize(static_cast<size_t>(s.n_layer) * s.n_tokens * s.n_kv * s.hd);
    v.resize(k.size());
    q.resize(static_cast<size_t>(s.n_layer) * s.n_tokens * s.n_head * s.hd);
    for (size_t i = 0; i < k.size(); i += s.hd) {
      const float sc = u(rng) * key_scale[(i / s.hd) % s.n_kv];
      for (int d = 0; d < s.hd; ++d) k[i + d] = sc * n(rng);
    }
    for (float& x : v) x = n(rng);
    for (float& x : q) x = n(rng);
  }
  const float* K(int l, int64_t t) const { return &k[((l * s.n_tokens + t) * s.n_kv) * s.hd]; }
  const float* V(int l, int64_t t) const { return &v[((l * s.n_tokens + t) * s.n_kv) * s.hd]; }
  const float* Q(int l, int64_t t) const { return &q[((l * s.n_tokens + t) * s.n_head) * s.hd]; }
};

float scale_of(const Shape& s) {
  return 1.0f / std::sqrt(static_cast<float>(s.hd));
}

CacheModelInfo info_of(const Shape& s) {
  CacheModelInfo m;
  m.n_layer = s.n_layer;
  m.n_head = s.n_head;
  m.n_head_kv = s.n_kv;
  m.head_dim_k = m.head_dim_v = s.hd;
  m.kq_scale = scale_of(s);
  m.layer_is_swa.assign(s.n_layer, false);
  m.n_ctx = 4096;
  return m;
}

AttentionShape attn_shape(const Shape& s) {
  return {s.n_head, s.n_kv, s.hd, s.hd, scale_of(s), 0, 0.0f};
}

ThreadPool& pool() {
  static ThreadPool p(1);
  return p;
}

CachePlan plan(const std::string& text) {
  return parse_cache_plan(json::parse(text), "inline");
}

// A cache and its manager fed the way Session::eval / Session::attend feed them. Records the
// attention output of the last call per layer and what after_chunk saw.
struct Driver {
  const Data& d;
  std::unique_ptr<CacheManager> mgr;
  std::unique_ptr<KVCache> cache;
  int64_t n_past = 0;
  std::vector<std::vector<float>> out;  // [layer] last attention output
  int32_t max_len_seen = 0;             // longest head right after any append

  Driver(const Data& data, const CachePlan& p) : d(data), out(data.s.n_layer) {
    mgr = std::make_unique<CacheManager>(p, info_of(d.s));
    cache = std::make_unique<KVCache>(mgr->cache_shape(),
                                      std::vector<int32_t>(d.s.n_layer, d.s.n_tokens));
    mgr->attach(*cache);
  }

  // One evaluation of n tokens in chunks; `after_each(done)` runs after each after_chunk.
  void eval(int64_t n, int64_t chunk, const std::function<void(int64_t)>& after_each = {}) {
    const AttentionBackend& ref = find_attention_backend("reference");
    for (int64_t done = 0; done < n;) {
      const int64_t T = std::min(chunk, n - done);
      std::vector<int32_t> pos(T);
      for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(n_past + t);
      for (int l = 0; l < d.s.n_layer; ++l) {
        mgr->before_append(*cache, l, T, n_past + T);
        cache->append(l, d.K(l, n_past), d.V(l, n_past), pos.data(), T);
        for (int h = 0; h < d.s.n_kv; ++h) max_len_seen = std::max(max_len_seen, cache->len(l, h));
        out[l].assign(static_cast<size_t>(T) * d.s.n_head * d.s.hd, 0.0f);
        ref.attend(attn_shape(d.s), d.Q(l, n_past), pos.data(), T, cache->view(l), out[l].data(),
                   pool());
        mgr->after_attention(l, d.Q(l, n_past), pos.data(), T);
      }
      n_past += T;
      done += T;
      mgr->after_chunk(*cache, done == n, n, n_past);
      if (after_each) after_each(done);
    }
  }
  void decode(int steps, const std::function<void(int)>& after_each = {}) {
    for (int i = 1; i <= steps; ++i) {
      eval(1, 1);
      if (after_each) after_each(i);
    }
  }
  std::vector<int32_t> positions(int l, int h) const {
    const int32_t* p = cache->positions(l, h);
    return std::vector<int32_t>(p, p + cache->len(l, h));
  }
};

// ---- compaction equals masking ----

// Attention of the tokens [t0, t0 + T) over the full K/V of [0, t0 + T) where slots that the
// compacted cache dropped are masked out (their position is pushed past every query).
std::vector<float> masked_full_attention(const Data& d, const Driver& compacted, int l, int64_t t0,
                                         int64_t T) {
  const int64_t n = t0 + T;
  KVCacheShape shape{1, d.s.n_kv, d.s.hd, d.s.hd, {DType::F32}, {DType::F32}};
  KVCache full(shape, {static_cast<int32_t>(n)});
  std::vector<int32_t> pos(n);
  for (int64_t t = 0; t < n; ++t) pos[t] = static_cast<int32_t>(t);
  full.append(0, d.K(l, 0), d.V(l, 0), pos.data(), n);
  KVView view = full.view(0);
  std::vector<std::vector<int32_t>> masked(d.s.n_kv, std::vector<int32_t>(n));
  for (int h = 0; h < d.s.n_kv; ++h) {
    const auto kept = compacted.positions(l, h);
    const std::set<int32_t> keep(kept.begin(), kept.end());
    for (int64_t t = 0; t < n; ++t)
      masked[h][t] = keep.count(static_cast<int32_t>(t)) ? static_cast<int32_t>(t) : INT32_MAX;
    view.heads[h].pos = masked[h].data();
  }
  std::vector<float> out(static_cast<size_t>(T) * d.s.n_head * d.s.hd);
  std::vector<int32_t> qpos(pos.begin() + t0, pos.end());
  find_attention_backend("reference")
      .attend(attn_shape(d.s), d.Q(l, t0), qpos.data(), T, view, out.data(), pool());
  return out;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, float tol) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) ASSERT_NEAR(a[i], b[i], tol) << "at " << i;
}

TEST(CacheManager, CompactionEqualsMasking) {
  const Data d(Shape{});
  for (
      const char* p :
      {R"({"policy": "knorm", "budget": 24, "sinks": 2, "recent": 4,
            "compress": {"when": "decode", "every": 3}})",
       R"({"policy": "h2o", "budget": 0.3, "recent": 6, "compress": {"when": "decode", "every": 2}})",
       R"({"policy": "tova", "budget": 20, "sinks": 1, "compress": "overflow", "margin": 3})"}) {
    SCOPED_TRACE(p);
    Driver r(d, plan(p));
    r.eval(60, 16);
    ASSERT_GE(r.mgr->stats().compressions, 1);
    r.decode(12);  // compressions happen between the steps
    // New queries over the compacted cache: 5 tokens appended without compressing.
    const int64_t t0 = r.n_past;
    // Append the new tokens to the compacted cache without compressing, then attend.
    const AttentionBackend& ref = find_attention_backend("reference");
    const int64_t T = 5;
    std::vector<int32_t> pos(T);
    for (int64_t t = 0; t < T; ++t) pos[t] = static_cast<int32_t>(t0 + t);
    for (int l = 0; l < d.s.n_layer; ++l) {
      r.cache->append(l, d.K(l, t0), d.V(l, t0), pos.data(), T);
      std::vector<float> out(static_cast<size_t>(T) * d.s.n_head * d.s.hd);
      ref.attend(attn_shape(d.s), d.Q(l, t0), pos.data(), T, r.cache->view(l), out.data(), pool());
      expect_close(out, masked_full_attention(d, r, l, t0, T), 1e-5f);
    }
  }
}

// Every decode step, with compressions in between: what the model saw over the compacted
// cache equals full attention with the evicted slots masked.
TEST(CacheManager, CompactionEqualsMaskingAtEveryDecodeStep) {
  const Data d(Shape{});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 16, "sinks": 2, "recent": 3,
                    "compress": {"when": "decode", "every": 2}, "margin": 0})"));
  r.eval(48, 48);
  ASSERT_EQ(r.cache->len(0, 0), 16);
  const AttentionBackend& ref = find_attention_backend("reference");
  for (int step = 0; step < 10; ++step) {
    const int64_t t = r.n_past;
    const int32_t pos[1] = {static_cast<int32_t>(t)};
    for (int l = 0; l < d.s.n_layer; ++l) {
      r.mgr->before_append(*r.cache, l, 1, t + 1);
      r.cache->append(l, d.K(l, t), d.V(l, t), pos, 1);
      std::vector<float> out(static_cast<size_t>(d.s.n_head) * d.s.hd);
      ref.attend(attn_shape(d.s), d.Q(l, t), pos, 1, r.cache->view(l), out.data(), pool());
      r.mgr->after_attention(l, d.Q(l, t), pos, 1);
      expect_close(out, masked_full_attention(d, r, l, t, 1), 1e-5f);
    }
    r.n_past = t + 1;
    r.mgr->after_chunk(*r.cache, true, 1, r.n_past);
  }
  EXPECT_EQ(r.mgr->stats().compressions, 1 + 5);
}

// ---- allocators ----

TEST(CacheAllocators, UniformGivesEveryHeadTheBudget) {
  const Data d(Shape{3, 3, 6, 32, 160});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 0.25, "sinks": 2, "recent": 4})"));
  r.eval(100, 32);
  for (int l = 0; l < 3; ++l)
    for (int h = 0; h < 3; ++h) EXPECT_EQ(r.cache->len(l, h), 25);
}

// PyramidKV as kvpress computes it: for an average budget B, window w (the head's `recent`)
// and n cached tokens, min = B / beta, max = 2B - min; when max >= n - w, max = n - w and
// min = 2B - max; layer l of L keeps round_half_even(max - l (max - min) / (L - 1)), or B
// when not n >= max >= min >= w.
std::vector<int> pyramid_lengths(const Data& d, const std::string& p, int64_t n) {
  Driver r(d, plan(p));
  r.eval(n, 50);
  std::vector<int> out;
  for (int l = 0; l < d.s.n_layer; ++l) {
    for (int h = 1; h < d.s.n_kv; ++h) EXPECT_EQ(r.cache->len(l, h), r.cache->len(l, 0));
    out.push_back(r.cache->len(l, 0));
  }
  return out;
}

TEST(CacheAllocators, PyramidFollowsThePyramidKVFormula) {
  const Data d(Shape{4, 2, 4, 32, 160});
  // B = 40, w = 0, beta = 20, n = 100: min = 2, max = 78, step 25.33: 78, 52.67, 27.33, 2.
  EXPECT_EQ(pyramid_lengths(d, R"({"policy": "knorm", "budget": 40, "allocator": "pyramid"})", 100),
            (std::vector<int>{78, 53, 27, 2}));
  // Clamped to the cache: B = 40, w = 4, beta = 5, n = 60: max = 72 >= 56, so max = 56,
  // min = 24, step 10.67: 56, 45.33, 34.67, 24. The layers still sum to 4 B.
  EXPECT_EQ(pyramid_lengths(d, R"({"policy": "knorm", "budget": 40, "recent": 4,
                                   "allocator": {"name": "pyramid", "beta": 5}})",
                            60),
            (std::vector<int>{56, 45, 35, 24}));
  // Degenerate (min = 2 < w = 8): every layer keeps B.
  EXPECT_EQ(pyramid_lengths(d, R"({"policy": "knorm", "budget": 40, "recent": 8,
                                   "allocator": "pyramid"})",
                            100),
            (std::vector<int>{40, 40, 40, 40}));
}

TEST(CacheAllocators, PyramidRoundsHalfToEven) {
  // B = 20, beta = 4, n = 100, 5 layers: min = 5, max = 35, step 7.5: 35, 27.5, 20, 12.5, 5.
  const Data d(Shape{5, 2, 4, 32, 160});
  EXPECT_EQ(pyramid_lengths(d, R"({"policy": "knorm", "budget": 20,
                                   "allocator": {"name": "pyramid", "beta": 4}})",
                            100),
            (std::vector<int>{35, 28, 20, 12, 5}));
}

TEST(CacheAllocators, AdaptiveGivesTheHeadWithTheBestScoresMoreAboveAFloor) {
  // knorm scores -||k||: head 0's keys are 20x smaller than head 1's, so all of head 0's
  // candidates beat head 1's in the layer's pool.
  const Data d(Shape{1, 2, 4, 32, 160}, {0.05f, 1.0f});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 20, "allocator": "adaptive"})"));
  r.eval(100, 50);
  // Each head's floor is 20% of its share (4); the other 32 go to head 0.
  EXPECT_EQ(r.cache->len(0, 0), 36);
  EXPECT_EQ(r.cache->len(0, 1), 4);
  Driver f(d, plan(R"({"policy": "knorm", "budget": 20,
                    "allocator": {"name": "adaptive", "floor": 0.5}})"));
  f.eval(100, 50);
  EXPECT_EQ(f.cache->len(0, 0), 30);
  EXPECT_EQ(f.cache->len(0, 1), 10);
  // Head 1 keeps its floor of best (lowest-norm) keys, protected slots come on top.
  Driver p(d, plan(R"({"policy": "knorm", "budget": 20, "sinks": 2, "recent": 2,
                    "allocator": "adaptive"})"));
  p.eval(100, 50);
  // Shares are 16 each, floors 3; 26 pooled slots go to head 0.
  EXPECT_EQ(p.cache->len(0, 0), 4 + 3 + 26);
  EXPECT_EQ(p.cache->len(0, 1), 4 + 3);
  EXPECT_EQ(p.cache->len(0, 0) + p.cache->len(0, 1), 2 * 20);
}

TEST(CacheAllocators, AdaptiveRespectsEachFloorAndTheLayerTotal) {
  const Data d(Shape{2, 4, 8, 32, 160});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 30, "sinks": 2, "recent": 4,
                    "allocator": "adaptive"})"));
  r.eval(120, 40);
  for (int l = 0; l < 2; ++l) {
    int total = 0;
    for (int h = 0; h < 4; ++h) {
      EXPECT_GE(r.cache->len(l, h), 6 + static_cast<int>(0.2 * 24)) << l << ":" << h;
      total += r.cache->len(l, h);
    }
    EXPECT_EQ(total, 4 * 30) << "layer " << l;
  }
}

// ---- compress modes ----

TEST(CompressModes, PrefillCompressesOnceAfterTheLastChunkOnly) {
  const Data d(Shape{});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 20})"));
  std::vector<int32_t> lens;
  r.eval(50, 10, [&](int64_t) { lens.push_back(r.cache->len(1, 0)); });
  EXPECT_EQ(lens, (std::vector<int32_t>{10, 20, 30, 40, 20}));
  EXPECT_EQ(r.mgr->stats().compressions, 1);
  r.decode(5);
  EXPECT_EQ(r.cache->len(1, 0), 25);  // decode steps are not evaluations of several tokens
  EXPECT_EQ(r.mgr->stats().compressions, 1);
  r.eval(8, 4);  // the next multi-token evaluation (a chat turn) compresses again
  EXPECT_EQ(r.cache->len(1, 0), 20);
  EXPECT_EQ(r.mgr->stats().compressions, 2);
}

TEST(CompressModes, ChunkCompressesAfterEveryChunkThenOnOverflowWhileDecoding) {
  const Data d(Shape{});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 20, "compress": "chunk", "margin": 4})"));
  std::vector<int32_t> lens;
  r.eval(50, 10, [&](int64_t) { lens.push_back(r.cache->len(1, 0)); });
  EXPECT_EQ(lens, (std::vector<int32_t>{10, 20, 20, 20, 20}));
  EXPECT_EQ(r.mgr->stats().compressions, 5);
  EXPECT_EQ(r.max_len_seen, 30);  // a chunk on top of the budget
  lens.clear();
  r.decode(10, [&](int) { lens.push_back(r.cache->len(1, 0)); });
  // 21..24, then 24 + 1 > 20 + margin: compress to 20 before appending.
  EXPECT_EQ(lens, (std::vector<int32_t>{21, 22, 23, 24, 21, 22, 23, 24, 21, 22}));
}

TEST(CompressModes, DecodeCompressesAfterThePromptAndEveryNSteps) {
  const Data d(Shape{});
  Driver r(
      d, plan(R"({"policy": "knorm", "budget": 20, "compress": {"when": "decode", "every": 4}})"));
  r.eval(50, 10);
  EXPECT_EQ(r.cache->len(0, 1), 20);
  EXPECT_EQ(r.mgr->stats().compressions, 1);
  std::vector<int32_t> lens;
  r.decode(9, [&](int) { lens.push_back(r.cache->len(0, 1)); });
  EXPECT_EQ(lens, (std::vector<int32_t>{21, 22, 23, 20, 21, 22, 23, 20, 21}));
  EXPECT_EQ(r.mgr->stats().compressions, 3);
}

TEST(CompressModes, OverflowCompressesBeforeAnAppendWouldPassBudgetPlusMargin) {
  const Data d(Shape{});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 20, "compress": "overflow", "margin": 4})"));
  std::vector<int32_t> lens;
  r.eval(50, 10, [&](int64_t) { lens.push_back(r.cache->len(1, 0)); });
  // 10, 20; then 20 + 10 > 24: compress (nothing to drop) and append: 30; 30 -> 20 + 10.
  EXPECT_EQ(lens, (std::vector<int32_t>{10, 20, 30, 30, 30}));
  lens.clear();
  r.decode(6, [&](int) { lens.push_back(r.cache->len(1, 0)); });
  EXPECT_EQ(lens, (std::vector<int32_t>{21, 22, 23, 24, 21, 22}));
  // Never more than the budget plus max(margin, chunk).
  EXPECT_LE(r.max_len_seen, 30);
}

TEST(CompressModes, FullHeadsAreNeverCompressed) {
  const Data d(Shape{});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 10, "compress": "overflow", "margin": 0,
                    "heads": {"1:1": "full"}})"));
  r.eval(40, 8);
  r.decode(5);
  EXPECT_EQ(r.cache->len(1, 1), 45);
  EXPECT_LE(r.cache->len(1, 0), 10 + 8);
  EXPECT_LE(r.cache->len(0, 0), 10 + 8);
}

// ---- storage types ----

// Output of attention over a cache stored in `t` vs f32, same data, no eviction.
float max_attention_error(DType t) {
  const Shape s{1, 2, 4, 64, 96};
  const Data d(s);
  auto run = [&](DType type) {
    KVCacheShape shape{1, s.n_kv, s.hd, s.hd, {type}, {type}};
    KVCache c(shape, {s.n_tokens});
    std::vector<int32_t> pos(s.n_tokens);
    for (int i = 0; i < s.n_tokens; ++i) pos[i] = i;
    c.append(0, d.K(0, 0), d.V(0, 0), pos.data(), s.n_tokens);
    std::vector<float> out(static_cast<size_t>(s.n_tokens) * s.n_head * s.hd);
    find_attention_backend("reference")
        .attend(attn_shape(s), d.Q(0, 0), pos.data(), s.n_tokens, c.view(0), out.data(), pool());
    return out;
  };
  const auto ref = run(DType::F32), got = run(t);
  float err = 0.0f;
  for (size_t i = 0; i < ref.size(); ++i) err = std::max(err, std::abs(ref[i] - got[i]));
  return err;
}

TEST(CacheStorage, ReducedPrecisionAttentionStaysCloseToF32) {
  // Stated tolerances on the max abs error of the output (q, k, v ~ N(0, 1), head dim 64,
  // 96 tokens): measured 1.1e-3 (f16), 1.2e-2 (bf16), 2.4e-2 (q8), 0.43 (q4).
  EXPECT_LT(max_attention_error(DType::F16), 5e-3f);
  EXPECT_LT(max_attention_error(DType::BF16), 4e-2f);
  EXPECT_LT(max_attention_error(DType::Q8_0), 6e-2f);
  EXPECT_LT(max_attention_error(DType::Q4_0), 1.0f);
  EXPECT_GT(max_attention_error(DType::Q4_0), max_attention_error(DType::Q8_0));
}

TEST(CacheStorage, PlanStorageSetsTheCacheTypesAndBytesPerSlot) {
  const Data d(Shape{2, 2, 4, 64, 160});
  struct Case {
    const char* storage;
    size_t slot_bytes;  // K + V of one slot, head dim 64
  } cases[] = {{R"("f32")", 2 * 256},
               {R"("f16")", 2 * 128},
               {R"("q8")", 2 * 68},
               {R"("q4")", 2 * 36},
               {R"({"k": "q8", "v": "f16"})", 68 + 128}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.storage);
    Driver r(d, plan(std::string(R"({"policy": "knorm", "budget": 30, "sinks": 2, "storage": )") +
                     c.storage + "}"));
    EXPECT_EQ(r.cache->slot_bytes(0), c.slot_bytes);
    r.eval(100, 25);
    EXPECT_EQ(r.cache->len(0, 0), 30);
    EXPECT_EQ(r.cache->bytes_in_use(), 2u * 2 * 30 * c.slot_bytes);
  }
}

TEST(CacheStorage, CompactingAQ8CacheKeepsTheQuantizedRowsExactly) {
  const Data d(Shape{1, 2, 4, 64, 160});
  Driver q8(d, plan(R"({"policy": "knorm", "budget": 30, "sinks": 2, "storage": "q8"})"));
  Driver f32(d, plan(R"({"policy": "knorm", "budget": 30, "sinks": 2})"));
  q8.eval(100, 25);
  f32.eval(100, 25);
  // Rows are what q8 stores for those positions: a fresh q8 cache holding all tokens.
  KVCacheShape shape{1, 2, 64, 64, {DType::Q8_0}, {DType::Q8_0}};
  KVCache all(shape, {100});
  std::vector<int32_t> pos(100);
  for (int i = 0; i < 100; ++i) pos[i] = i;
  all.append(0, d.K(0, 0), d.V(0, 0), pos.data(), 100);
  for (int h = 0; h < 2; ++h) {
    const auto kept = q8.positions(0, h);
    ASSERT_EQ(kept.size(), 30u);
    std::vector<float> k(30 * 64), v(30 * 64), ka(100 * 64), va(100 * 64);
    q8.cache->read_k(0, h, k.data());
    q8.cache->read_v(0, h, v.data());
    all.read_k(0, h, ka.data());
    all.read_v(0, h, va.data());
    for (size_t s = 0; s < kept.size(); ++s)
      for (int c = 0; c < 64; ++c) {
        ASSERT_EQ(k[s * 64 + c], ka[kept[s] * 64 + c]);
        ASSERT_EQ(v[s * 64 + c], va[kept[s] * 64 + c]);
      }
    // Norms of dequantized keys pick nearly the same tokens as f32.
    const auto exact = f32.positions(0, h);
    size_t common = 0;
    for (int32_t p : kept) common += std::count(exact.begin(), exact.end(), p);
    EXPECT_GE(common, 26u);
  }
}

// ---- memory really freed ----

TEST(CacheMemory, CompressionReturnsMemoryAndPeakIsTracked) {
  const Data d(Shape{});
  Driver r(d, plan(R"({"policy": "knorm", "budget": 20, "margin": 4})"));
  r.eval(120, 40);
  const size_t slot = r.cache->slot_bytes(0);
  // Before compression every head held 120 slots (its growth bound is 160).
  const size_t peak = r.cache->peak_bytes_allocated();
  EXPECT_GE(peak, 2u * 2 * 120 * slot);
  EXPECT_LE(peak, 2u * 2 * 160 * slot);
  // After: 20 slots in use + 4 free per head, nothing else.
  EXPECT_EQ(r.cache->bytes_in_use(), 2u * 2 * 20 * slot);
  EXPECT_EQ(r.cache->bytes_allocated(), 2u * 2 * 24 * slot);
  for (int l = 0; l < 2; ++l)
    for (int h = 0; h < 2; ++h) EXPECT_EQ(r.cache->capacity(l, h), 24);
  EXPECT_EQ(r.cache->peak_bytes_allocated(), peak);  // the peak stays
  // Decoding within the margin allocates nothing new.
  r.decode(4);
  EXPECT_EQ(r.cache->bytes_allocated(), 2u * 2 * 24 * slot);
  EXPECT_EQ(r.cache->tokens_in_layer(0), 2 * 24);
}

TEST(CacheMemory, ChunkModeBoundsThePeakByBudgetMarginAndChunk) {
  const Data d(Shape{2, 2, 4, 32, 400});
  const int budget = 64, margin = 16, chunk = 32;
  Driver r(d, plan(R"({"policy": "streaming", "budget": 64, "compress": "chunk", "margin": 16})"));
  size_t worst = 0;
  r.eval(400, chunk, [&](int64_t) { worst = std::max(worst, r.cache->bytes_allocated()); });
  const size_t bound = 2u * 2 * (budget + margin + chunk) * r.cache->slot_bytes(0);
  EXPECT_LE(r.cache->peak_bytes_allocated(), bound)
      << "peak " << r.cache->peak_bytes_allocated() / r.cache->slot_bytes(0) / 4
      << " slots per head";
  EXPECT_LE(worst, bound);
}

}  // namespace
}  // namespace kvs
