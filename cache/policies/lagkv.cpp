// lagkv (LagKV, Liang et al. 2025, "LagKV: Lag-Relative Information of the KV Cache Tells Which
// Tokens Are Important"): after the plan's sinks, slots are cut into chunks of `lag_size`. Each
// chunk is judged against the next one (its "lag"): K and V are min-max normalized per channel
// by the next chunk's range, a token's score is the softmax over its chunk of the standard
// deviation across channels of its normalized K, plus the same for V (averaged). A token that
// stands out from what follows carries information. As kvpress LagKVPress (lag_size 128): the
// score is by default the token's rank within its chunk / lag_size, so every chunk keeps about
// the same share ("cross_scoring": true keeps the raw softmax values, which chunks then compete
// with); the last full chunk (no next chunk) and the remainder are always kept; with fewer than
// sinks + 2 lag_size slots the most recent slots win.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <vector>

#include "cache/policy.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

// Softmax over the chunk of each token's std across channels of (x - min_r) / (max_r - min_r),
// min_r/max_r the per-channel range of the reference chunk. x: [2 * lag][d], chunk then ref.
void chunk_scores(const float* x, int32_t lag, int d, double* out) {
  std::vector<float> lo(d, std::numeric_limits<float>::max()),
      hi(d, std::numeric_limits<float>::lowest());
  for (int32_t t = lag; t < 2 * lag; ++t)
    for (int c = 0; c < d; ++c) {
      lo[c] = std::min(lo[c], x[static_cast<size_t>(t) * d + c]);
      hi[c] = std::max(hi[c], x[static_cast<size_t>(t) * d + c]);
    }
  std::vector<double> sd(lag), z(d);
  double mx = -std::numeric_limits<double>::infinity();
  for (int32_t t = 0; t < lag; ++t) {
    double mean = 0.0;
    for (int c = 0; c < d; ++c) {
      // A channel constant across the reference gives no scale: it contributes 0.
      const double range = static_cast<double>(hi[c]) - lo[c];
      z[c] = range > 0.0 ? (x[static_cast<size_t>(t) * d + c] - lo[c]) / range : 0.0;
      mean += z[c];
    }
    mean /= d;
    double ss = 0.0;
    for (int c = 0; c < d; ++c) ss += (z[c] - mean) * (z[c] - mean);
    sd[t] = d > 1 ? std::sqrt(ss / (d - 1)) : 0.0;  // unbiased, as torch.std
    mx = std::max(mx, sd[t]);
  }
  double sum = 0.0;
  for (int32_t t = 0; t < lag; ++t) sum += std::exp(sd[t] - mx);
  for (int32_t t = 0; t < lag; ++t) out[t] = std::exp(sd[t] - mx) / sum;
}

class LagKV final : public CachePolicy {
 public:
  LagKV(int lag, bool cross) : lag_(lag), cross_(cross) {}
  std::string_view name() const override { return "lagkv"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.keys = true;
    n.values = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    const float top = std::numeric_limits<float>::max();
    const int32_t n = in.len, sinks = std::min(in.sinks, in.len);
    for (int32_t i = 0; i < sinks; ++i) out[i] = top;
    if (n < sinks + 2 * lag_) {
      for (int32_t i = sinks; i < n; ++i)
        out[i] = static_cast<float>(i - sinks) / static_cast<float>(n - sinks);
      return;
    }
    const int32_t n_chunks = (n - sinks) / lag_;
    const int32_t tail_from = sinks + (n_chunks - 1) * lag_;
    for (int32_t i = tail_from; i < n; ++i) out[i] = top;
    std::vector<double> sk(lag_), sv(lag_), s(lag_);
    std::vector<int32_t> rank(lag_);
    for (int32_t c = 0; c + 1 < n_chunks; ++c) {
      const int32_t b = sinks + c * lag_;
      chunk_scores(in.keys + static_cast<size_t>(b) * in.head_dim_k, lag_, in.head_dim_k,
                   sk.data());
      chunk_scores(in.values + static_cast<size_t>(b) * in.head_dim_v, lag_, in.head_dim_v,
                   sv.data());
      for (int32_t t = 0; t < lag_; ++t) s[t] = (sk[t] + sv[t]) / 2.0;
      if (cross_) {
        for (int32_t t = 0; t < lag_; ++t) out[b + t] = static_cast<float>(s[t]);
        continue;
      }
      std::iota(rank.begin(), rank.end(), 0);
      std::stable_sort(rank.begin(), rank.end(), [&](int32_t a, int32_t z) { return s[a] < s[z]; });
      for (int32_t r = 0; r < lag_; ++r)
        out[b + rank[r]] = static_cast<float>(r) / static_cast<float>(lag_);
    }
  }

 private:
  int32_t lag_;
  bool cross_;
};

KVS_REGISTER_POLICY(lagkv, "lagkv", "LagKV: per-chunk spread of K and V against the next chunk",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {"lag_size", "cross_scoring"}, where);
                      bool cross = false;
                      if (p.is_object() && p.contains("cross_scoring")) {
                        if (!p["cross_scoring"].is_boolean())
                          throw Error(where + ".cross_scoring: must be true or false");
                        cross = p["cross_scoring"].get<bool>();
                      }
                      return std::make_unique<LagKV>(
                          static_cast<int>(param_number(p, "lag_size", 128, 2, 1 << 20, where)),
                          cross);
                    });

}  // namespace
}  // namespace kvs
