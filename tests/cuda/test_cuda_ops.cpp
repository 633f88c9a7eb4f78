// Every CUDA op against its CPU reference (kernels/cpu/ops.h, quant.cpp, the reference
// attention backend), on every weight type the device reads.
#include <cmath>
#include <cstddef>
#include <cstring>
#include <random>
#include <utility>

#include "cuda_test_support.h"
#include "kernels/attention/backend.h"
#include "kernels/core/half.h"
#include "kernels/core/quant.h"
#include "kernels/core/quant_blocks.h"
#include "kernels/core/tensor.h"
#include "kernels/cpu/ops.h"
#include "kernels/cpu/quant_dot.h"
#include "kernels/cuda/ops.h"

namespace kvs {
namespace {

using test::rel_err;
using test::to_device;
using test::to_host;

std::vector<float> randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& x : v) x = d(rng);
  return v;
}

// Offsets of the fp16 scale fields of a block type, so random blocks get sane scales.
std::vector<size_t> half_fields(DType t) {
  switch (t) {
    case DType::Q2_K:
      return {offsetof(BlockQ2_K, d), offsetof(BlockQ2_K, dmin)};
    case DType::Q3_K:
      return {offsetof(BlockQ3_K, d)};
    case DType::Q4_K:
      return {offsetof(BlockQ4_K, d), offsetof(BlockQ4_K, dmin)};
    case DType::Q5_K:
      return {offsetof(BlockQ5_K, d), offsetof(BlockQ5_K, dmin)};
    case DType::Q6_K:
      return {offsetof(BlockQ6_K, d)};
    default:
      return {};
  }
}

// A [rows][cols] matrix of type t: quantized from random floats where kvsieve has a
// quantizer, random blocks with small scales for the K-quants.
std::vector<uint8_t> random_matrix(DType t, int64_t rows, int64_t cols, uint32_t seed) {
  const size_t rb = row_bytes(t, cols);
  std::vector<uint8_t> m(rb * rows);
  const std::vector<size_t> halves = half_fields(t);
  if (halves.empty()) {
    const std::vector<float> f = randn(static_cast<size_t>(rows * cols), seed, 0.5f);
    for (int64_t r = 0; r < rows; ++r)
      quantize_row(t, f.data() + r * cols, m.data() + r * rb, cols);
    return m;
  }
  std::mt19937 rng(seed);
  for (uint8_t& b : m) b = static_cast<uint8_t>(rng());
  const size_t bb = dtype_traits(t).block_bytes;
  std::uniform_real_distribution<float> d(0.001f, 0.02f);
  for (size_t off = 0; off < m.size(); off += bb)
    for (size_t h : halves) {
      const uint16_t bits = fp32_to_fp16(d(rng));
      std::memcpy(m.data() + off + h, &bits, 2);
    }
  return m;
}

const DType kTypes[] = {DType::F32,  DType::F16,  DType::BF16, DType::Q4_0, DType::Q4_1,
                        DType::Q5_0, DType::Q5_1, DType::Q8_0, DType::Q2_K, DType::Q3_K,
                        DType::Q4_K, DType::Q5_K, DType::Q6_K};

TEST(CudaOps, GetRowsEqualsDequantizeRowOnEveryType) {
  KVS_REQUIRE_CUDA();
  const int64_t D = 512, V = 37;
  for (DType t : kTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const std::vector<uint8_t> E = random_matrix(t, V, D, 1);
    const std::vector<int32_t> ids = {0, 36, 5, 5, 17};
    std::vector<float> want(ids.size() * D);
    for (size_t i = 0; i < ids.size(); ++i)
      dequantize_row(t, E.data() + ids[i] * row_bytes(t, D), want.data() + i * D, D);
    const auto dE = to_device(E);
    const auto dids = to_device(ids);
    cuda::DeviceBuffer out(want.size() * 4);
    cuda::get_rows({dE.get(), t, D, V}, dids.as<int32_t>(), static_cast<int64_t>(ids.size()),
                   out.as<float>(), nullptr);
    // The device may fuse a multiply-add where the CPU rounds twice.
    EXPECT_LT(rel_err(to_host<float>(out, want.size()), want), 1e-6);
  }
}

// GEMV: within 1e-5 of the CPU's quantized-activation matmul (the same integer sums for the
// types with unit dots, activations rounded to f16/bf16 for those weights; only the float
// order differs), and of the exact float matmul for f32, Q2_K and Q3_K weights (dequantized,
// f32 activations). GEMM (bf16 operands, f32 accumulation): within 2e-2 of the exact float
// matmul, relative to the largest output.
TEST(CudaOps, MatmulMatchesReferenceOnEveryTypeBothPaths) {
  KVS_REQUIRE_CUDA();
  cuda::CudaContext ctx;
  const int64_t K = 768, N = 67;
  for (DType t : kTypes) {
    SCOPED_TRACE(std::string(dtype_name(t)));
    const std::vector<uint8_t> W = random_matrix(t, N, K, 2);
    Tensor wt;
    wt.data = W.data();
    wt.dtype = t;
    wt.ne = {K, N, 1, 1};
    wt.n_dims = 2;
    const std::vector<float> bias = randn(N, 4);
    const auto dW = to_device(W);
    const auto dbias = to_device(bias);
    for (int64_t T : {1, 3, 8, 9, 40}) {
      SCOPED_TRACE("T=" + std::to_string(T));
      const std::vector<float> x = randn(static_cast<size_t>(T * K), 3);
      std::vector<float> want(static_cast<size_t>(T * N)), want_q(want.size());
      ops::ref::matmul(x.data(), T, wt, bias.data(), want.data());
      const bool float_x = t == DType::F32 || t == DType::Q2_K || t == DType::Q3_K;
      if (float_x)
        want_q = want;
      else
        ops::ref::matmul_quantized(x.data(), T, wt, bias.data(), want_q.data());
      const auto dx = to_device(x);
      cuda::DeviceBuffer dy(want.size() * 4);
      for (cuda::GemmPath path : {cuda::GemmPath::Gemv, cuda::GemmPath::Gemm}) {
        cuda::matmul(dx.as<float>(), T, {dW.get(), t, K, N}, dbias.as<float>(), dy.as<float>(), ctx,
                     path);
        ctx.synchronize();
        const bool gemv = path == cuda::GemmPath::Gemv;
        EXPECT_LT(rel_err(to_host<float>(dy, want.size()), gemv ? want_q : want),
                  gemv ? 1e-5 : 2e-2)
            << (gemv ? "gemv" : "gemm");
      }
    }
  }
}

// matmul_shared_input quantizes x once for matrices of one activation format: the outputs
// are those of separate matmuls, bit for bit, including mixed formats (Q4_K then Q6_K share
// Q8_K; Q5_0 needs Q8_0; F16 dequantizes) and the GEMM path above kGemvMaxTokens.
TEST(CudaOps, SharedInputMatmulEqualsSeparateMatmuls) {
  KVS_REQUIRE_CUDA();
  cuda::CudaContext ctx;
  const int64_t K = 512;
  const DType types[] = {DType::Q4_K, DType::Q6_K, DType::Q5_0, DType::F16};
  const int64_t rows[] = {40, 24, 33, 17};
  std::vector<cuda::DeviceBuffer> dW;
  std::vector<cuda::DeviceMatrix> M;
  for (int i = 0; i < 4; ++i) {
    dW.push_back(to_device(random_matrix(types[i], rows[i], K, 20 + i)));
  }
  for (int i = 0; i < 4; ++i) M.push_back({dW[i].get(), types[i], K, rows[i]});
  const auto bias = to_device(randn(40, 9));
  for (int64_t T : {1, 5, 12}) {
    SCOPED_TRACE("T=" + std::to_string(T));
    const auto dx = to_device(randn(static_cast<size_t>(T * K), 8));
    std::vector<cuda::DeviceBuffer> sep, shared;
    for (int i = 0; i < 4; ++i) {
      sep.emplace_back(static_cast<size_t>(T * rows[i]) * 4);
      shared.emplace_back(static_cast<size_t>(T * rows[i]) * 4);
      cuda::matmul(dx.as<float>(), T, M[i], i == 0 ? bias.as<float>() : nullptr, sep[i].as<float>(),
                   ctx);
    }
    cuda::matmul_shared_input(dx.as<float>(), T,
                              {{&M[0], bias.as<float>(), shared[0].as<float>()},
                               {&M[1], nullptr, shared[1].as<float>()},
                               {&M[2], nullptr, shared[2].as<float>()},
                               {&M[3], nullptr, shared[3].as<float>()}},
                              ctx);
    for (int i = 0; i < 4; ++i) {
      const size_t n = static_cast<size_t>(T * rows[i]);
      EXPECT_EQ(to_host<float>(shared[i], n), to_host<float>(sep[i], n)) << dtype_name(types[i]);
    }
  }
}

// The decode GEMV's activation rows: the CPU's quantize_activation bytes for every format,
// with a zero block, a negative extreme, ties of magnitude and exact halves.
TEST(CudaOps, ActivationQuantizationEqualsTheCpu) {
  KVS_REQUIRE_CUDA();
  const int64_t T = 3, K = 1024;
  std::vector<float> x = randn(static_cast<size_t>(T * K), 40, 2.0f);
  for (int i = 0; i < 32; ++i) x[32 + i] = 0.0f;
  for (int i = 256; i < 512; ++i) x[i] = 0.0f;  // a whole Q8_K block
  x[600] = -9.0f;
  x[700] = 9.0f, x[701] = -9.0f;  // equal magnitudes: the first one sets the sign
  for (int i = 0; i < 32; ++i) x[K + 64 + i] = 0.5f * static_cast<float>(i - 16);
  const auto dx = to_device(x);
  for (DType t : {DType::Q4_0, DType::Q4_1, DType::Q4_K}) {
    SCOPED_TRACE(std::string(dtype_name(vec_dot_type(t))));
    const size_t row = activation_row_bytes(t, K);
    std::vector<uint8_t> want(row * T);
    for (int64_t r = 0; r < T; ++r)
      kvs::quantize_activation(t, x.data() + r * K, want.data() + r * row, K);
    cuda::DeviceBuffer out(want.size());
    cuda::quantize_activation(t, dx.as<float>(), T, K, out.as<uint8_t>(), nullptr);
    EXPECT_EQ(to_host<uint8_t>(out, want.size()), want);
  }
}

// The fused gate/up GEMV equals the two GEMVs and the activation kernel bit for bit; other
// cases (types differ, prefill) take those ops themselves.
TEST(CudaOps, FusedGluEqualsSeparateOps) {
  KVS_REQUIRE_CUDA();
  cuda::CudaContext ctx;
  const int64_t K = 768, N = 45;
  for (auto [tg, tu] : {std::pair{DType::Q4_K, DType::Q4_K}, std::pair{DType::Q8_0, DType::Q8_0},
                        std::pair{DType::Q4_1, DType::Q4_1}, std::pair{DType::Q4_K, DType::Q6_K}}) {
    SCOPED_TRACE(std::string(dtype_name(tg)) + "/" + std::string(dtype_name(tu)));
    const auto dg = to_device(random_matrix(tg, N, K, 30)),
               du = to_device(random_matrix(tu, N, K, 31));
    const cuda::DeviceMatrix G{dg.get(), tg, K, N}, U{du.get(), tu, K, N};
    for (int64_t T : {1, 3, 12}) {
      for (bool gelu : {false, true}) {
        SCOPED_TRACE("T=" + std::to_string(T) + (gelu ? " gelu" : " silu"));
        const auto dx = to_device(randn(static_cast<size_t>(T * K), 32));
        const size_t n = static_cast<size_t>(T * N);
        cuda::DeviceBuffer g(n * 4), u(n * 4), want(n * 4), got(n * 4), scratch(n * 4);
        cuda::matmul(dx.as<float>(), T, G, nullptr, g.as<float>(), ctx);
        cuda::matmul(dx.as<float>(), T, U, nullptr, u.as<float>(), ctx);
        if (gelu)
          cuda::gelu_tanh_mul(g.as<float>(), u.as<float>(), want.as<float>(), T * N, ctx.stream());
        else
          cuda::silu_mul(g.as<float>(), u.as<float>(), want.as<float>(), T * N, ctx.stream());
        cuda::matmul_glu(dx.as<float>(), T, G, U, gelu, got.as<float>(), scratch.as<float>(), ctx);
        EXPECT_EQ(to_host<float>(got, n), to_host<float>(want, n));
      }
    }
  }
}

TEST(CudaOps, ElementwiseOpsMatchTheCpu) {
  KVS_REQUIRE_CUDA();
  const int64_t rows = 7, n = 640;
  const std::vector<float> x = randn(rows * n, 5, 3.0f), y = randn(rows * n, 6), w = randn(n, 7);
  const auto dx = to_device(x), dy = to_device(y), dw = to_device(w);
  cuda::DeviceBuffer out(x.size() * 4);
  std::vector<float> want(x.size());

  ops::rms_norm(x.data(), w.data(), want.data(), rows, n, 1e-6f);
  cuda::rms_norm(dx.as<float>(), dw.as<float>(), out.as<float>(), rows, n, 1e-6f, nullptr);
  EXPECT_LT(rel_err(to_host<float>(out, x.size()), want), 1e-6) << "rms_norm";

  {
    // add_rms_norm = add_inplace then rms_norm, bit for bit, with y aliasing h.
    cuda::DeviceBuffer dres = to_device(x), dh = to_device(y), dres2 = to_device(x);
    cuda::DeviceBuffer dnorm(x.size() * 4);
    cuda::add_inplace(dres2.as<float>(), dy.as<float>(), rows * n, nullptr);
    cuda::rms_norm(dres2.as<float>(), dw.as<float>(), dnorm.as<float>(), rows, n, 1e-6f, nullptr);
    cuda::add_rms_norm(dres.as<float>(), dh.as<float>(), dw.as<float>(), dh.as<float>(), rows, n,
                       1e-6f, nullptr);
    EXPECT_EQ(to_host<float>(dh, x.size()), to_host<float>(dnorm, x.size())) << "add_rms_norm";
    EXPECT_EQ(to_host<float>(dres, x.size()), to_host<float>(dres2, x.size())) << "residual";
  }

  {
    // rms_norm_qk = rms_norm of each, bit for bit (rows of 64: q 7 * 5 rows, k 7 * 2 rows).
    const int64_t hd = 64, rq = rows * 5, rk = rows * 2;
    const std::vector<float> q0 = randn(rq * hd, 14), k0 = randn(rk * hd, 15), wk = randn(hd, 16);
    const auto dq = to_device(q0), dk = to_device(k0), dq2 = to_device(q0), dk2 = to_device(k0);
    const auto dwk = to_device(wk);
    cuda::rms_norm(dq.as<float>(), dw.as<float>(), dq.as<float>(), rq, hd, 1e-6f, nullptr);
    cuda::rms_norm(dk.as<float>(), dwk.as<float>(), dk.as<float>(), rk, hd, 1e-6f, nullptr);
    cuda::rms_norm_qk(dq2.as<float>(), dw.as<float>(), rq, dk2.as<float>(), dwk.as<float>(), rk, hd,
                      1e-6f, nullptr);
    EXPECT_EQ(to_host<float>(dq2, q0.size()), to_host<float>(dq, q0.size())) << "rms_norm_qk q";
    EXPECT_EQ(to_host<float>(dk2, k0.size()), to_host<float>(dk, k0.size())) << "rms_norm_qk k";
  }

  ops::silu_mul(x.data(), y.data(), want.data(), rows * n);
  cuda::silu_mul(dx.as<float>(), dy.as<float>(), out.as<float>(), rows * n, nullptr);
  EXPECT_LT(rel_err(to_host<float>(out, x.size()), want), 1e-6) << "silu_mul";

  ops::gelu_tanh_mul(x.data(), y.data(), want.data(), rows * n);
  cuda::gelu_tanh_mul(dx.as<float>(), dy.as<float>(), out.as<float>(), rows * n, nullptr);
  EXPECT_LT(rel_err(to_host<float>(out, x.size()), want), 1e-6) << "gelu_tanh_mul";

  std::vector<float> sum = x;
  ops::add_inplace(sum.data(), y.data(), rows * n);
  cuda::DeviceBuffer dsum = to_device(x);
  cuda::add_inplace(dsum.as<float>(), dy.as<float>(), rows * n, nullptr);
  EXPECT_EQ(to_host<float>(dsum, x.size()), sum) << "add";

  std::vector<float> scaled = x;
  ops::scale_inplace(scaled.data(), 0.37f, rows * n);
  cuda::DeviceBuffer dscaled = to_device(x);
  cuda::scale_inplace(dscaled.as<float>(), 0.37f, rows * n, nullptr);
  EXPECT_EQ(to_host<float>(dscaled, x.size()), scaled) << "scale";

  std::vector<float> capped = x;
  for (float& v : capped) v = 2.5f * std::tanh(v / 2.5f);
  cuda::DeviceBuffer dcap = to_device(x);
  cuda::softcap_inplace(dcap.as<float>(), 2.5f, rows * n, nullptr);
  EXPECT_LT(rel_err(to_host<float>(dcap, x.size()), capped), 1e-6) << "softcap";
}

TEST(CudaOps, RopeMatchesTheCpuInBothLayouts) {
  KVS_REQUIRE_CUDA();
  const int64_t T = 5;
  const int n_heads = 3, hd = 64;
  const std::vector<int32_t> pos = {0, 1, 17, 4095, 30000};
  const std::vector<float> factors = [] {
    std::vector<float> f(32);
    for (int i = 0; i < 32; ++i) f[i] = 1.0f + 0.25f * static_cast<float>(i % 5);
    return f;
  }();
  const auto dpos = to_device(pos);
  for (bool neox : {false, true}) {
    for (const float* ff : {static_cast<const float*>(nullptr), factors.data()}) {
      SCOPED_TRACE(std::string(neox ? "neox" : "normal") + (ff ? " with factors" : ""));
      ops::RopeParams p;
      p.n_rot = hd;
      p.base = 10000.0f;
      p.freq_scale = 0.5f;
      p.neox = neox;
      p.freq_factors = ff;
      std::vector<float> x = randn(T * n_heads * hd, 8);
      const auto dx = to_device(x);
      ops::rope(x.data(), T, n_heads, hd, pos.data(), p);
      cuda::rope(dx.as<float>(), T, n_heads, hd, dpos.as<int32_t>(), cuda::rope_table(p), nullptr);
      // Device sin/cos of angles up to ~3e4 radians differ from libm by a few ulps of the angle.
      EXPECT_LT(rel_err(to_host<float>(dx, x.size()), x), 1e-4);
      // rope_qk: q (3 heads) and k (1 head) in one launch, bit for bit the two rope calls.
      const std::vector<float> q0 = randn(T * n_heads * hd, 12), k0 = randn(T * hd, 13);
      const auto dq = to_device(q0), dk = to_device(k0), dq2 = to_device(q0), dk2 = to_device(k0);
      const cuda::RopeTable tab = cuda::rope_table(p);
      cuda::rope(dq.as<float>(), T, n_heads, hd, dpos.as<int32_t>(), tab, nullptr);
      cuda::rope(dk.as<float>(), T, 1, hd, dpos.as<int32_t>(), tab, nullptr);
      cuda::rope_qk(dq2.as<float>(), n_heads, dk2.as<float>(), 1, T, hd, dpos.as<int32_t>(), tab,
                    nullptr);
      EXPECT_EQ(to_host<float>(dq2, q0.size()), to_host<float>(dq, q0.size())) << "rope_qk q";
      EXPECT_EQ(to_host<float>(dk2, k0.size()), to_host<float>(dk, k0.size())) << "rope_qk k";
    }
  }
}

// The full-cache attention against the reference backend: GQA, causal, sliding window with
// a wrapped ring, softcap, and head dims below and above a warp.
TEST(CudaOps, AttentionMatchesTheReferenceBackend) {
  KVS_REQUIRE_CUDA();
  struct Case {
    int n_head, n_kv, hd, window;
    float softcap;
    int64_t n_past, T, cap;
  };
  const AttentionBackend& ref = find_attention_backend("reference");
  ThreadPool pool(1);
  for (const Case& c :
       {Case{4, 2, 64, 0, 0.0f, 0, 7, 64}, Case{8, 8, 8, 0, 0.0f, 30, 1, 64},
        Case{4, 1, 256, 16, 0.0f, 40, 6, 16 - 1 + 8}, Case{6, 3, 128, 0, 30.0f, 100, 3, 128},
        // Several split-K chunks (kAttentionSplitKeys = 256), one partly filled; a window
        // longer than a chunk over a wrapped ring.
        Case{9, 3, 64, 0, 0.0f, 700, 1, 1024}, Case{4, 1, 256, 300, 50.0f, 900, 2, 300 - 1 + 8},
        // A head dim that is no multiple of 4 (the chunked kernel's scalar path).
        Case{2, 1, 6, 0, 0.0f, 40, 2, 64}}) {
    SCOPED_TRACE("heads " + std::to_string(c.n_head) + "/" + std::to_string(c.n_kv) + " hd " +
                 std::to_string(c.hd) + " window " + std::to_string(c.window));
    const int64_t n = c.n_past + c.T;
    // Keys and values of positions 0..n-1 per KV head, as the CPU sees them: [n_kv][n][hd].
    const std::vector<float> k = randn(c.n_kv * n * c.hd, 9), v = randn(c.n_kv * n * c.hd, 10);
    const std::vector<float> q = randn(c.T * c.n_head * c.hd, 11);
    std::vector<int32_t> kpos(n), qpos(c.T);
    for (int64_t j = 0; j < n; ++j) kpos[j] = static_cast<int32_t>(j);
    for (int64_t t = 0; t < c.T; ++t) qpos[t] = static_cast<int32_t>(c.n_past + t);
    KVView view;
    for (int h = 0; h < c.n_kv; ++h) {
      KVHeadView hv;
      hv.k = k.data() + h * n * c.hd;
      hv.v = v.data() + h * n * c.hd;
      hv.pos = kpos.data();
      hv.len = static_cast<int32_t>(n);
      view.heads.push_back(hv);
    }
    const AttentionShape shape{c.n_head, c.n_kv,   c.hd, c.hd, 1.0f / std::sqrt(float(c.hd)),
                               c.window, c.softcap};
    std::vector<float> want(c.T * c.n_head * c.hd);
    ref.attend(shape, q.data(), qpos.data(), c.T, view, want.data(), pool);

    // The device cache: position j in slot j % cap, filled in order so a ring wraps.
    cuda::DeviceBuffer ck(c.n_kv * c.cap * c.hd * 4), cv(c.n_kv * c.cap * c.hd * 4);
    for (int64_t j = 0; j < n; ++j) {
      std::vector<float> kj(c.n_kv * c.hd), vj(c.n_kv * c.hd);  // [1][n_kv][hd]
      for (int h = 0; h < c.n_kv; ++h)
        for (int d = 0; d < c.hd; ++d) {
          kj[h * c.hd + d] = k[(h * n + j) * c.hd + d];
          vj[h * c.hd + d] = v[(h * n + j) * c.hd + d];
        }
      const auto dk = to_device(kj), dv = to_device(vj);
      const auto dpos = to_device(std::vector<int32_t>{static_cast<int32_t>(j)});
      cuda::store_kv(dk.as<float>(), dv.as<float>(), 1, c.n_kv, c.hd, c.hd, dpos.as<int32_t>(),
                     c.cap, ck.as<float>(), cv.as<float>(), nullptr);
      KVS_CUDA(cudaDeviceSynchronize());
    }
    const auto dq = to_device(q), dqpos = to_device(qpos);
    cuda::DeviceBuffer out(want.size() * 4);
    cuda::AttentionArgs a;
    a.q = dq.as<float>();
    a.q_pos = dqpos.as<int32_t>();
    a.k = ck.as<float>();
    a.v = cv.as<float>();
    a.out = out.as<float>();
    a.T = c.T;
    a.n_keys = n;
    a.cap = c.cap;
    a.n_head = c.n_head;
    a.n_head_kv = c.n_kv;
    a.head_dim_k = a.head_dim_v = c.hd;
    a.scale = shape.scale;
    a.window = c.window;
    a.softcap = c.softcap;
    cuda::attention_reference(a, nullptr);
    EXPECT_LT(rel_err(to_host<float>(out, want.size()), want), 1e-5) << "reference kernel";
    {
      cuda::DeviceBuffer out_c(want.size() * 4);
      a.out = out_c.as<float>();
      cuda::attention(a, nullptr);
      EXPECT_LT(rel_err(to_host<float>(out_c, want.size()), want), 1e-5) << "chunked kernel";
      a.out = out.as<float>();
    }
    // Split-K over the most keys any query can see (the window, or a context of cap).
    for (int64_t max_keys : {c.window > 0 ? int64_t{c.window} : c.cap, int64_t{4096}}) {
      cuda::DeviceBuffer scratch(cuda::attention_split_scratch_floats(a, max_keys) * 4);
      cuda::DeviceBuffer out2(want.size() * 4);
      a.out = out2.as<float>();
      cuda::attention_split(a, max_keys, scratch.as<float>(), nullptr);
      EXPECT_LT(rel_err(to_host<float>(out2, want.size()), want), 1e-5)
          << "split-K, max_keys " << max_keys;
      a.out = out.as<float>();
    }
    // Every storage type: the cache rows converted as the CPU cache converts them, against the
    // reference backend reading a KVView of that type (the same dequantized values).
    for (DType st : {DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0}) {
      if (!cuda::kv_storage_supported(st, c.hd)) continue;
      SCOPED_TRACE(std::string(dtype_name(st)));
      const size_t rb = row_bytes(st, c.hd);
      std::vector<uint8_t> kq(c.n_kv * n * rb), vq(c.n_kv * n * rb);  // [n_kv][n][row]
      for (int64_t r = 0; r < c.n_kv * n; ++r) {
        quantize_row(st, k.data() + r * c.hd, kq.data() + r * rb, c.hd);
        quantize_row(st, v.data() + r * c.hd, vq.data() + r * rb, c.hd);
      }
      KVView qview;
      qview.k_dtype = qview.v_dtype = st;
      for (int h = 0; h < c.n_kv; ++h) {
        KVHeadView hv;
        hv.k = kq.data() + h * n * rb;
        hv.v = vq.data() + h * n * rb;
        hv.pos = kpos.data();
        hv.len = static_cast<int32_t>(n);
        qview.heads.push_back(hv);
      }
      std::vector<float> want_q(want.size());
      ref.attend(shape, q.data(), qpos.data(), c.T, qview, want_q.data(), pool);
      cuda::DeviceBuffer sk(c.n_kv * c.cap * rb), sv(c.n_kv * c.cap * rb);
      // All positions in one store (slots pos % cap; a ring keeps the newest cap of them).
      const int64_t first = std::max<int64_t>(0, n - c.cap);
      std::vector<float> kb, vb;  // [n - first][n_kv][hd]
      std::vector<int32_t> pb;
      for (int64_t j = first; j < n; ++j) {
        pb.push_back(static_cast<int32_t>(j));
        for (int h = 0; h < c.n_kv; ++h)
          for (int d = 0; d < c.hd; ++d) {
            kb.push_back(k[(h * n + j) * c.hd + d]);
            vb.push_back(v[(h * n + j) * c.hd + d]);
          }
      }
      const auto dkb = to_device(kb), dvb = to_device(vb), dpb = to_device(pb);
      cuda::store_kv(dkb.as<float>(), dvb.as<float>(), n - first, c.n_kv, c.hd, c.hd,
                     dpb.as<int32_t>(), c.cap, sk.get(), sv.get(), nullptr, st, st);
      cuda::AttentionArgs b = a;
      b.k = sk.get();
      b.v = sv.get();
      b.k_dtype = b.v_dtype = st;
      cuda::DeviceBuffer out3(want.size() * 4);
      b.out = out3.as<float>();
      cuda::attention_reference(b, nullptr);
      EXPECT_LT(rel_err(to_host<float>(out3, want.size()), want_q), 1e-5) << "reference kernel";
      cuda::attention(b, nullptr);
      EXPECT_LT(rel_err(to_host<float>(out3, want.size()), want_q), 1e-5) << "chunked kernel";
      cuda::DeviceBuffer scratch(cuda::attention_split_scratch_floats(b, 4096) * 4);
      cuda::attention_split(b, 4096, scratch.as<float>(), nullptr);
      EXPECT_LT(rel_err(to_host<float>(out3, want.size()), want_q), 1e-5) << "split-K";
    }
  }
}

}  // namespace
}  // namespace kvs
