#pragma once
// Q-Filters calibration (Godey et al. 2025, "Q-Filters: Leveraging QK Geometry for Efficient KV
// Cache Compression"): per query head, the top right-singular vector u of the matrix of its
// post-RoPE queries Q (the top eigenvector of Q^T Q), signed so that the queries point along it
// on average, averaged over the heads of each GQA group and normalized. Used by
// `kvsieve calibrate-qfilter` and the `qfilter` policy (cache/policies/qfilter.cpp).
#include <cstdint>
#include <vector>

#include "cache/plan.h"

namespace kvs {

class QFilterCalibrator {
 public:
  QFilterCalibrator(int n_layer, int n_head, int n_head_kv, int head_dim);
  // q: [T][n_head][head_dim] post-RoPE queries of one layer.
  void add(int layer, const float* q, int64_t T);
  int64_t count(int layer) const { return n_[layer]; }
  // Filters [n_layer][n_head_kv][head_dim]; a layer without queries gets zero filters.
  Calibration finish(int max_iterations = 1000) const;

 private:
  int n_layer_, n_head_, n_head_kv_, d_;
  std::vector<double> qtq_;  // [n_layer][n_head][d][d], upper triangle filled
  std::vector<double> sum_;  // [n_layer][n_head][d]
  std::vector<int64_t> n_;   // [n_layer]
};

}  // namespace kvs
