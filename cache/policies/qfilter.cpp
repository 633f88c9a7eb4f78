// qfilter (Q-Filters, Godey et al. 2025, "Q-Filters: Leveraging QK Geometry for Efficient KV
// Cache Compression"): queries and keys of a head share an anisotropic direction u; with the
// queries concentrated along s u (s the sign that makes them point along u), <q, k> is roughly
// proportional to <k, s u>, so the score is <k_i, f> with f = s u from a calibration file (plan
// key "calibration", made by `kvsieve calibrate-qfilter`). kvpress QFilterPress scores
// -<k, f> with its published filters, which carry the opposite orientation; ours are oriented
// along the queries. The paper protects the 64 most recent tokens: set "recent": 64 in the plan.
#include "cache/policies/qfilter.h"

#include <algorithm>
#include <cmath>

#include "cache/policy.h"
#include "kernels/core/error.h"

namespace kvs {

QFilterCalibrator::QFilterCalibrator(int n_layer, int n_head, int n_head_kv, int head_dim)
    : n_layer_(n_layer), n_head_(n_head), n_head_kv_(n_head_kv), d_(head_dim) {
  KVS_CHECK(n_layer > 0 && n_head > 0 && n_head_kv > 0 && head_dim > 0 && n_head % n_head_kv == 0);
  qtq_.assign(static_cast<size_t>(n_layer) * n_head * d_ * d_, 0.0);
  sum_.assign(static_cast<size_t>(n_layer) * n_head * d_, 0.0);
  n_.assign(n_layer, 0);
}

void QFilterCalibrator::add(int layer, const float* q, int64_t T) {
  KVS_CHECK(layer >= 0 && layer < n_layer_);
  for (int64_t t = 0; t < T; ++t)
    for (int h = 0; h < n_head_; ++h) {
      const float* x = q + (t * n_head_ + h) * d_;
      const size_t lh = static_cast<size_t>(layer) * n_head_ + h;
      double* m = qtq_.data() + lh * d_ * d_;
      double* s = sum_.data() + lh * d_;
      for (int a = 0; a < d_; ++a) {
        s[a] += x[a];
        const double xa = x[a];
        for (int b = a; b < d_; ++b) m[static_cast<size_t>(a) * d_ + b] += xa * x[b];
      }
    }
  n_[layer] += T;
}

Calibration QFilterCalibrator::finish(int max_iterations) const {
  Calibration c;
  c.n_layer = n_layer_;
  c.n_head_kv = n_head_kv_;
  c.head_dim = d_;
  c.data.assign(static_cast<size_t>(n_layer_) * n_head_kv_ * d_, 0.0f);
  const int group = n_head_ / n_head_kv_;
  std::vector<double> m(static_cast<size_t>(d_) * d_), u(d_), w(d_), avg(d_);
  auto normalize = [](std::vector<double>& x) {
    double n = 0.0;
    for (double v : x) n += v * v;
    n = std::sqrt(n);
    if (n > 0.0)
      for (double& v : x) v /= n;
    return n;
  };
  for (int l = 0; l < n_layer_; ++l) {
    if (n_[l] == 0) continue;
    for (int g = 0; g < n_head_kv_; ++g) {
      std::fill(avg.begin(), avg.end(), 0.0);
      for (int j = 0; j < group; ++j) {
        const size_t lh = static_cast<size_t>(l) * n_head_ + g * group + j;
        const double* up = qtq_.data() + lh * d_ * d_;
        const double* s = sum_.data() + lh * d_;
        for (int a = 0; a < d_; ++a)
          for (int b = 0; b < d_; ++b)
            m[static_cast<size_t>(a) * d_ + b] =
                a <= b ? up[static_cast<size_t>(a) * d_ + b] : up[static_cast<size_t>(b) * d_ + a];
        // Power iteration on Q^T Q from a start that no eigenvector is orthogonal to in practice.
        for (int a = 0; a < d_; ++a) u[a] = 1.0 + 0.01 * a;
        normalize(u);
        for (int it = 0; it < max_iterations; ++it) {
          for (int a = 0; a < d_; ++a) {
            double r = 0.0;
            for (int b = 0; b < d_; ++b) r += m[static_cast<size_t>(a) * d_ + b] * u[b];
            w[a] = r;
          }
          if (normalize(w) == 0.0) break;  // all queries zero
          double diff = 0.0;
          for (int a = 0; a < d_; ++a) diff = std::max(diff, std::fabs(w[a] - u[a]));
          u.swap(w);
          if (diff < 1e-12) break;
        }
        // Sign: the queries point along u on average (<mean q, u> > 0).
        double proj = 0.0;
        for (int a = 0; a < d_; ++a) proj += s[a] * u[a];
        const double sign = proj < 0.0 ? -1.0 : 1.0;
        for (int a = 0; a < d_; ++a) avg[a] += sign * u[a] / group;
      }
      normalize(avg);
      float* out = c.data.data() + (static_cast<size_t>(l) * n_head_kv_ + g) * d_;
      for (int a = 0; a < d_; ++a) out[a] = static_cast<float>(avg[a]);
    }
  }
  return c;
}

namespace {

class QFilter final : public CachePolicy {
 public:
  std::string_view name() const override { return "qfilter"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.keys = true;
    n.calibration = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    // The manager refuses a plan without calibration; a bare call scores nothing.
    if (in.calibration == nullptr) {
      std::fill(out.begin(), out.end(), 0.0f);
      return;
    }
    for (int32_t i = 0; i < in.len; ++i) {
      const float* k = in.keys + static_cast<size_t>(i) * in.head_dim_k;
      double dot = 0.0;
      for (int c = 0; c < in.head_dim_k; ++c) dot += static_cast<double>(k[c]) * in.calibration[c];
      out[i] = static_cast<float>(dot);
    }
  }
};

KVS_REGISTER_POLICY(qfilter, "qfilter", "Q-Filters: projection of keys on calibrated directions",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {}, where);
                      return std::make_unique<QFilter>();
                    });

}  // namespace
}  // namespace kvs
