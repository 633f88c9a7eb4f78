#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/attention/backend.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

// Attention by hand for one query head over explicit (pos, k, v) lists.
std::vector<float> naive(const float* q, const std::vector<std::vector<float>>& K,
                         const std::vector<std::vector<float>>& V, const std::vector<int>& visible,
                         float scale) {
  std::vector<double> w;
  double mx = -1e30;
  for (int j : visible) {
    double s = 0;
    for (size_t d = 0; d < K[j].size(); ++d) s += q[d] * K[j][d];
    w.push_back(s * scale);
    mx = std::max(mx, w.back());
  }
  double sum = 0;
  for (auto& x : w) sum += (x = std::exp(x - mx));
  std::vector<float> o(V[0].size(), 0.0f);
  for (size_t i = 0; i < visible.size(); ++i)
    for (size_t d = 0; d < o.size(); ++d) o[d] += static_cast<float>(w[i] / sum) * V[visible[i]][d];
  return o;
}

TEST(ReferenceAttention, CausalSlidingWindowAndGqa) {
  const AttentionBackend& be = find_attention_backend("reference");
  ThreadPool pool(2);
  const int n_head = 4, n_kv = 2, dk = 8, dv = 6, n = 10, window = 4;
  std::mt19937 rng(1);
  std::normal_distribution<float> nd;
  // Per KV head: n slots; positions are shuffled to check that the mask uses positions.
  std::vector<std::vector<float>> Kf(n_kv), Vf(n_kv);
  std::vector<int32_t> pos(n);
  for (int j = 0; j < n; ++j) pos[j] = (j * 7) % n;
  for (int h = 0; h < n_kv; ++h) {
    Kf[h].resize(n * dk);
    Vf[h].resize(n * dv);
    for (auto& x : Kf[h]) x = nd(rng);
    for (auto& x : Vf[h]) x = nd(rng);
  }
  std::vector<float> acc(n_kv * n, 0.0f);
  KVView kv;
  kv.heads.resize(n_kv);
  for (int h = 0; h < n_kv; ++h)
    kv.heads[h] = {Kf[h].data(), Vf[h].data(), pos.data(), n, acc.data() + h * n, nullptr};
  const int T = 3;
  const int32_t qpos[T] = {4, 8, 9};
  std::vector<float> q(T * n_head * dk), out(T * n_head * dv);
  for (auto& x : q) x = nd(rng);
  AttentionShape s{n_head, n_kv, dk, dv, 0.3f, window, 0.0f};
  ASSERT_EQ(be.supports(s, kv), "");
  be.attend(s, q.data(), qpos, T, kv, out.data(), pool);
  for (int t = 0; t < T; ++t)
    for (int h = 0; h < n_head; ++h) {
      const int g = h / (n_head / n_kv);
      std::vector<std::vector<float>> K(n), V(n);
      std::vector<int> vis;
      for (int j = 0; j < n; ++j) {
        K[j].assign(Kf[g].begin() + j * dk, Kf[g].begin() + (j + 1) * dk);
        V[j].assign(Vf[g].begin() + j * dv, Vf[g].begin() + (j + 1) * dv);
        if (pos[j] <= qpos[t] && qpos[t] - pos[j] < window) vis.push_back(j);
      }
      const auto want = naive(q.data() + (t * n_head + h) * dk, K, V, vis, 0.3f);
      for (int d = 0; d < dv; ++d) EXPECT_NEAR(out[(t * n_head + h) * dv + d], want[d], 1e-5);
    }
  // Accumulated attention mass: every query of each of the 2 query heads of a group gives 1.
  for (int h = 0; h < n_kv; ++h) {
    double total = 0;
    for (int j = 0; j < n; ++j) {
      total += acc[h * n + j];
      if (pos[j] > 9 || pos[j] < 1) {
        EXPECT_EQ(acc[h * n + j], 0.0f) << "slot never visible got mass";
      }
    }
    EXPECT_NEAR(total, T * 2, 1e-4);
  }
}

TEST(AttentionRegistry, UnknownNameListsAvailable) {
  try {
    find_attention_backend("nope");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("reference"), std::string::npos);
  }
}

}  // namespace
}  // namespace kvs
