// expected_attention (kvpress ExpectedAttentionPress, Devoto et al. 2025, "Expected Attention:
// KV Cache Compression by Estimating Attention from Future Queries Distribution"): future
// queries of each query head are modelled as a Gaussian N(mu, Sigma); the expected logit of key
// k is then s mu.k + s^2/2 k^T Sigma k (s the model's attention scale; kvpress 1/sqrt(d) and
// 1/(2d)), softmaxed over the non-sink slots, averaged over the group's query heads, and scaled
// by ||v||_2 (plus `epsilon`). The first `sinks` slots (kvpress n_sink = 4) are left out of the
// softmax and always kept.
// Adaptation: kvpress takes mu and Sigma from all prompt hidden states through W_q (pre-RoPE)
// and rotates them by the RoPE rotation averaged over the next n_future_positions. The manager
// has neither W_q nor the RoPE frequencies; it has the last `window` post-RoPE queries. Their
// sample mean already averages the rotation over those positions (high-frequency pairs cancel,
// low-frequency pairs barely move), and their covariance includes the spread the rotation adds,
// so they stand in for the future queries: the average is over the recent positions instead of
// the next ones.
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
  ExpectedAttention(int window, int sinks, bool cov, bool vnorm, double eps)
      : window_(window), sinks_(sinks), cov_(cov), vnorm_(vnorm), eps_(eps) {}
  std::string_view name() const override { return "expected_attention"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.keys = true;
    n.values = vnorm_;
    n.queries = window_;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    const int d = in.head_dim_k;
    const int32_t n = in.len, sinks = std::min(std::max(sinks_, in.sinks), n);
    std::vector<double> acc(n, 0.0);
    if (in.queries != nullptr && in.n_queries > 0 && sinks < n) {
      const double s = in.kq_scale;
      std::vector<double> mu(d), sigma(static_cast<size_t>(d) * d), logit(n);
      for (int j = 0; j < in.group; ++j) {
        auto q = [&](int64_t t) { return in.queries + (t * in.group + j) * d; };
        std::fill(mu.begin(), mu.end(), 0.0);
        for (int64_t t = 0; t < in.n_queries; ++t)
          for (int c = 0; c < d; ++c) mu[c] += q(t)[c];
        for (double& m : mu) m /= static_cast<double>(in.n_queries);
        std::fill(sigma.begin(), sigma.end(), 0.0);
        if (cov_) {
          for (int64_t t = 0; t < in.n_queries; ++t)
            for (int a = 0; a < d; ++a)
              for (int b = 0; b < d; ++b)
                sigma[static_cast<size_t>(a) * d + b] += (q(t)[a] - mu[a]) * (q(t)[b] - mu[b]);
          for (double& x : sigma) x /= static_cast<double>(in.n_queries);
        }
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
  int window_, sinks_;
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
      check_params(p, {"window", "sinks", "use_covariance", "use_vnorm", "epsilon"}, where);
      return std::make_unique<ExpectedAttention>(
          static_cast<int>(param_number(p, "window", 128, 1, 4096, where)),
          static_cast<int>(param_number(p, "sinks", 4, 0, 1 << 20, where)),
          param_bool(p, "use_covariance", true, where), param_bool(p, "use_vnorm", true, where),
          param_number(p, "epsilon", 0.0, 0.0, 1e6, where));
    });

}  // namespace
}  // namespace kvs
