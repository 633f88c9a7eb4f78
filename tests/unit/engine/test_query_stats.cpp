// QueryStats: sample statistics of pre-RoPE queries and their projection through the RoPE
// rotation averaged over future positions (expected_attention's model of future queries).
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "cache/query_stats.h"

namespace kvs {
namespace {

TEST(QueryStats, MeanAndCovarianceSkipSinkPositions) {
  // Two heads of dim 2; the query at position 0 is an outlier left out by skip = 1.
  const std::vector<float> q = {100, 100, 7, 7,   // pos 0
                                1,   0,   0, 1,   // pos 1
                                3,   0,   0, 3};  // pos 2
  const std::vector<int32_t> pos = {0, 1, 2};
  QueryStats st(2, 2, 1);
  st.add(q.data(), pos.data(), 3, ops::RopeParams{});  // n_rot 0: no rotation
  EXPECT_EQ(st.count(), 2);
  std::vector<double> mean, cov;
  st.project(3, 16, mean, cov);
  const std::vector<double> want_mean = {2, 0, 0, 2};
  const std::vector<double> want_cov = {1, 0, 0, 0, 0, 0, 0, 1};
  for (size_t i = 0; i < mean.size(); ++i) EXPECT_NEAR(mean[i], want_mean[i], 1e-12) << i;
  for (size_t i = 0; i < cov.size(); ++i) EXPECT_NEAR(cov[i], want_cov[i], 1e-12) << i;
  st.reset();
  EXPECT_EQ(st.count(), 0);
  st.project(3, 16, mean, cov);
  for (double x : mean) EXPECT_EQ(x, 0.0);
}

TEST(QueryStats, AveragedRopeIsTheMeanOfTheRotations) {
  for (bool neox : {false, true}) {
    ops::RopeParams rope;
    rope.n_rot = 6;  // head_dim 8: the last two channels pass through
    rope.base = 100.0f;
    rope.neox = neox;
    const int d = 8, from = 37, count = 5;
    const std::vector<double> R = averaged_rope(rope, d, from, count);
    std::mt19937 rng(3);
    std::normal_distribution<float> nd;
    std::vector<float> x(d);
    for (float& v : x) v = nd(rng);
    // Rotate x at each position with the model's rope and average.
    std::vector<double> want(d, 0.0);
    for (int p = from; p < from + count; ++p) {
      std::vector<float> y = x;
      const int32_t pp = p;
      ops::rope(y.data(), 1, 1, d, &pp, rope);
      for (int a = 0; a < d; ++a) want[a] += y[a] / static_cast<double>(count);
    }
    for (int a = 0; a < d; ++a) {
      double got = 0.0;
      for (int c = 0; c < d; ++c) got += R[a * d + c] * x[c];
      EXPECT_NEAR(got, want[a], 1e-6) << "neox " << neox << " channel " << a;
    }
    EXPECT_NEAR(R[7 * d + 7], 1.0, 1e-12);  // unrotated channel
  }
}

TEST(QueryStats, ProjectionRotatesMeanAndCovariance) {
  // One future position: the projection is exactly R_p mu and R_p Sigma R_p^T.
  ops::RopeParams rope;
  rope.n_rot = 2;
  rope.base = 10000.0f;
  const float theta = 5.0f;             // position 5, pair frequency 1
  std::vector<float> q = {2, 0, 4, 0};  // mean (3,0), variance 1 along x
  const std::vector<int32_t> pos = {0, 1};
  QueryStats st(1, 2, 0);
  st.add(q.data(), pos.data(), 2, rope);
  std::vector<double> mean, cov;
  st.project(5, 1, mean, cov);
  const double c = std::cos(theta), s = std::sin(theta);
  EXPECT_NEAR(mean[0], 3 * c, 1e-6);
  EXPECT_NEAR(mean[1], 3 * s, 1e-6);
  EXPECT_NEAR(cov[0], c * c, 1e-6);
  EXPECT_NEAR(cov[1], c * s, 1e-6);
  EXPECT_NEAR(cov[2], c * s, 1e-6);
  EXPECT_NEAR(cov[3], s * s, 1e-6);
}

}  // namespace
}  // namespace kvs
