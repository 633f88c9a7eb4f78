// expected_attention (kvpress ExpectedAttentionPress, Devoto et al. 2025, "Expected Attention:
// KV Cache Compression by Estimating Attention from Future Queries Distribution"): future
// queries of each query head are modelled as a Gaussian N(mu, Sigma); the expected logit of key
// k is then s mu.k + s^2/2 k^T Sigma k (s the model's attention scale; kvpress 1/sqrt(d) and
// 1/(2d)), softmaxed over the non-sink slots, averaged over the group's query heads, and scaled
// by ||v||_2 (plus `epsilon`). The first `sinks` slots (kvpress n_sink = 4) are left out of the
// softmax and always kept.
// The manager gives the policy kvpress's statistics: mean and covariance of every query before
// RoPE at positions >= `sinks` (the attention-sink outliers), rotated by the RoPE rotation
// averaged over the next `n_future_positions` (cache/query_stats.h).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cache/policy.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

class ExpectedAttention final : public CachePolicy {
 public:
  ExpectedAttention(int future, int sinks, bool cov, bool vnorm, double eps)
      : future_(future), sinks_(sinks), cov_(cov), vnorm_(vnorm), eps_(eps) {}
  std::string_view name() const override { return "expected_attention"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.keys = true;
    n.values = vnorm_;
    n.query_stats = true;
    n.query_stats_skip = sinks_;
    n.query_stats_future = future_;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    const int d = in.head_dim_k;
    const int32_t n = in.len, sinks = std::min(std::max(sinks_, in.sinks), n);
    std::vector<double> acc(n, 0.0);
    if (in.query_mean != nullptr && in.n_query_stats > 0 && sinks < n) {
      const double s = in.kq_scale;
      std::vector<double> logit(n);
      for (int j = 0; j < in.group; ++j) {
        const double* mu = in.query_mean + static_cast<size_t>(j) * d;
        const double* sigma = in.query_cov + static_cast<size_t>(j) * d * d;
        double mx = -std::numeric_limits<double>::infinity();
        for (int32_t i = sinks; i < n; ++i) {
          const float* k = in.keys + static_cast<size_t>(i) * d;
          double lin = 0.0, quad = 0.0;
          for (int a = 0; a < d; ++a) {
            lin += mu[a] * k[a];
            if (!cov_) continue;
            double row = 0.0;
            for (int b = 0; b < d; ++b) row += sigma[static_cast<size_t>(a) * d + b] * k[b];
            quad += k[a] * row;
          }
          logit[i] = s * lin + s * s * quad / 2.0;
          mx = std::max(mx, logit[i]);
        }
        double sum = 0.0;
        for (int32_t i = sinks; i < n; ++i) sum += std::exp(logit[i] - mx);
        for (int32_t i = sinks; i < n; ++i) acc[i] += std::exp(logit[i] - mx) / sum / in.group;
      }
    }
    for (int32_t i = sinks; i < n; ++i) {
      double vn = 1.0;
      if (vnorm_ && in.values != nullptr) {
        double ss = 0.0;
        for (int c = 0; c < in.head_dim_v; ++c) {
          const double x = in.values[static_cast<size_t>(i) * in.head_dim_v + c];
          ss += x * x;
        }
        vn = std::sqrt(ss);
      }
      out[i] = static_cast<float>((acc[i] + eps_) * vn);
    }
    for (int32_t i = 0; i < sinks; ++i) out[i] = std::numeric_limits<float>::max();
  }

 private:
  int future_, sinks_;
  bool cov_, vnorm_;
  double eps_;
};

bool param_bool(const nlohmann::json& p, const char* key, bool def, const std::string& where) {
  if (!p.is_object() || !p.contains(key)) return def;
  if (!p[key].is_boolean()) throw Error(where + "." + key + ": must be true or false");
  return p[key].get<bool>();
}

KVS_REGISTER_POLICY(
    expected_attention, "expected_attention",
    "Expected Attention: attention of a Gaussian model of future queries times ||v||",
    [](const nlohmann::json& p, const std::string& where) -> std::unique_ptr<CachePolicy> {
      check_params(p, {"n_future_positions", "sinks", "use_covariance", "use_vnorm", "epsilon"},
                   where);
      return std::make_unique<ExpectedAttention>(
          static_cast<int>(param_number(p, "n_future_positions", 512, 1, 1 << 16, where)),
          static_cast<int>(param_number(p, "sinks", 4, 0, 1 << 20, where)),
          param_bool(p, "use_covariance", true, where), param_bool(p, "use_vnorm", true, where),
          param_number(p, "epsilon", 0.0, 0.0, 1e6, where));
    });

}  // namespace
}  // namespace kvs
