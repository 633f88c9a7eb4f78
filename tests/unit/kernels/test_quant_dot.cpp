#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/core/half.h"
#include "kernels/core/quant.h"
#include "kernels/core/quant_blocks.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_dot.h"

namespace kvs {
namespace {

constexpr DType kWeightTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                                  DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                                  DType::Q4_K, DType::Q5_K, DType::Q6_K};

constexpr double kU = 1.0 / (1 << 24);  // unit roundoff of f32

bool is_k_quant(DType t) {
  return dtype_traits(t).block_size == kQK_K;
}

std::vector<float> randn(int64_t n, std::mt19937& rng, float sigma = 1.0f) {
  std::normal_distribution<float> d(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

template <class Block>
void set_scales(std::vector<uint8_t>& row, std::mt19937& rng, bool has_dmin) {
  std::uniform_real_distribution<float> u(1e-3f, 2e-2f);
  auto* b = reinterpret_cast<Block*>(row.data());
  for (size_t i = 0; i < row.size() / sizeof(Block); ++i) {
    b[i].d = fp32_to_fp16(u(rng));
    if constexpr (requires { b[i].dmin; }) {
      if (has_dmin) b[i].dmin = fp32_to_fp16(u(rng));
    }
  }
}

// A random weight row [n] in type t: quantized floats where kvs::quantize_row can produce the
// type, otherwise random bytes (every bit pattern is a valid K-quant) with small finite scales.
std::vector<uint8_t> random_weights(DType t, int64_t n, std::mt19937& rng) {
  std::vector<uint8_t> row(row_bytes(t, n));
  if (!is_k_quant(t)) {
    const auto f = randn(n, rng);
    quantize_row(t, f.data(), row.data(), n);
    return row;
  }
  for (auto& b : row) b = static_cast<uint8_t>(rng());
  switch (t) {
    case DType::Q2_K:
      set_scales<BlockQ2_K>(row, rng, true);
      break;
    case DType::Q3_K:
      set_scales<BlockQ3_K>(row, rng, false);
      break;
    case DType::Q4_K:
      set_scales<BlockQ4_K>(row, rng, true);
      break;
    case DType::Q5_K:
      set_scales<BlockQ5_K>(row, rng, true);
      break;
    case DType::Q6_K:
      set_scales<BlockQ6_K>(row, rng, false);
      break;
    default:
      break;
  }
  return row;
}

// The per-element offset term (m for Q4_1/Q5_1, -dmin*m for Q2_K/Q4_K/Q5_K, else 0): the
// weight dequantized with every quant zeroed.
std::vector<float> offsets(DType t, const std::vector<uint8_t>& w, int64_t n) {
  std::vector<uint8_t> z = w;
  auto zero = [&](size_t block_bytes, size_t from, size_t to) {
    for (size_t b = 0; b < z.size(); b += block_bytes)
      std::memset(z.data() + b + from, 0, to - from);
  };
  switch (t) {
    case DType::Q4_1:
      zero(sizeof(BlockQ4_1), 4, 20);
      break;
    case DType::Q5_1:
      zero(sizeof(BlockQ5_1), 4, 24);
      break;
    case DType::Q2_K:
      zero(sizeof(BlockQ2_K), 16, 80);
      break;
    case DType::Q4_K:
      zero(sizeof(BlockQ4_K), 16, 144);
      break;
    case DType::Q5_K:
      zero(sizeof(BlockQ5_K), 16, 176);
      break;
    default:
      return std::vector<float>(n, 0.0f);
  }
  std::vector<float> off(n);
  dequantize_row(t, z.data(), off.data(), n);
  return off;
}

std::vector<float> dequant_activation(DType wt, const std::vector<uint8_t>& a, int64_t n) {
  std::vector<float> out(n);
  if (vec_dot_type(wt) == DType::Q8_1) {  // dequantize_row has no Q8_1: d * q
    const auto* b = reinterpret_cast<const BlockQ8_1*>(a.data());
    for (int64_t i = 0; i < n; ++i) out[i] = fp16_to_fp32(b[i / kQK].d) * b[i / kQK].qs[i % kQK];
  } else {
    dequantize_row(vec_dot_type(wt), a.data(), out.data(), n);
  }
  return out;
}

// Length of the longest float accumulation chain in either implementation: the reference adds
// one term per block serially (two for Q4_1/Q5_1's min term), the K-quant generic code keeps 8
// lane sums per super-block plus the min term, and the float types' SIMD lanes each add n/32
// products (the reference sums those in double).
double chain_length(DType t, int64_t n) {
  const int64_t nb = n / dtype_traits(t).block_size;
  if (!dtype_traits(t).quantized) return static_cast<double>(n) / 32.0;
  return is_k_quant(t) ? 9.0 * nb : 2.0 * nb;
}

struct Case {
  std::vector<uint8_t> w, a;
  std::vector<float> wf, af, off;
  double magnitude = 0;  // B = sum_i (|w_i| + |off_i|) * |a_i|, bounds sum of |terms|
  double exact = 0;      // sum_i w_i * a_i in double
};

Case make_case(DType t, int64_t n, std::mt19937& rng) {
  Case c;
  c.w = random_weights(t, n, rng);
  const auto x = randn(n, rng, 3.0f);
  c.a.resize(activation_row_bytes(t, n));
  ref::quantize_activation(t, x.data(), c.a.data(), n);
  c.wf.resize(n);
  dequantize_row(t, c.w.data(), c.wf.data(), n);
  c.af = dequant_activation(t, c.a, n);
  c.off = offsets(t, c.w, n);
  for (int64_t i = 0; i < n; ++i) {
    c.magnitude += (std::fabs(c.wf[i]) + std::fabs(c.off[i])) * std::fabs(c.af[i]);
    c.exact += static_cast<double>(c.wf[i]) * c.af[i];
  }
  return c;
}

std::vector<int64_t> sizes(DType t) {
  if (!dtype_traits(t).quantized) return {1, 7, 8, 33, 100, 256, 4096};
  if (is_k_quant(t)) return {256, 512, 1280, 4096};
  return {32, 64, 96, 224, 4096};
}

TEST(QuantDot, VecDotTypes) {
  EXPECT_EQ(vec_dot_type(DType::Q4_0), DType::Q8_0);
  EXPECT_EQ(vec_dot_type(DType::Q5_0), DType::Q8_0);
  EXPECT_EQ(vec_dot_type(DType::Q8_0), DType::Q8_0);
  EXPECT_EQ(vec_dot_type(DType::Q4_1), DType::Q8_1);
  EXPECT_EQ(vec_dot_type(DType::Q5_1), DType::Q8_1);
  for (DType t : {DType::Q2_K, DType::Q3_K, DType::Q4_K, DType::Q5_K, DType::Q6_K})
    EXPECT_EQ(vec_dot_type(t), DType::Q8_K);
  for (DType t : {DType::F32, DType::F16, DType::BF16}) EXPECT_EQ(vec_dot_type(t), t);
  EXPECT_EQ(activation_row_bytes(DType::Q4_1, 64), 72u);
  EXPECT_EQ(activation_row_bytes(DType::Q6_K, 512), 584u);
  EXPECT_EQ(activation_row_bytes(DType::F16, 7), 14u);
  EXPECT_FALSE(quant_dot_supported(DType::Q8_K));
}

// (a) The optimized kernel against its scalar twin. Both compute the same exact int32 block
// sums; they differ in how the per-block float terms are rounded and summed. Any summation
// order of k terms errs by at most (k-1)*u*sum|term| and each term carries <= 3 roundings, so
// |opt - ref| <= 2*(k + 4)*u*B with B bounding sum|term| and k the longest chain.
TEST(QuantDot, OptimizedMatchesReference) {
  std::mt19937 rng(1234);
  for (DType t : kWeightTypes) {
    for (int64_t n : sizes(t)) {
      for (int rep = 0; rep < 3; ++rep) {
        const Case c = make_case(t, n, rng);
        const float opt = vec_dot(t, n, c.w.data(), c.a.data());
        const float ref = ref::vec_dot(t, n, c.w.data(), c.a.data());
        const double tol = 2.0 * (chain_length(t, n) + 4.0) * kU * c.magnitude + 1e-30;
        ASSERT_NEAR(opt, ref, tol) << dtype_name(t) << " n=" << n << " rep=" << rep;
      }
    }
  }
}

// (b) The reference's integer math reproduces the dot of the dequantized rows. Beyond the
// summation bound above, Q8_1's s = fp16(d * sum q) is rounded to half precision (relative
// 2^-11, or 2^-25 absolute when subnormal), which the min term m * s inherits.
TEST(QuantDot, ReferenceMatchesDequantizedDot) {
  std::mt19937 rng(99);
  for (DType t : kWeightTypes) {
    for (int64_t n : sizes(t)) {
      const Case c = make_case(t, n, rng);
      const double sum_tol = 2.0 * (chain_length(t, n) + 8.0) * kU * c.magnitude + 1e-30;
      // The bound has teeth: it is below one element's average share of the magnitude, so a
      // wrong scale, sign or element would show.
      EXPECT_LT(sum_tol, c.magnitude / static_cast<double>(n)) << dtype_name(t) << " n=" << n;
      double tol = sum_tol;
      if (vec_dot_type(t) == DType::Q8_1) {
        const auto* a = reinterpret_cast<const BlockQ8_1*>(c.a.data());
        for (int64_t b = 0; b < n / kQK; ++b)
          tol += std::fabs(c.off[b * kQK]) * (std::fabs(fp16_to_fp32(a[b].s)) * 0x1p-11 + 0x1p-25);
      }
      const float ref = ref::vec_dot(t, n, c.w.data(), c.a.data());
      ASSERT_NEAR(ref, c.exact, tol) << dtype_name(t) << " n=" << n;
    }
  }
}

// (c) Hand-checked activation blocks. amax 127 makes d = 1 (id = 127/amax = 1), so the quants
// are the rounded inputs, halves to even everywhere: Q8_0/Q8_1 as ggml's x86 quantize_row_q8_0
// (_mm256_round_ps), Q8_K as nearest_int.
TEST(QuantDot, QuantizeActivationHandExample) {
  std::vector<float> x(kQK, 0.0f);
  const float head[] = {2.5f, -2.5f, 0.5f, -0.5f, 1.49f, 127.0f, -3.7f, 0.0f};
  std::copy(std::begin(head), std::end(head), x.begin());
  const int8_t want[] = {2, -2, 0, 0, 1, 127, -4, 0};

  for (auto quant : {ref::quantize_activation, quantize_activation}) {
    BlockQ8_0 q0;
    quant(DType::Q8_0, x.data(), &q0, kQK);
    EXPECT_EQ(q0.d, 0x3C00);  // fp16 1.0
    for (int j = 0; j < 8; ++j) EXPECT_EQ(q0.qs[j], want[j]) << j;
    for (int j = 8; j < kQK; ++j) EXPECT_EQ(q0.qs[j], 0);

    BlockQ8_1 q1;
    quant(DType::Q4_1, x.data(), &q1, kQK);
    EXPECT_EQ(q1.d, 0x3C00);
    EXPECT_EQ(q1.s, 0x57C0);  // fp16 124.0 = 1 * (2-2+0+0+1+127-4)
    EXPECT_EQ(std::memcmp(q1.qs, q0.qs, kQK), 0);

    // Q8_K: the signed max is +127 (first of +127 / -127), so iscale = -1, d = -1 and the
    // quants are -x rounded half to even.
    std::vector<float> xk(kQK_K, 0.0f);
    const float headk[] = {2.5f, -2.5f, -0.5f, 127.0f, 1.5f, -127.0f};
    std::copy(std::begin(headk), std::end(headk), xk.begin());
    xk[200] = 3.25f;
    BlockQ8_K qk;
    quant(DType::Q4_K, xk.data(), &qk, kQK_K);
    EXPECT_EQ(qk.d, -1.0f);
    const int8_t wantk[] = {-2, 2, 0, -127, -2, 127};
    for (int j = 0; j < 6; ++j) EXPECT_EQ(qk.qs[j], wantk[j]) << j;
    EXPECT_EQ(qk.qs[200], -3);
    EXPECT_EQ(qk.bsums[0], -2);
    EXPECT_EQ(qk.bsums[12], -3);
    for (int g = 1; g < 16; ++g) {
      if (g != 12) {
        EXPECT_EQ(qk.bsums[g], 0) << g;
      }
    }

    // All-zero input: d = 0 and zero quants and sums.
    std::vector<float> zeros(kQK_K, 0.0f);
    quant(DType::Q6_K, zeros.data(), &qk, kQK_K);
    EXPECT_EQ(qk.d, 0.0f);
    for (int j = 0; j < kQK_K; ++j) ASSERT_EQ(qk.qs[j], 0);
    for (int g = 0; g < 16; ++g) EXPECT_EQ(qk.bsums[g], 0);
  }
}

// (c) Random rows: the optimized quantizers agree with the reference byte for byte; Q8_K
// also matches kvs::quantize_row, and Q8_0/Q8_1 match the x86 formula written out here
// (d = amax/127, q = round-half-even(x * (127/amax)), s = f16(d * sum q)), which differs from
// the weight quantizer's 1/d multiplier and roundf.
TEST(QuantDot, QuantizeActivationMatchesQuantizeRow) {
  std::mt19937 rng(7);
  for (int rep = 0; rep < 20; ++rep) {
    const int64_t n = 1024;
    auto x = randn(n, rng, rep % 2 ? 0.01f : 10.0f);
    if (rep == 3) std::fill(x.begin(), x.begin() + 256, 0.0f);  // an all-zero super-block
    if (rep == 4) {  // amax 127 in every block makes d = 1, so the .5 inputs are exact ties
      for (auto& v : x) v = std::round(v * 2) / 2;
      for (int64_t i = 0; i < n; i += kQK) x[i] = (i / kQK) % 3 ? 127.0f : -127.0f;
    }
    for (DType t : kWeightTypes) {
      const DType at = vec_dot_type(t);
      std::vector<uint8_t> a(activation_row_bytes(t, n)), b(a.size());
      ref::quantize_activation(t, x.data(), a.data(), n);
      quantize_activation(t, x.data(), b.data(), n);
      ASSERT_EQ(a, b) << dtype_name(t) << " rep=" << rep;
      if (at == DType::Q8_0 || at == DType::Q8_1) {
        const size_t bb = at == DType::Q8_0 ? sizeof(BlockQ8_0) : sizeof(BlockQ8_1);
        for (int64_t i = 0; i < n / kQK; ++i) {
          const float* xb = x.data() + i * kQK;
          float amax = 0.0f;
          for (int j = 0; j < kQK; ++j) amax = std::max(amax, std::fabs(xb[j]));
          const float id = amax != 0.0f ? 127.0f / amax : 0.0f;
          uint16_t d;
          std::memcpy(&d, a.data() + i * bb, 2);
          ASSERT_EQ(d, fp32_to_fp16(amax / 127.0f)) << dtype_name(at) << " rep=" << rep;
          const auto* qs = reinterpret_cast<const int8_t*>(a.data() + i * bb + (bb - kQK));
          int sum = 0;
          for (int j = 0; j < kQK; ++j) {
            ASSERT_EQ(qs[j], static_cast<int>(std::nearbyint(xb[j] * id))) << rep << " " << j;
            sum += qs[j];
          }
          if (at == DType::Q8_1) {
            uint16_t s16;
            std::memcpy(&s16, a.data() + i * bb + 2, 2);
            ASSERT_EQ(s16, fp32_to_fp16((amax / 127.0f) * static_cast<float>(sum)));
          }
        }
      } else {
        std::vector<uint8_t> c(a.size());
        quantize_row(at, x.data(), c.data(), n);
        ASSERT_EQ(a, c) << dtype_name(at) << " rep=" << rep;
      }
    }
  }
}

// (d) The twins replay ggml's x86 lane layout and FMA order, so where quant_dot.h promises it
// they agree bit for bit, and under every DotKernel for every K-quant.
TEST(QuantDot, OptimizedBitIdenticalToReference) {
  std::mt19937 rng(321);
  const DotKernel kernels[] = {DotKernel::kVecDot, DotKernel::kTiled, DotKernel::kRepackGemv,
                               DotKernel::kRepackGemm};
  for (DType t : kWeightTypes) {
    const bool exact_vec_dot = t == DType::Q4_0 || t == DType::Q4_1 || t == DType::Q5_0 ||
                               t == DType::Q5_1 || t == DType::Q8_0 || t == DType::Q4_K ||
                               t == DType::Q6_K;
    for (int64_t n : sizes(t)) {
      const Case c = make_case(t, n, rng);
      for (DotKernel k : kernels) {
        if (k == DotKernel::kVecDot && !exact_vec_dot) continue;
        if (k != DotKernel::kVecDot && !is_k_quant(t)) continue;
        ASSERT_EQ(vec_dot(t, n, c.w.data(), c.a.data(), k),
                  ref::vec_dot(t, n, c.w.data(), c.a.data(), k))
            << dtype_name(t) << " n=" << n << " kernel=" << static_cast<int>(k);
      }
    }
  }
}

// (e) Every kernel computes the dot of the dequantized rows (bound as in (b)), and the kernels
// that are not vec_dot ignore the legacy types.
TEST(QuantDot, KernelsMatchDequantizedDot) {
  std::mt19937 rng(17);
  for (DType t : kWeightTypes) {
    for (int64_t n : sizes(t)) {
      const Case c = make_case(t, n, rng);
      const double tol = 2.0 * (chain_length(t, n) + 8.0) * kU * c.magnitude + 1e-30;
      for (DotKernel k : {DotKernel::kTiled, DotKernel::kRepackGemv, DotKernel::kRepackGemm}) {
        const float v = ref::vec_dot(t, n, c.w.data(), c.a.data(), k);
        if (is_k_quant(t)) {
          ASSERT_NEAR(v, c.exact, tol) << dtype_name(t) << " n=" << n << " k=" << int(k);
        } else {
          ASSERT_EQ(v, ref::vec_dot(t, n, c.w.data(), c.a.data())) << dtype_name(t);
        }
      }
    }
  }
}

// (f) The kernels' float formulas on two Q6_K super-blocks, written out from the integer sums:
// tiled rounds isum*d_w, then fma(., d_a, acc); the repack GEMV rounds d_w*d_a first.
TEST(QuantDot, KernelFormulasQ6K) {
  std::mt19937 rng(8);
  const int64_t n = 2 * kQK_K;
  const Case c = make_case(DType::Q6_K, n, rng);
  const auto* w = reinterpret_cast<const BlockQ6_K*>(c.w.data());
  const auto* a = reinterpret_cast<const BlockQ8_K*>(c.a.data());
  float tiled = 0.0f, gemv = 0.0f;
  for (int b = 0; b < 2; ++b) {
    const float dw = fp16_to_fp32(w[b].d);
    double isum = 0;  // wf / d_w is the exact integer scale * quant
    for (int e = 0; e < kQK_K; ++e) isum += (c.wf[b * kQK_K + e] / dw) * a[b].qs[e];
    tiled = std::fma(static_cast<float>(isum) * dw, a[b].d, tiled);
    gemv = std::fma(static_cast<float>(isum), dw * a[b].d, gemv);
  }
  EXPECT_EQ(ref::vec_dot(DType::Q6_K, n, c.w.data(), c.a.data(), DotKernel::kTiled), tiled);
  EXPECT_EQ(ref::vec_dot(DType::Q6_K, n, c.w.data(), c.a.data(), DotKernel::kRepackGemv), gemv);
  EXPECT_EQ(ref::vec_dot(DType::Q6_K, n, c.w.data(), c.a.data(), DotKernel::kRepackGemm), gemv);
}

// (g) Which kernel llama.cpp's x86 CPU backend uses per output.
TEST(QuantDot, DotKernelSelection) {
  // Q4_K with rows % 8 == 0 is repacked: whole groups of 4 tokens GEMM, the rest GEMV.
  for (int t = 0; t < 4; ++t) EXPECT_EQ(dot_kernel(DType::Q4_K, 640, 7, t), DotKernel::kRepackGemm);
  for (int t = 4; t < 7; ++t) EXPECT_EQ(dot_kernel(DType::Q4_K, 640, 7, t), DotKernel::kRepackGemv);
  EXPECT_EQ(dot_kernel(DType::Q4_K, 640, 1, 0), DotKernel::kRepackGemv);
  EXPECT_EQ(dot_kernel(DType::Q4_K, 640, 512, 511), DotKernel::kRepackGemm);
  // Otherwise K-quants take the tiled kernel from 8 tokens on.
  EXPECT_EQ(dot_kernel(DType::Q4_K, 644, 8, 0), DotKernel::kTiled);
  EXPECT_EQ(dot_kernel(DType::Q4_K, 644, 7, 0), DotKernel::kVecDot);
  EXPECT_EQ(dot_kernel(DType::Q6_K, 640, 8, 7), DotKernel::kTiled);
  EXPECT_EQ(dot_kernel(DType::Q6_K, 640, 7, 0), DotKernel::kVecDot);
  EXPECT_EQ(dot_kernel(DType::Q5_K, 640, 9, 0), DotKernel::kTiled);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q8_0, DType::F32, DType::F16})
    EXPECT_EQ(dot_kernel(t, 640, 512, 3), DotKernel::kVecDot) << dtype_name(t);
}

// (i) The four- and eight-token kernels against single calls, bit for bit, on every weight
// type and every kernel (the activation rows sit at a stride, as in the matmul's buffer).
TEST(QuantDot, MultiTokenKernelsMatchSingleRows) {
  std::mt19937 rng(31);
  const DotKernel kernels[] = {DotKernel::kVecDot, DotKernel::kTiled, DotKernel::kRepackGemv,
                               DotKernel::kRepackGemm};
  constexpr int kT = 16;  // tokens
  for (DType t : kWeightTypes) {
    for (int64_t n : sizes(t)) {
      if (n % dtype_traits(t).block_size != 0) continue;
      const auto w = random_weights(t, n, rng);
      const size_t ab = activation_row_bytes(t, n);
      const size_t stride = ab + 64;  // [kT] rows of ab bytes, then padding
      std::vector<uint8_t> act(kT * stride);
      for (int j = 0; j < kT; ++j) {
        const auto x = randn(n, rng, 3.0f);
        quantize_activation(t, x.data(), act.data() + j * stride, n);
      }
      std::vector<float> d, s;  // [blocks][kT] f32 scales where the format has them
      activation_scales(t, act.data(), kT, stride, n, d, s);
      ActBatch a;
      a.rows = act.data();
      a.stride = stride;
      // The types with interleaved quants also run from them: kT of 18 tokens' blocks are
      // used (ld 18, from token 2: groups start at even tokens), as a matmul group sees its
      // batch.
      constexpr int kLd = kT + 2;
      std::vector<uint8_t> q(static_cast<size_t>(n) * kLd);  // [n / 32][kLd][32]
      const bool interleaved = interleaved_quants_used(t);
      if (interleaved)
        for (int j = 0; j < kT; ++j)
          interleave_activation_row(t, act.data() + j * stride, n, j + 2, kLd, q.data());
      for (const bool use_u : {false, true}) {
        if (use_u && !interleaved) continue;
        std::vector<float> dl, sl;  // the scales at ld kLd as well
        if (use_u) {
          dl.assign(d.size() / kT * kLd, 0.0f);
          sl.assign(s.size() / kT * kLd, 0.0f);
          for (size_t i = 0; i < d.size() / kT; ++i)
            for (int j = 0; j < kT; ++j) {
              dl[i * kLd + j + 2] = d[i * kT + j];
              if (!s.empty()) sl[i * kLd + j + 2] = s[i * kT + j];
            }
        }
        a.d = d.empty() ? nullptr : (use_u ? dl.data() + 2 : d.data());
        a.s = s.empty() ? nullptr : (use_u ? sl.data() + 2 : s.data());
        a.ld = use_u ? kLd : kT;
        a.q = use_u ? q.data() + 64 : nullptr;
        for (DotKernel k : kernels) {
          float out4[4], out8[8], out16[16];
          vec_dot_x4(t, n, w.data(), a, k, out4);
          vec_dot_x8(t, n, w.data(), a, k, out8);
          vec_dot_x16(t, n, w.data(), a, k, out16);
          for (int j = 0; j < kT; ++j) {
            const float want = vec_dot(t, n, w.data(), act.data() + j * stride, k);
            const auto where = [&] {
              return std::string(dtype_name(t)) + " n=" + std::to_string(n) + " kernel " +
                     std::to_string(static_cast<int>(k)) + " row " + std::to_string(j) +
                     " interleaved " + std::to_string(use_u);
            };
            if (j < 4) {
              ASSERT_EQ(out4[j], want) << where() << " (x4)";
            }
            if (j < 8) {
              ASSERT_EQ(out8[j], want) << where() << " (x8)";
            }
            ASSERT_EQ(out16[j], want) << where() << " (x16)";
          }
        }
      }
    }
  }
}

// The threaded matmul bit for bit against its scalar twin at batch sizes that split into
// groups of 16, 8 and 4 tokens plus a single-token rest, on weights with and without
// rows % 8 == 0 (Q4_K's repacked and tiled kernels).
TEST(QuantDot, MatmulBitIdenticalToTwinAtEveryGroupSplit) {
  ThreadPool pool(2);
  const int64_t K = 512;
  for (const int64_t N : {int64_t{37}, int64_t{40}}) {
    std::mt19937 rng(static_cast<unsigned>(N));
    // Not Q5_K: its single-row AVX2 kernel keeps a different float order from its twin (see
    // quant_dot.h), so only the tolerance tests above hold for it.
    for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q4_K,
                    DType::Q6_K}) {
      std::vector<uint8_t> wq;  // [N] rows of K elements in type t
      for (int64_t n = 0; n < N; ++n) {
        const auto row = random_weights(t, K, rng);
        wq.insert(wq.end(), row.begin(), row.end());
      }
      Tensor W{wq.data(), t, {K, N, 1, 1}, 2};
      for (const int64_t T : {int64_t{1}, int64_t{12}, int64_t{31}, int64_t{45}}) {
        const auto x = randn(K * T, rng);
        std::vector<float> y(T * N), y_twin(T * N);  // [T, N]
        ops::matmul(x.data(), T, W, nullptr, y.data(), pool);
        ops::ref::matmul_quantized(x.data(), T, W, nullptr, y_twin.data());
        for (int64_t i = 0; i < T * N; ++i)
          ASSERT_EQ(y[i], y_twin[i]) << dtype_name(t) << " N=" << N << " T=" << T << " at " << i;
      }
    }
  }
}

// (j) The many-rows kernel (decode) against single calls, bit for bit: 9 rows = two groups of
// four and a tail, on every weight type and kernel.
TEST(QuantDot, RowsKernelMatchesSingleRows) {
  std::mt19937 rng(37);
  const DotKernel kernels[] = {DotKernel::kVecDot, DotKernel::kTiled, DotKernel::kRepackGemv,
                               DotKernel::kRepackGemm};
  for (DType t : kWeightTypes) {
    for (int64_t n : sizes(t)) {
      if (n % dtype_traits(t).block_size != 0) continue;
      const int64_t rows = 9;
      const size_t rb = row_bytes(t, n);
      std::vector<uint8_t> w;  // [rows] weight rows of rb bytes
      for (int64_t r = 0; r < rows; ++r) {
        const auto row = random_weights(t, n, rng);
        w.insert(w.end(), row.begin(), row.end());
      }
      const auto x = randn(n, rng, 3.0f);
      std::vector<uint8_t> act(activation_row_bytes(t, n));
      quantize_activation(t, x.data(), act.data(), n);
      for (DotKernel k : kernels) {
        std::vector<float> out(rows);
        vec_dot_rows(t, n, w.data(), rb, rows, act.data(), k, out.data());
        for (int64_t r = 0; r < rows; ++r)
          ASSERT_EQ(out[r], vec_dot(t, n, w.data() + r * rb, act.data(), k))
              << dtype_name(t) << " n=" << n << " kernel " << static_cast<int>(k) << " row " << r;
      }
    }
  }
}

// (h) ops::matmul and its scalar twin evaluate every output with the kernel dot_kernel names
// for that batch, bit for bit: this is what makes K-quant prefills match llama.cpp (a matmul
// that used plain vec_dot everywhere left Gemma 3 Q4_K_M at top-1 0.95 against it).
TEST(QuantDot, MatmulUsesTheKernelLlamaCppPicksPerBatch) {
  std::mt19937 rng(29);
  ThreadPool pool(2);
  const int64_t K = 512;
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    for (int64_t N : {int64_t{40}, int64_t{36}}) {  // Q4_K repacks only rows % 8 == 0
      std::vector<uint8_t> wq;                      // [N] rows of K elements in type t
      for (int64_t n = 0; n < N; ++n) {
        const auto row = random_weights(t, K, rng);
        wq.insert(wq.end(), row.begin(), row.end());
      }
      const Tensor W{wq.data(), t, {K, N, 1, 1}, 2};
      for (int64_t T : {int64_t{3}, int64_t{13}, int64_t{22}}) {
        const auto x = randn(K * T, rng, 3.0f);
        std::vector<float> y(T * N), y_twin(T * N);  // [T, N]
        ops::matmul(x.data(), T, W, nullptr, y.data(), pool);
        ops::ref::matmul_quantized(x.data(), T, W, nullptr, y_twin.data());
        const size_t ab = activation_row_bytes(t, K);
        std::vector<uint8_t> act(ab);  // one token's Q8_K row
        int differs_from_plain = 0;
        for (int64_t tok = 0; tok < T; ++tok) {
          ref::quantize_activation(t, x.data() + tok * K, act.data(), K);
          const DotKernel k = dot_kernel(t, N, T, tok);
          for (int64_t n = 0; n < N; ++n) {
            const void* w = wq.data() + n * row_bytes(t, K);
            // Against each twin's own vec_dot: Q5_K's plain vec_dot sums in another order
            // in the scalar twin (see quant_dot.h).
            const float want = ref::vec_dot(t, K, w, act.data(), k);
            ASSERT_EQ(y[tok * N + n], vec_dot(t, K, w, act.data(), k))
                << dtype_name(t) << " N=" << N << " T=" << T;
            ASSERT_EQ(y_twin[tok * N + n], want) << dtype_name(t) << " N=" << N << " T=" << T;
            differs_from_plain += want != ref::vec_dot(t, K, w, act.data());
          }
        }
        // The batch kernels round differently from vec_dot, so the check above can fail.
        if (dot_kernel(t, N, T, 0) != DotKernel::kVecDot) {
          EXPECT_GT(differs_from_plain, 0) << dtype_name(t) << " N=" << N << " T=" << T;
        }
      }
    }
  }
}

// Throughput of the weight stream (GB/s of weight bytes) at n = 4096, optimized vs reference.
TEST(QuantDot, DISABLED_Benchmark) {
  std::mt19937 rng(5);
  const int64_t n = 4096, rows = 512;
  for (DType t : kWeightTypes) {
    std::vector<uint8_t> w;
    for (int64_t r = 0; r < rows; ++r) {
      const auto row = random_weights(t, n, rng);
      w.insert(w.end(), row.begin(), row.end());
    }
    const auto x = randn(n, rng);
    std::vector<uint8_t> a(activation_row_bytes(t, n));
    quantize_activation(t, x.data(), a.data(), n);
    const size_t rb = row_bytes(t, n);
    // Best of 5 timings: the machine is shared, and the fastest run is the least disturbed.
    auto run = [&](float (*dot)(DType, int64_t, const void*, const void*), int iters) {
      volatile float sink = 0;
      double best = 0;
      for (int trial = 0; trial < 5; ++trial) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int it = 0; it < iters; ++it)
          for (int64_t r = 0; r < rows; ++r) sink = sink + dot(t, n, w.data() + r * rb, a.data());
        const double s =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        best = std::max(best, static_cast<double>(rb) * rows * iters / s / 1e9);
      }
      return best;
    };
    const double opt = run(vec_dot, 40), ref = run(ref::vec_dot, 2);
    std::printf("%-5s  opt %7.2f GB/s   ref %6.2f GB/s   x%.1f\n",
                std::string(dtype_name(t)).c_str(), opt, ref, opt / ref);
  }
}

// The eight-token kernel on cache-resident rows (n = 576, SmolLM2's width), ns per weight
// block and token, with and without interleaved quants. Best of 5 timings.
TEST(QuantDot, DISABLED_TokenKernelBench) {
  std::mt19937 rng(6);
  const int64_t n = 576;
  for (DType t : kWeightTypes) {
    if (n % dtype_traits(t).block_size != 0) continue;
    const auto w = random_weights(t, n, rng);
    const size_t ab = activation_row_bytes(t, n);
    std::vector<uint8_t> act(8 * ab), q_buf(8 * n + 63);  // [8] activation rows; quants
    uint8_t* q = q_buf.data() + (-reinterpret_cast<uintptr_t>(q_buf.data()) & 63);  // [n/32][8][32]
    for (int j = 0; j < 8; ++j) {
      const auto x = randn(n, rng);
      quantize_activation(t, x.data(), act.data() + j * ab, n);
    }
    std::vector<float> d, s;  // [blocks][8]
    activation_scales(t, act.data(), 8, ab, n, d, s);
    const bool interleaved = interleaved_quants_used(t);
    if (interleaved)
      for (int j = 0; j < 8; ++j) interleave_activation_row(t, act.data() + j * ab, n, j, 8, q);
    const DotKernel k = dot_kernel(t, 1536, 512, 0);
    for (const bool use_u : {false, true}) {
      if (use_u && !interleaved) continue;
      ActBatch a{
          act.data(),         ab, d.empty() ? nullptr : d.data(), s.empty() ? nullptr : s.data(), 8,
          use_u ? q : nullptr};
      const int iters = 20000;
      double best = 1e30;
      float out[8], sink = 0;
      for (int trial = 0; trial < 5; ++trial) {
        const auto t0 = std::chrono::steady_clock::now();
        for (int it = 0; it < iters; ++it) {
          vec_dot_x8(t, n, w.data(), a, k, out);
          sink += out[it & 7];
        }
        best = std::min(
            best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
      }
      const double blocks = static_cast<double>(n) / dtype_traits(t).block_size * 8 * iters;
      std::printf("%-5s %s %6.3f ns per block and token (%g)\n", std::string(dtype_name(t)).c_str(),
                  use_u ? "interleaved" : "plain      ", best / blocks * 1e9,
                  static_cast<double>(sink != 0));
    }
  }
}

}  // namespace
}  // namespace kvs
