// The device KV cache's row formats (kernels/cuda/kv_store.h) compiled for the host: every
// storage type's bytes equal the CPU cache's quantize_row, so a device cache holds what the
// CPU cache holds. The device store kernel calls the same functions.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <vector>

#include "kernels/core/quant.h"
#include "kernels/cuda/kv_store.h"

namespace kvs {
namespace {

// Gaussian values at several scales plus what the quantizers treat specially: a zero block,
// a negative extreme, halves that round away from zero, values landing on x / d + 8.5 = k.
std::vector<float> row(int n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) x[i] = d(rng) * std::exp2(static_cast<float>(i / 32 % 5) - 2.0f);
  if (n >= 128) {
    for (int i = 0; i < 32; ++i) x[32 + i] = 0.0f;
    x[64] = -9.0f;
    for (int i = 0; i < 32; ++i) x[96 + i] = (static_cast<float>(i) - 15.5f) * (127.0f / 31.0f);
  }
  return x;
}

TEST(CudaKvStore, RowsEqualTheCpuCacheRows) {
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    for (int n : {64, 128, 256}) {
      for (uint32_t seed : {1u, 2u, 3u, 4u}) {
        const std::vector<float> x = row(n, seed + 10 * n);
        const size_t bytes = row_bytes(t, n);
        ASSERT_EQ(static_cast<size_t>(cuda::kv::row_size(t, n)), bytes);
        std::vector<uint8_t> want(bytes), got(bytes, 0xCD);
        quantize_row(t, x.data(), want.data(), n);
        cuda::kv::store_row(t, x.data(), got.data(), n);
        EXPECT_EQ(got, want) << "n " << n << " seed " << seed;
      }
    }
  }
}

}  // namespace
}  // namespace kvs
