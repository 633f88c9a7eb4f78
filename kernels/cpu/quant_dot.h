#pragma once
// Integer dot products between a weight row kept in its ggml block format and an activation
// row quantized on the fly to the weight type's "vec_dot_type", with the numerics of ggml's
// CPU backend (so greedy outputs track llama.cpp):
//   Q4_0, Q5_0, Q8_0 -> Q8_0      Q4_1, Q5_1 -> Q8_1      Q2_K .. Q6_K -> Q8_K
//   F32 -> F32                    F16 -> F16              BF16 -> BF16
// The float rounding follows what llama.cpp's x86 build (AVX2 and up, GCC, the version the
// reference fixtures come from) actually executes, because quantizing activations makes the
// network discontinuous: a one-ulp difference in one matmul flips a later activation quant and
// grows from there. namespace ref holds scalar twins that replay the x86 kernels' lane layout
// and FMA order, so ref and optimized results are bit-identical for Q4_0, Q4_1, Q5_0, Q5_1,
// Q8_0, Q4_K and Q6_K (and for every K-quant under the tiled/repack DotKernels); F32/F16/BF16,
// Q2_K, Q3_K and Q5_K vec_dot still differ between the twins in summation order only.
//
// llama.cpp does not evaluate every output of a matmul with vec_dot: whole batches of K-quant
// weights go through other kernels that round differently. dot_kernel() names the kernel for
// one output and vec_dot(..., DotKernel) reproduces it; ops::matmul (and its twin) use it for
// every output, so a prefill rounds as llama.cpp does for the same batch size.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels/core/dtype.h"
#include "kernels/core/quant_blocks.h"

namespace kvs {

// Activation-side block for Q4_1/Q5_1 weights; quant_blocks.h has no Q8_1 because no weight
// file stores it.
struct BlockQ8_1 {
  uint16_t d;  // fp16 scale
  uint16_t s;  // fp16 of d * sum(qs): lets the weight's min term skip the per-element work
  int8_t qs[kQK];
};
static_assert(sizeof(BlockQ8_1) == 36 && offsetof(BlockQ8_1, qs) == 4);

// True for the weight types vec_dot handles (the dtype_is_weight_type set).
bool quant_dot_supported(DType weight_type);

// The activation format a weight type is dotted with. KVS_CHECKs on unsupported types.
DType vec_dot_type(DType weight_type);

// Bytes of one quantized activation row of n elements (n a multiple of the block size).
size_t activation_row_bytes(DType weight_type, int64_t n);

// Quantizes one activation row x[n] into dst (activation_row_bytes(weight_type, n) bytes)
// exactly as ggml's x86 quantizers do: Q8_0/Q8_1 as quantize_row_q8_0/q8_1 (d = amax/127,
// quants = round-half-even(x * (127/amax)), Q8_1's s = f16(f32 d * sum of quants)); Q8_K as
// quantize_row_q8_K_ref (repack's 4-row quantize_mat_q8_K gives numerically identical blocks);
// f16 and bf16 round to nearest even. One activation row serves every DotKernel.
void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n);

// Dot product of one weight row (n elements in weight_type) with one activation row produced
// by quantize_activation(weight_type, ..., n). Rows are read as block structs, so they must be
// aligned like them: 2 bytes (GGUF's 32-byte tensor alignment gives that), 4 for Q8_K rows.
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row);

// The ggml kernel that computes one output of a matmul, as llama.cpp's CPU backend picks it.
enum class DotKernel : uint8_t {
  kVecDot,      // ggml_vec_dot_<type>_<vec_dot_type>; llamafile's sgemm (Q8_0, Q5_0 and Q4_0
                // batches) rounds identically
  kTiled,       // ggml-cpu/tiled K-quant matmul (batches of >= 8 tokens): per super-block
                // acc = fma(fma(-dmin, imin, isum * d_w), d_a, acc)
  kRepackGemv,  // repack q4_K_8x8 GEMV: acc += isum * (d_w*d_a), accm += imin * (dmin_w*d_a)
                // per super-block (both fma), result acc - accm
  kRepackGemm,  // repack q4_K_8x8 GEMM: as GEMV but one fma per 64 elements
};

// The kernel for the output of token t (0 <= t < tokens) of a matmul of `tokens` activation
// rows against a weight of `rows` rows, mirroring llama.cpp on x86 with AVX2/AVX-512:
//   Q4_K with rows % 8 == 0 is repacked (q4_K_8x8): tokens [0, tokens - tokens % 4) go through
//     the GEMM, the trailing tokens % 4 through the GEMV;
//   other K-quants (and Q4_K with rows % 8 != 0) use the tiled kernel when tokens >= 8;
//   everything else, and smaller batches, use vec_dot.
// Checked op by op against llama-cpp-python 0.3.36 (AVX2 build) on Gemma 3 Q4_K_M: its Q4_K
// repacked, its Q6_K through the tiled kernel (that build's q6_K_8x8 repack is not taken on
// AVX2). Not reproduced: Q4_0 and IQ4_NL repack (q4_0_8x8; weights with rows % 8 == 0) and
// Q2_K repack on AVX-512 machines (q2_K_8x8) round differently from every kernel here.
DotKernel dot_kernel(DType weight_type, int64_t rows, int64_t tokens, int64_t t);

// vec_dot as `kernel` computes it. For types the kernel does not cover it is plain vec_dot.
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row,
              DotKernel kernel);

// Four tokens' activation rows for vec_dot_x4: row j at rows + j * stride. For Q8_0/Q8_1
// rows, d and s hold their f16 block scales (and Q8_1 sums) as f32, block-major: block i of
// row j at d[i * ld + j] (activation_scales() fills them for a whole batch); converting them
// once per batch instead of once per weight row is a large share of the prefill's work.
struct ActBatch {
  const uint8_t* rows = nullptr;
  size_t stride = 0;
  const float* d = nullptr;  // [blocks][ld] f32 scales, or null for Q8_K and float rows
  const float* s = nullptr;  // [blocks][ld] f32 Q8_1 sums, or null
  int64_t ld = 0;
  // Optional, legacy types (and Q4_K, Q6_K where KVS_QUANT_PAIRS_AVX512 is defined): the
  // tokens' quants block-major by 32-element block, block i of token j at
  // q + (i * ld + j) * 32 (no scales), so one pointer walks eight tokens' blocks; plus 128 as
  // bytes for the signed weight types, whose kernels then take one dpbusd per block and token
  // instead of two sign flips and a dpbusd (see interleaved_quants_used). Where
  // KVS_QUANT_PAIRS_AVX512 is defined, tokens 2m and 2m+1 share their 64 bytes with their
  // 4-byte groups alternating (token 2m's group g at byte 8g, token 2m+1's at 8g + 4), so one
  // 512-bit dpbusd serves both: q must then start at an even token (and should be 64-byte
  // aligned, one cache line per block and pair).
  const uint8_t* q = nullptr;
};

// The f32 scales of `tokens` activation rows (stride bytes apart) quantized for weight_type:
// d and s resized to [n / 32][tokens] for Q8_0/Q8_1 formats (s only for Q8_1), left empty
// otherwise.
void activation_scales(DType weight_type, const uint8_t* act, int64_t tokens, size_t stride,
                       int64_t n, std::vector<float>& d, std::vector<float>& s);

// The f32 scale (and Q8_1 sum) of every block of token j's activation row, into d and s at
// [i * tokens + j] (the layout above); d must be non-null for Q8_0/Q8_1, s for Q8_1.
void activation_row_scales(DType weight_type, const uint8_t* act_row, int64_t n, int64_t j,
                           int64_t tokens, float* d, float* s);

// Whether the batch kernels read ActBatch::q for this weight type: Q4_1/Q5_1 always (their
// quants are unsigned), Q4_0/Q5_0/Q8_0 where the CPU's dpbusd multiplies any u8 by any s8
// exactly (AVX-VNNI or AVX-512 VNNI), as the +128 bias needs, Q4_K/Q6_K with
// KVS_QUANT_PAIRS_AVX512.
bool interleaved_quants_used(DType weight_type);
// Token j's activation quants (n elements) into q's layout above (tokens = ld); with
// KVS_QUANT_PAIRS_AVX512, j's pair partner (j ^ 1) must also be below tokens.
void interleave_activation_row(DType weight_type, const uint8_t* act_row, int64_t n, int64_t j,
                               int64_t tokens, uint8_t* q);

// out[j] = vec_dot(weight_type, n, w_row, a.rows + j * a.stride, kernel) for j < 4, bit for
// bit: one weight row against four tokens' activation rows, each weight block unpacked once
// for all four (the prefill matmul's inner step).
void vec_dot_x4(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                DotKernel kernel, float* out /*[4]*/);
// The same for eight tokens (out[8]); for the legacy block types the weight's unpacking is
// then shared by eight dot products.
void vec_dot_x8(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                DotKernel kernel, float* out /*[8]*/);
// The same for sixteen tokens (a.ld >= 16 where scales or quants are given): one pass over the
// weight row where the CPU has the paired kernels (KVS_QUANT_PAIRS_AVX512), else two x8 calls.
void vec_dot_x16(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                 DotKernel kernel, float* out /*[16]*/);

// out[r] = vec_dot(weight_type, n, w_rows + r * w_stride, act_row, kernel) for r < rows, bit
// for bit: the decode matmul's inner step, one call per thread's row range (the dispatch and
// checks once, not per row).
void vec_dot_rows(DType weight_type, int64_t n, const void* w_rows, size_t w_stride, int64_t rows,
                  const void* act_row, DotKernel kernel, float* out /*[rows]*/);

namespace ref {
void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n);
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row);
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row,
              DotKernel kernel);
}  // namespace ref

// Shared by the twins so that the tiled / repack float arithmetic is written once.
namespace detail {
inline bool is_k_quant(DType t) {
  return t == DType::Q2_K || t == DType::Q3_K || t == DType::Q4_K || t == DType::Q5_K ||
         t == DType::Q6_K;
}
// Exact integer parts of one K-quant super-block dotted with its Q8_K block, per 64 elements:
// isum64 = sum of scale * (quant . activation) with the quant offsets applied, imin64 = sum of
// min * activation group sum (zero for Q3_K/Q6_K); d, dmin = the weight's f16 scales as f32.
struct KBlockInts {
  float d = 0.0f, dmin = 0.0f;
  int isum64[4] = {}, imin64[4] = {};
  int isum() const { return isum64[0] + isum64[1] + isum64[2] + isum64[3]; }
  int imin() const { return imin64[0] + imin64[1] + imin64[2] + imin64[3]; }
};
void k_block_ints_scalar(DType weight_type, const void* w_block, const BlockQ8_K& a,
                         KBlockInts& out);
// Float state of one output under kTiled / kRepackGemv / kRepackGemm, super-blocks in order.
struct KAccum {
  float acc = 0.0f, accm = 0.0f;
  void add(DotKernel k, const KBlockInts& b, float d_a) {
    switch (k) {
      case DotKernel::kTiled: {  // tiled-kernel.cpp epilogue (vmulps, vfnmadd, vfmadd)
        float r = static_cast<float>(b.isum()) * b.d;
        r = std::fma(-b.dmin, static_cast<float>(b.imin()), r);
        acc = std::fma(r, d_a, acc);
        return;
      }
      case DotKernel::kRepackGemv: {
        const float dd = b.d * d_a, dm = b.dmin * d_a;
        acc = std::fma(static_cast<float>(b.isum()), dd, acc);
        accm = std::fma(static_cast<float>(b.imin()), dm, accm);
        return;
      }
      case DotKernel::kRepackGemm: {
        const float dd = b.d * d_a, dm = b.dmin * d_a;
        for (int c = 0; c < 4; ++c) {
          acc = std::fma(static_cast<float>(b.isum64[c]), dd, acc);
          accm = std::fma(static_cast<float>(b.imin64[c]), dm, accm);
        }
        return;
      }
      case DotKernel::kVecDot:
        return;
    }
  }
  float result(DotKernel k) const { return k == DotKernel::kTiled ? acc : acc - accm; }
};
}  // namespace detail

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define KVS_QUANT_DOT_AVX2 1
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__)
// The legacy, Q4_K and Q6_K batch kernels take two tokens per 512-bit register, and
// ActBatch::q pairs the tokens (see ActBatch).
#define KVS_QUANT_PAIRS_AVX512 1
#endif
// The AVX2 kernels (quant_dot_avx2.cpp), exposed so tests can name them; vec_dot dispatches.
namespace avx2 {
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row);
float vec_dot(DType weight_type, int64_t n, const void* w_row, const void* act_row,
              DotKernel kernel);
void vec_dot_x4(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                DotKernel kernel, float* out);
void vec_dot_x8(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                DotKernel kernel, float* out);
void vec_dot_x16(DType weight_type, int64_t n, const void* w_row, const ActBatch& a,
                 DotKernel kernel, float* out);
void vec_dot_rows(DType weight_type, int64_t n, const void* w_rows, size_t w_stride, int64_t rows,
                  const void* act_row, DotKernel kernel, float* out);
void quantize_activation(DType weight_type, const float* x, void* dst, int64_t n);
#if defined(KVS_QUANT_PAIRS_AVX512)
// vec_dot_rows under kVecDot for the legacy types, two rows per 512-bit register
// (quant_dot_rows_avx512.cpp); false (nothing written) for other types.
bool vec_dot_rows_paired(DType weight_type, int64_t nb, const uint8_t* w, size_t stride,
                         int64_t rows, const void* act_row, float* out);
#endif
}  // namespace avx2
#endif

}  // namespace kvs
