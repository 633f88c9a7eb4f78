#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/attention/backend.h"
#include "kernels/core/dtype.h"
#include "kernels/core/error.h"
#include "kernels/core/quant.h"

namespace kvs {
namespace {

// One attention call's inputs, with the cache stored in k_dtype / v_dtype.
struct Problem {
  AttentionShape shape;
  DType k_dtype = DType::F32;
  DType v_dtype = DType::F32;
  int64_t T = 0;
  std::vector<float> q;                    // [T][n_head][head_dim_k]
  std::vector<int32_t> q_pos;              // [T]
  std::vector<std::vector<uint8_t>> k, v;  // per KV head: [len][row bytes]
  std::vector<std::vector<int32_t>> pos;   // per KV head: [len]
};

struct Layout {
  int64_t T = 1;
  int n_head = 4, n_kv = 4, dk = 64, dv = 64;
  int window = 0;
  float softcap = 0.0f;
  DType kt = DType::F32, vt = DType::F32;
  std::vector<int> old;  // per KV head (cycled): earlier tokens still cached
  int future = 0;        // slots of head 1 past the last query (never visible)
  uint32_t seed = 1;
};

std::vector<uint8_t> store_rows(DType t, const std::vector<float>& x, int64_t rows, int dim) {
  const size_t rb = row_bytes(t, dim);
  std::vector<uint8_t> out(rows * rb);  // [rows][rb]
  for (int64_t r = 0; r < rows; ++r) quantize_row(t, x.data() + r * dim, out.data() + r * rb, dim);
  return out;
}

// Each KV head caches a random subset of the earlier positions [0, P0) (what eviction leaves)
// plus the T new tokens P0 .. P0+T-1, in shuffled slot order; the queries are the new tokens.
Problem make_problem(const Layout& L) {
  std::mt19937 rng(L.seed);
  std::normal_distribution<float> nd;
  Problem p;
  p.shape = {L.n_head, L.n_kv,   L.dk, L.dv, 1.0f / std::sqrt(static_cast<float>(L.dk)),
             L.window, L.softcap};
  p.k_dtype = L.kt;
  p.v_dtype = L.vt;
  p.T = L.T;
  const int max_old = *std::max_element(L.old.begin(), L.old.end());
  const int32_t p0 = 2 * max_old + 7;
  for (int64_t t = 0; t < L.T; ++t) p.q_pos.push_back(p0 + static_cast<int32_t>(t));
  p.q.resize(L.T * L.n_head * L.dk);
  // Sharper than unit scores, so the softcap bends some of them.
  for (auto& x : p.q) x = 2.5f * nd(rng);
  for (int g = 0; g < L.n_kv; ++g) {
    std::vector<int32_t> earlier(p0);  // [p0] candidate old positions
    std::iota(earlier.begin(), earlier.end(), 0);
    std::shuffle(earlier.begin(), earlier.end(), rng);
    std::vector<int32_t> pos(earlier.begin(), earlier.begin() + L.old[g % L.old.size()]);
    for (int64_t t = 0; t < L.T; ++t) pos.push_back(p.q_pos[t]);
    if (g == 1)
      for (int f = 0; f < L.future; ++f) pos.push_back(p0 + static_cast<int32_t>(L.T) + 3 * f);
    std::shuffle(pos.begin(), pos.end(), rng);
    const int64_t len = static_cast<int64_t>(pos.size());
    std::vector<float> kf(len * L.dk), vf(len * L.dv);  // [len][dk], [len][dv]
    for (auto& x : kf) x = nd(rng);
    for (auto& x : vf) x = nd(rng);
    p.k.push_back(store_rows(L.kt, kf, len, L.dk));
    p.v.push_back(store_rows(L.vt, vf, len, L.dv));
    p.pos.push_back(std::move(pos));
  }
  return p;
}

struct Result {
  std::vector<float> out;                     // [T][n_head][head_dim_v]
  std::vector<std::vector<float>> acc, last;  // per KV head: [len], empty when not requested
};

// Sinks on: head g gets score_acc unless g % 3 == 2 and score_last unless g % 3 == 1, so some
// heads have one sink only. score_acc starts non-zero (it accumulates) and score_last dirty
// (it must be cleared).
Result run(const AttentionBackend& be, const Problem& p, int threads, bool sinks) {
  ThreadPool pool(threads);
  Result r;
  r.out.assign(p.T * p.shape.n_head * p.shape.head_dim_v, -7.0f);
  KVView kv;
  kv.k_dtype = p.k_dtype;
  kv.v_dtype = p.v_dtype;
  const int n_kv = p.shape.n_head_kv;
  r.acc.resize(n_kv);
  r.last.resize(n_kv);
  for (int g = 0; g < n_kv; ++g) {
    const int32_t len = static_cast<int32_t>(p.pos[g].size());
    KVHeadView h{p.k[g].data(), p.v[g].data(), p.pos[g].data(), len, nullptr, nullptr};
    if (sinks && g % 3 != 2) {
      r.acc[g].assign(len, 0.25f);
      h.score_acc = r.acc[g].data();
    }
    if (sinks && g % 3 != 1) {
      r.last[g].assign(len, 9.0f);
      h.score_last = r.last[g].data();
    }
    kv.heads.push_back(h);
  }
  EXPECT_EQ(be.supports(p.shape, kv), "");
  be.attend(p.shape, p.q.data(), p.q_pos.data(), p.T, kv, r.out.data(), pool);
  return r;
}

void expect_close(const Result& want, const Result& got, double out_rel, double sink_abs) {
  ASSERT_EQ(want.out.size(), got.out.size());
  double worst = 0.0;
  size_t at = 0;
  for (size_t i = 0; i < want.out.size(); ++i) {
    const double e = std::abs(double{want.out[i]} - got.out[i]) / (1.0 + std::abs(want.out[i]));
    if (!(e <= worst)) {  // also catches NaN
      worst = std::isnan(e) ? INFINITY : e;
      at = i;
    }
  }
  EXPECT_LE(worst, out_rel) << "out[" << at << "] want " << want.out[at] << " got " << got.out[at];
  for (size_t g = 0; g < want.acc.size(); ++g) {
    for (auto sink : {&Result::acc, &Result::last}) {
      const auto& w = (want.*sink)[g];
      const auto& o = (got.*sink)[g];
      if (o.empty()) continue;  // not requested from `got`
      ASSERT_EQ(w.size(), o.size());
      // Over a long prefill score_acc sums hundreds of probabilities per slot and reaches tens,
      // where float addition rounds to a few ulps differently from the reference's sum (the
      // probabilities it adds differ in their last bits): allow 5e-7 relative on top.
      double sw = 0.0;
      size_t sat = 0;
      for (size_t j = 0; j < w.size(); ++j) {
        const double e = std::abs(double{w[j]} - o[j]) - 5e-7 * std::abs(w[j]);
        if (!(e <= sw)) {
          sw = std::isnan(e) ? INFINITY : e;
          sat = j;
        }
      }
      EXPECT_LE(sw, sink_abs) << (sink == &Result::acc ? "score_acc" : "score_last") << "[" << sat
                              << "] of head " << g << ": want " << w[sat] << " got " << o[sat];
    }
  }
}

const AttentionBackend& flash() {
  return find_attention_backend("flash");
}
const AttentionBackend& reference() {
  return find_attention_backend("reference");
}

std::string describe(const Layout& L) {
  return "T=" + std::to_string(L.T) + " heads=" + std::to_string(L.n_head) + "/" +
         std::to_string(L.n_kv) + " dk=" + std::to_string(L.dk) + " dv=" + std::to_string(L.dv) +
         " window=" + std::to_string(L.window) + " softcap=" + std::to_string(L.softcap) +
         " k=" + std::string(dtype_name(L.kt)) + " v=" + std::string(dtype_name(L.vt));
}

// Every layout against the reference with 1, 2 and 3 threads, sinks off and on. Small T splits
// each head's keys into chunks (over 256 cached slots); T=200 takes the unsplit path.
TEST(FlashAttention, MatchesReferenceOverGrid) {
  struct Heads {
    int n_head, n_kv;
  };
  struct Variant {
    int dk, dv, window;
    float softcap;
  };
  const int64_t Ts[] = {1, 3, 17, 200};
  const Heads heads[] = {{4, 4}, {9, 3}, {8, 1}};
  const DType types[] = {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0};
  const Variant variants[] = {
      {64, 64, 0, 0.0f},   {32, 32, 0, 30.0f}, {64, 64, 150, 30.0f},
      {32, 32, 150, 0.0f}, {64, 32, 90, 0.0f},  // dk != dv
  };
  uint32_t seed = 100;
  for (int64_t T : Ts)
    for (const Heads& hd : heads)
      for (DType t : types)
        for (const Variant& var : variants) {
          Layout L;
          L.T = T;
          L.n_head = hd.n_head;
          L.n_kv = hd.n_kv;
          L.dk = var.dk;
          L.dv = var.dv;
          L.window = var.window;
          L.softcap = var.softcap;
          L.kt = L.vt = t;
          L.old = T >= 100 ? std::vector<int>{100, 181, 260, 140}
                           : std::vector<int>{300, 517, 700, 433};
          L.future = 3;
          L.seed = ++seed;
          SCOPED_TRACE(describe(L));
          const Problem p = make_problem(L);
          const Result want = run(reference(), p, 2, true);
          for (int threads : {1, 2, 3})
            for (bool sinks : {false, true}) {
              SCOPED_TRACE("threads=" + std::to_string(threads) +
                           " sinks=" + std::to_string(sinks));
              expect_close(want, run(flash(), p, threads, sinks), 1e-5, 1e-5);
              if (HasFailure()) return;  // one failing layout says enough
            }
        }
}

// Mixed storage types for K and V.
TEST(FlashAttention, MixedKAndVTypes) {
  Layout L;
  L.T = 5;
  L.n_head = 9;
  L.n_kv = 3;
  L.old = {400, 90, 1000};
  L.kt = DType::Q8_0;
  L.vt = DType::F16;
  const Problem p = make_problem(L);
  expect_close(run(reference(), p, 2, true), run(flash(), p, 2, true), 1e-5, 1e-5);
  L.kt = DType::BF16;
  L.vt = DType::Q4_0;
  const Problem p2 = make_problem(L);
  expect_close(run(reference(), p2, 2, true), run(flash(), p2, 2, true), 1e-5, 1e-5);
}

// Head dimensions that are not multiples of 8 take the scalar tails of every kernel.
TEST(FlashAttention, OddHeadDims) {
  for (DType t : {DType::F32, DType::F16, DType::BF16}) {
    for (int64_t T : {1, 40}) {
      Layout L;
      L.T = T;
      L.n_head = 6;
      L.n_kv = 2;
      L.dk = 20;
      L.dv = 13;
      L.window = 30;
      L.kt = L.vt = t;
      L.old = {301, 77};
      L.future = 2;
      SCOPED_TRACE(describe(L));
      const Problem p = make_problem(L);
      expect_close(run(reference(), p, 2, true), run(flash(), p, 3, true), 1e-5, 1e-5);
    }
  }
}

// Long decode contexts: chunks larger than the minimum, tiles cut at odd lengths, and the
// first-pass scores kept for the sinks.
TEST(FlashAttention, LongDecodeSplitsKeys) {
  Layout L;
  L.T = 1;
  L.n_head = 9;
  L.n_kv = 3;
  L.kt = L.vt = DType::F16;
  L.old = {5003, 9001, 4095};
  L.future = 5;
  const Problem p = make_problem(L);
  const Result want = run(reference(), p, 2, true);
  for (int threads : {1, 2, 3}) expect_close(want, run(flash(), p, threads, true), 1e-5, 1e-5);
}

// A prefill whose score matrix exceeds the saved-score budget: the sink pass recomputes scores.
TEST(FlashAttention, SinksRecomputedForLargePrefill) {
  Layout L;
  L.T = 300;
  L.n_head = 8;
  L.n_kv = 1;
  L.window = 200;
  L.softcap = 30.0f;
  L.kt = L.vt = DType::F16;
  L.old = {460};
  const Problem p = make_problem(L);
  expect_close(run(reference(), p, 2, true), run(flash(), p, 2, true), 1e-5, 1e-5);
}

// Rows that see nothing come out as zeros and give no sink mass, as in the reference; an empty
// head is fine too.
TEST(FlashAttention, NothingVisible) {
  Problem p;
  p.shape = {4, 2, 32, 32, 0.2f, 0, 0.0f};
  p.T = 2;
  p.q_pos = {3, 50};
  std::mt19937 rng(3);
  std::normal_distribution<float> nd;
  p.q.resize(p.T * 4 * 32);
  for (auto& x : p.q) x = nd(rng);
  p.k.resize(2);
  p.v.resize(2);
  p.pos.resize(2);
  // Head 0 empty; head 1: 300 slots all at positions 10.., so query 0 sees none of them.
  std::vector<float> kf(300 * 32), vf(300 * 32);  // [300][32]
  for (auto& x : kf) x = nd(rng);
  for (auto& x : vf) x = nd(rng);
  p.k[1] = store_rows(DType::F32, kf, 300, 32);
  p.v[1] = store_rows(DType::F32, vf, 300, 32);
  for (int j = 0; j < 300; ++j) p.pos[1].push_back(10 + (j * 37) % 300);
  for (int threads : {1, 2}) {
    const Result want = run(reference(), p, threads, true);
    const Result got = run(flash(), p, threads, true);
    expect_close(want, got, 1e-5, 1e-5);
    // Query 0 sees nothing in either head; query 1 nothing in the empty head 0.
    for (int row : {0, 1, 2, 3, 4, 5})
      for (int d = 0; d < 32; ++d) EXPECT_EQ(got.out[row * 32 + d], 0.0f) << row;
  }
}

// The work split depends on shapes only, so the thread count does not change the result.
TEST(FlashAttention, ThreadCountDoesNotChangeResults) {
  for (int64_t T : {1, 9, 120}) {
    Layout L;
    L.T = T;
    L.n_head = 9;
    L.n_kv = 3;
    L.window = 500;
    L.kt = L.vt = DType::F32;
    L.old = {2100, 700, 3000};
    SCOPED_TRACE("T=" + std::to_string(T));
    const Problem p = make_problem(L);
    const Result one = run(flash(), p, 1, true);
    for (int threads : {2, 3}) {
      const Result many = run(flash(), p, threads, true);
      expect_close(one, many, 1e-6, 1e-6);
      // Today the split never looks at the pool, so the bits agree too.
      EXPECT_EQ(one.out, many.out) << threads << " threads";
      EXPECT_EQ(one.acc, many.acc) << threads << " threads";
      EXPECT_EQ(one.last, many.last) << threads << " threads";
    }
  }
}

// A row's result depends only on its query and the cache, not on the batch it came in: the
// same queries evaluated all at once (prefill, unsplit items) or one token per call (decode,
// keys split across items) give the same bits. Sessions rely on this so that chunk sizes and
// prefix reuse never change logits.
TEST(FlashAttention, BatchingDoesNotChangeResults) {
  for (DType t : {DType::F32, DType::Q8_0}) {
    Layout L;
    L.T = 60;  // 6 blocks of 10 tokens x 3 heads: enough items not to split keys
    L.n_head = 9;
    L.n_kv = 3;
    L.kt = L.vt = t;
    L.old = {1500, 300, 2600};
    L.window = 2000;
    SCOPED_TRACE(std::string(dtype_name(t)));
    const Problem p = make_problem(L);
    const Result all = run(flash(), p, 2, false);
    const int64_t row = static_cast<int64_t>(p.shape.n_head) * p.shape.head_dim_v;
    for (int64_t t0 : {int64_t{0}, int64_t{17}, int64_t{59}}) {
      for (int64_t n : {int64_t{1}, int64_t{3}}) {
        if (t0 + n > p.T) continue;
        Problem part = p;
        part.T = n;
        part.q.assign(p.q.begin() + t0 * p.shape.n_head * p.shape.head_dim_k,
                      p.q.begin() + (t0 + n) * p.shape.n_head * p.shape.head_dim_k);
        part.q_pos.assign(p.q_pos.begin() + t0, p.q_pos.begin() + t0 + n);
        const Result r = run(flash(), part, 2, false);
        const std::vector<float> want(all.out.begin() + t0 * row, all.out.begin() + (t0 + n) * row);
        EXPECT_EQ(r.out, want) << "tokens " << t0 << ".." << t0 + n - 1;
      }
    }
  }
}

// Keys appended after the newest query (what a whole prompt holds while its first tokens are
// scored, and a chunk does not) change nothing: the tiles they fill out are masked exactly.
TEST(FlashAttention, MaskedKeysAppendedChangeNothing) {
  for (float softcap : {0.0f, 30.0f}) {
    Layout L;
    L.T = 5;
    L.n_head = 9;
    L.n_kv = 3;
    L.softcap = softcap;
    L.old = {37, 300, 61};  // tiles cut short at different places
    const Problem p = make_problem(L);
    Problem more = p;
    std::mt19937 rng(5);
    std::normal_distribution<float> nd;
    for (int g = 0; g < L.n_kv; ++g) {
      std::vector<float> kf(70 * L.dk), vf(70 * L.dv);  // [70][dk], [70][dv]
      for (auto& x : kf) x = nd(rng);
      for (auto& x : vf) x = nd(rng);
      const auto kb = store_rows(L.kt, kf, 70, L.dk), vb = store_rows(L.vt, vf, 70, L.dv);
      more.k[g].insert(more.k[g].end(), kb.begin(), kb.end());
      more.v[g].insert(more.v[g].end(), vb.begin(), vb.end());
      for (int i = 0; i < 70; ++i) more.pos[g].push_back(p.q_pos.back() + 1 + i);
    }
    for (int threads : {1, 2}) {
      const Result a = run(flash(), p, threads, false), b = run(flash(), more, threads, false);
      EXPECT_EQ(a.out, b.out) << "softcap " << softcap << ", " << threads << " threads";
    }
  }
}

TEST(FlashAttention, SupportsRejectsWhatItCannotRead) {
  AttentionShape s{8, 2, 64, 64, 0.125f, 0, 0.0f};
  KVView kv;
  kv.heads.resize(2);
  EXPECT_EQ(flash().supports(s, kv), "");
  kv.k_dtype = DType::Q4_1;
  const std::string why = flash().supports(s, kv);
  EXPECT_NE(why.find("Q4_1"), std::string::npos) << why;
  EXPECT_EQ(reference().supports(s, kv), "");  // the reference dequantizes anything
  kv.k_dtype = DType::F16;
  kv.v_dtype = DType::Q4_K;
  EXPECT_NE(flash().supports(s, kv), "");
  kv.v_dtype = DType::Q8_0;
  s.head_dim_v = 48;  // not whole Q8_0 blocks
  EXPECT_NE(flash().supports(s, kv), "");
  s.head_dim_v = 64;
  EXPECT_EQ(flash().supports(s, kv), "");
  s.n_head = 7;
  EXPECT_NE(flash().supports(s, kv), "");
  s.n_head = 8;
  kv.heads.resize(3);
  EXPECT_NE(flash().supports(s, kv), "");
  EXPECT_FALSE(flash().description().empty());
}

// Timings, not a check: run with
//   --gtest_also_run_disabled_tests --gtest_filter='*Flash*Bench*'
TEST(DISABLED_FlashAttentionBench, DecodeAndPrefill) {
  struct Case {
    const char* name;
    int64_t T;
    int keys;
    DType t;
    bool sinks;
  };
  const Case cases[] = {
      {"decode 4096 F32", 1, 4096, DType::F32, false},
      {"decode 8192 F32", 1, 8192, DType::F32, false},
      {"decode 8192 F32 +sinks", 1, 8192, DType::F32, true},
      {"decode 8192 F16", 1, 8192, DType::F16, false},
      {"decode 8192 Q8_0", 1, 8192, DType::Q8_0, false},
      {"prefill 256/4096 F32", 256, 4096, DType::F32, false},
      {"prefill 256/4096 F32 +sinks", 256, 4096, DType::F32, true},
  };
  ThreadPool pool(2);
  std::printf("%-30s %12s %12s %8s\n", "case (9/3 heads, d=64, 2 thr)", "reference ms", "flash ms",
              "speedup");
  for (const Case& c : cases) {
    Layout L;
    L.T = c.T;
    L.n_head = 9;
    L.n_kv = 3;
    L.kt = L.vt = c.t;
    L.old = {c.keys - static_cast<int>(c.T)};
    Problem p = make_problem(L);
    // Slots in position order, as a cache that never evicted holds them.
    for (auto& pos : p.pos) std::sort(pos.begin(), pos.end());
    KVView kv;
    kv.k_dtype = kv.v_dtype = c.t;
    std::vector<std::vector<float>> acc(3);  // per KV head: [keys]
    for (int g = 0; g < 3; ++g) {
      acc[g].assign(p.pos[g].size(), 0.0f);
      kv.heads.push_back({p.k[g].data(), p.v[g].data(), p.pos[g].data(),
                          static_cast<int32_t>(p.pos[g].size()), c.sinks ? acc[g].data() : nullptr,
                          nullptr});
    }
    std::vector<float> out(c.T * 9 * 64);  // [T][9][64]
    auto time_ms = [&](const AttentionBackend& be) {
      const int reps = c.T > 1 ? 3 : 30;
      double best = INFINITY;
      for (int r = 0; r <= reps; ++r) {  // the first run warms caches and scratch
        const auto t0 = std::chrono::steady_clock::now();
        be.attend(p.shape, p.q.data(), p.q_pos.data(), p.T, kv, out.data(), pool);
        const double ms =
            std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0)
                .count();
        if (r > 0) best = std::min(best, ms);
      }
      return best;
    };
    const double ref_ms = time_ms(reference());
    const double flash_ms = time_ms(flash());
    std::printf("%-30s %12.3f %12.3f %7.1fx\n", c.name, ref_ms, flash_ms, ref_ms / flash_ms);
  }
}

}  // namespace
}  // namespace kvs

namespace kvs {
namespace {

const AttentionBackend& ggml_exact() {
  return find_attention_backend("ggml");
}

// The llama.cpp-exact backend computes the same attention as the reference (its roundings are
// llama.cpp's, so the tolerance is float noise), fills the same sinks, and places keys by
// position: any slot order gives bit-identical outputs.
TEST(GgmlAttention, MatchesReferenceAndIgnoresSlotOrder) {
  uint32_t seed = 500;
  for (int64_t T : {1, 5, 40})
    for (DType t : {DType::F32, DType::Q8_0})
      for (int window : {0, 150})
        for (float softcap : {0.0f, 30.0f}) {
          Layout L;
          L.T = T;
          L.n_head = 9;
          L.n_kv = 3;
          L.window = window;
          L.softcap = softcap;
          L.kt = L.vt = t;
          L.old = {120, 301, 77};
          L.future = 2;
          L.seed = ++seed;
          SCOPED_TRACE(describe(L));
          Problem p = make_problem(L);
          const Result want = run(reference(), p, 2, true);
          const Result got = run(ggml_exact(), p, 2, true);
          expect_close(want, got, 1e-5, 1e-5);
          // Reverse every head's slots (rows and positions together).
          for (size_t g = 0; g < p.pos.size(); ++g) {
            const size_t n = p.pos[g].size();
            const size_t kb = p.k[g].size() / n, vb = p.v[g].size() / n;
            std::vector<uint8_t> k2(p.k[g].size()), v2(p.v[g].size());
            for (size_t j = 0; j < n; ++j) {
              std::copy_n(p.k[g].begin() + j * kb, kb, k2.begin() + (n - 1 - j) * kb);
              std::copy_n(p.v[g].begin() + j * vb, vb, v2.begin() + (n - 1 - j) * vb);
            }
            p.k[g] = std::move(k2);
            p.v[g] = std::move(v2);
            std::reverse(p.pos[g].begin(), p.pos[g].end());
          }
          const Result rev = run(ggml_exact(), p, 3, false);
          EXPECT_EQ(rev.out, got.out);
          if (HasFailure()) return;
        }
}

}  // namespace
}  // namespace kvs

namespace kvs {
namespace {

// Two slots at one position (a cache layout llama.cpp never has) is refused with a clear
// error rather than silently dropping a key.
TEST(GgmlAttention, DuplicatePositionsAreAnError) {
  Layout L;
  L.T = 2;
  L.n_head = 2;
  L.n_kv = 1;
  L.old = {5};
  Problem p = make_problem(L);
  p.pos[0][1] = p.pos[0][0];
  ThreadPool pool(2);  // the error must come from the calling thread, not a worker
  KVView kv;
  kv.heads.push_back({p.k[0].data(), p.v[0].data(), p.pos[0].data(),
                      static_cast<int32_t>(p.pos[0].size()), nullptr, nullptr});
  std::vector<float> out(p.T * p.shape.n_head * p.shape.head_dim_v);
  try {
    ggml_exact().attend(p.shape, p.q.data(), p.q_pos.data(), p.T, kv, out.data(), pool);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("two cache slots hold position"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace kvs
