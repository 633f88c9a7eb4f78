#pragma once
// QueryStats: running mean and covariance of one layer's queries before RoPE, and their
// projection onto future positions (Expected Attention, kvpress ExpectedAttentionPress):
// a future query at position p is R_p q, so with q ~ N(mu, Sigma) and p spread uniformly over
// the next `future` positions, the model kvpress scores with is N(R mu, R Sigma R^T), R the
// RoPE rotation averaged over those positions. Rotating basis vectors with the model's own
// ops::rope gives R for any layout (neox or interleaved pairs), partial rotation and scaling.
#include <cstdint>
#include <vector>

#include "kernels/cpu/ops.h"

namespace kvs {

class QueryStats {
 public:
  QueryStats() = default;
  // skip: queries at positions below it are left out (kvpress n_sink: attention-sink outliers).
  QueryStats(int n_head, int head_dim, int skip);

  // q: [T][n_head][head_dim] before RoPE, pos: [T]. `rope` is the layer's rotation (kept for
  // project(); its freq_factors must outlive this object, as model weights do).
  void add(const float* q, const int32_t* pos, int64_t T, const ops::RopeParams& rope);
  int64_t count() const { return count_; }
  void reset();

  // Mean [n_head][head_dim] and covariance [n_head][head_dim][head_dim] (population, 1/N) of
  // the queries seen, rotated by the RoPE rotation averaged over positions [from, from+future).
  // Both are zero when no query was counted.
  void project(int64_t from, int future, std::vector<double>& mean, std::vector<double>& cov) const;

 private:
  int n_head_ = 0, head_dim_ = 0, skip_ = 0;
  int64_t count_ = 0;
  std::vector<double> sum_;    // [n_head][head_dim]
  std::vector<double> outer_;  // [n_head][head_dim][head_dim], upper triangle filled (a <= b)
  ops::RopeParams rope_;
};

// The RoPE rotation averaged over positions [from, from + count): [d][d] row-major, so that
// averaged(x) = R x. Exposed for tests.
std::vector<double> averaged_rope(const ops::RopeParams& rope, int head_dim, int64_t from,
                                  int count);

}  // namespace kvs
