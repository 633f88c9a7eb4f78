// The CUDA decode GEMV's block math (kernels/cuda/block_dot.h), compiled for the host: its
// activation quantizers against the CPU's byte for byte, and its unit dots summed over a row
// against the CPU's vec_dot. This runs on machines without a GPU; tests/cuda checks the
// kernels that call these functions on the device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/core/half.h"
#include "kernels/core/quant.h"
#include "kernels/core/quant_blocks.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cuda/block_dot.h"

namespace kvs {
namespace {

constexpr DType kUnitTypes[] = {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1,
                                DType::Q8_0, DType::Q4_K, DType::Q5_K, DType::Q6_K};

static_assert(sizeof(BlockQ4_0) == cuda::bd::kQ4_0 && sizeof(BlockQ4_1) == cuda::bd::kQ4_1);
static_assert(sizeof(BlockQ5_0) == cuda::bd::kQ5_0 && sizeof(BlockQ5_1) == cuda::bd::kQ5_1);
static_assert(sizeof(BlockQ8_0) == cuda::bd::kQ8_0 && sizeof(BlockQ4_K) == cuda::bd::kQ4_K);
static_assert(sizeof(BlockQ5_K) == cuda::bd::kQ5_K && sizeof(BlockQ6_K) == cuda::bd::kQ6_K);
static_assert(sizeof(BlockQ8_1) == cuda::bd::kA8_1 && sizeof(BlockQ8_K) == cuda::bd::kA8_K);

// Activations with the cases the quantizers treat specially: an all-zero block, a block whose
// largest magnitude is negative, exact halves after scaling, and a wide range of magnitudes.
std::vector<float> activations(int64_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[i] = d(rng) * std::exp2(static_cast<float>(i / 64 % 7) - 3.0f);
  for (int i = 0; i < 32; ++i) x[32 + i] = 0.0f;  // block 1 (and part of super-block 0)
  x[70] = -40.0f;                                 // negative extreme of block 2
  for (int i = 0; i < 32; ++i) x[96 + i] = 0.5f * static_cast<float>(i - 16);  // 127/8 halves
  x[96 + 31] = 127.0f / 8.0f;
  return x;
}

// Random weight rows: quantized floats for the legacy types, random bytes with small finite
// scales for the K-quants (every bit pattern is a valid K-quant block).
std::vector<uint8_t> weight_row(DType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> row(row_bytes(t, n));
  if (dtype_traits(t).block_size != kQK_K) {
    std::normal_distribution<float> d(0.0f, 1.0f);
    std::vector<float> f(static_cast<size_t>(n));
    for (float& v : f) v = d(rng);
    quantize_row(t, f.data(), row.data(), n);
    return row;
  }
  for (uint8_t& b : row) b = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> u(1e-3f, 2e-2f);
  const size_t bb = dtype_traits(t).block_bytes;
  const size_t d_off = t == DType::Q6_K ? offsetof(BlockQ6_K, d) : 0;
  for (size_t off = 0; off < row.size(); off += bb) {
    const uint16_t d = fp32_to_fp16(u(rng)), dmin = fp32_to_fp16(u(rng));
    std::memcpy(row.data() + off + d_off, &d, 2);
    if (t != DType::Q6_K) std::memcpy(row.data() + off + 2, &dmin, 2);
  }
  return row;
}

TEST(CudaBlockDot, ActivationQuantizersMatchTheCpuByteForByte) {
  const int64_t n = 1024;
  for (DType t : kUnitTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    for (uint32_t seed : {1u, 2u, 3u}) {
      const std::vector<float> x = activations(n, seed);
      const size_t bytes = activation_row_bytes(t, n);
      std::vector<uint8_t> want(bytes), got(bytes, 0xAB);
      quantize_activation(t, x.data(), want.data(), n);
      cuda::bd::quantize_activation_row(t, x.data(), got.data(), n);
      EXPECT_EQ(got, want) << "seed " << seed;
    }
  }
}

// The units' integer sums are the CPU's; only the float combination of 32-element units
// differs in order, so the row sums agree to a few f32 roundings of the sum of |unit dots|.
TEST(CudaBlockDot, UnitDotsSumToTheCpuVecDot) {
  const int64_t n = 768;
  std::mt19937 rng(7);
  for (DType t : kUnitTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    ASSERT_TRUE(cuda::bd::has_unit_dot(t));
    for (int r = 0; r < 8; ++r) {
      const std::vector<uint8_t> w = weight_row(t, n, rng);
      const std::vector<float> x = activations(n, 10 + r);
      std::vector<uint8_t> a(activation_row_bytes(t, n));
      quantize_activation(t, x.data(), a.data(), n);
      double sum = 0.0, mag = 0.0;
      for (int u = 0; u < n / 32; ++u) {
        const float p = cuda::bd::unit_dot_any(t, w.data(), a.data(), u);
        sum += p;
        mag += std::fabs(p);
      }
      const float want = ref::vec_dot(t, n, w.data(), a.data());
      EXPECT_NEAR(sum, want, 1e-5 * mag + 1e-30) << "row " << r;
    }
  }
}

// Each unit alone against a dequantized reference: catches a wrong unit-to-element mapping
// that the row sums could hide only by cancellation.
TEST(CudaBlockDot, EachUnitMatchesItsDequantizedElements) {
  const int64_t n = 512;
  std::mt19937 rng(11);
  for (DType t : kUnitTypes) {
    if (vec_dot_type(t) == DType::Q8_1) continue;  // its f16 sum term is not elementwise
    SCOPED_TRACE(std::string(dtype_name(t)));
    const std::vector<uint8_t> w = weight_row(t, n, rng);
    const std::vector<float> x = activations(n, 5);
    std::vector<uint8_t> a(activation_row_bytes(t, n));
    quantize_activation(t, x.data(), a.data(), n);
    std::vector<float> wf(static_cast<size_t>(n)), af(static_cast<size_t>(n));
    dequantize_row(t, w.data(), wf.data(), n);
    dequantize_row(vec_dot_type(t), a.data(), af.data(), n);
    for (int u = 0; u < n / 32; ++u) {
      double want = 0.0, mag = 0.0;
      for (int j = 32 * u; j < 32 * u + 32; ++j) {
        want += static_cast<double>(wf[j]) * af[j];
        mag += std::fabs(static_cast<double>(wf[j]) * af[j]);
      }
      EXPECT_NEAR(cuda::bd::unit_dot_any(t, w.data(), a.data(), u), want, 1e-5 * mag + 1e-30)
          << "unit " << u;
    }
  }
}

}  // namespace
}  // namespace kvs
