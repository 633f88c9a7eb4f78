#include "cache/query_stats.h"

#include <algorithm>

#include "kernels/core/error.h"

namespace kvs {

QueryStats::QueryStats(int n_head, int head_dim, int skip)
    : n_head_(n_head),
      head_dim_(head_dim),
      skip_(skip),
      sum_(static_cast<size_t>(n_head) * head_dim, 0.0),
      outer_(static_cast<size_t>(n_head) * head_dim * head_dim, 0.0) {}

void QueryStats::reset() {
  count_ = 0;
  std::fill(sum_.begin(), sum_.end(), 0.0);
  std::fill(outer_.begin(), outer_.end(), 0.0);
}

void QueryStats::add(const float* q, const int32_t* pos, int64_t T, const ops::RopeParams& rope) {
  rope_ = rope;
  const int d = head_dim_;
  for (int64_t t = 0; t < T; ++t) {
    if (pos[t] < skip_) continue;
    for (int h = 0; h < n_head_; ++h) {
      const float* x = q + (t * n_head_ + h) * d;
      double* s = sum_.data() + static_cast<size_t>(h) * d;
      double* o = outer_.data() + static_cast<size_t>(h) * d * d;
      for (int a = 0; a < d; ++a) {
        const double xa = x[a];
        s[a] += xa;
        double* row = o + static_cast<size_t>(a) * d;
        for (int b = a; b < d; ++b) row[b] += xa * x[b];
      }
    }
    ++count_;
  }
}

std::vector<double> averaged_rope(const ops::RopeParams& rope, int head_dim, int64_t from,
                                  int count) {
  const int d = head_dim;
  std::vector<double> R(static_cast<size_t>(d) * d, 0.0);  // [d][d]
  constexpr int kBlock = 64;                               // positions rotated per call
  std::vector<float> basis;                                // [kBlock][d][d]: e_c per "head" c
  std::vector<int32_t> pos;                                // [kBlock]
  for (int done = 0; done < count;) {
    const int n = std::min(kBlock, count - done);
    basis.assign(static_cast<size_t>(n) * d * d, 0.0f);
    pos.resize(n);
    for (int t = 0; t < n; ++t) {
      pos[t] = static_cast<int32_t>(from + done + t);
      for (int c = 0; c < d; ++c) basis[(static_cast<size_t>(t) * d + c) * d + c] = 1.0f;
    }
    ops::rope(basis.data(), n, d, d, pos.data(), rope);
    // Row c of a token's block is R_p e_c, i.e. column c of R_p.
    for (int t = 0; t < n; ++t)
      for (int c = 0; c < d; ++c)
        for (int a = 0; a < d; ++a)
          R[static_cast<size_t>(a) * d + c] += basis[(static_cast<size_t>(t) * d + c) * d + a];
    done += n;
  }
  if (count > 0)
    for (double& x : R) x /= count;
  return R;
}

void QueryStats::project(int64_t from, int future, std::vector<double>& mean,
                         std::vector<double>& cov) const {
  const int d = head_dim_;
  mean.assign(static_cast<size_t>(n_head_) * d, 0.0);
  cov.assign(static_cast<size_t>(n_head_) * d * d, 0.0);
  if (count_ == 0) return;
  KVS_CHECK(future > 0, "QueryStats::project needs future positions");
  const std::vector<double> R = averaged_rope(rope_, d, from, future);
  const double inv = 1.0 / static_cast<double>(count_);
  std::vector<double> mu(d), sigma(static_cast<size_t>(d) * d), tmp(static_cast<size_t>(d) * d);
  for (int h = 0; h < n_head_; ++h) {
    const double* s = sum_.data() + static_cast<size_t>(h) * d;
    const double* o = outer_.data() + static_cast<size_t>(h) * d * d;
    for (int a = 0; a < d; ++a) mu[a] = s[a] * inv;
    for (int a = 0; a < d; ++a)
      for (int b = a; b < d; ++b) {
        const double v = o[static_cast<size_t>(a) * d + b] * inv - mu[a] * mu[b];
        sigma[static_cast<size_t>(a) * d + b] = v;
        sigma[static_cast<size_t>(b) * d + a] = v;
      }
    double* m = mean.data() + static_cast<size_t>(h) * d;
    for (int a = 0; a < d; ++a) {
      double acc = 0.0;
      for (int c = 0; c < d; ++c) acc += R[static_cast<size_t>(a) * d + c] * mu[c];
      m[a] = acc;
    }
    // tmp = R Sigma, then cov = tmp R^T.
    for (int a = 0; a < d; ++a)
      for (int b = 0; b < d; ++b) {
        double acc = 0.0;
        for (int c = 0; c < d; ++c)
          acc += R[static_cast<size_t>(a) * d + c] * sigma[static_cast<size_t>(c) * d + b];
        tmp[static_cast<size_t>(a) * d + b] = acc;
      }
    double* cv = cov.data() + static_cast<size_t>(h) * d * d;
    for (int a = 0; a < d; ++a)
      for (int b = 0; b < d; ++b) {
        double acc = 0.0;
        for (int c = 0; c < d; ++c)
          acc += tmp[static_cast<size_t>(a) * d + c] * R[static_cast<size_t>(b) * d + c];
        cv[static_cast<size_t>(a) * d + b] = acc;
      }
  }
}

}  // namespace kvs
