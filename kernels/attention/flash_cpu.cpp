// Flash attention on the CPU, the fast twin of "reference": keys are visited in tiles with an
// online softmax (running max and sum per query row), so a thread needs O(tile) scratch instead
// of one score row per query. Every tile is scored against all query rows of a block (the query
// heads of a GQA group, and in prefill several tokens), so it is read and dequantized once per
// block rather than once per query head.
//
// Each head's slots are cut into fixed chunks of kChunk slots. A query row's softmax state is
// computed per chunk and the chunk states are folded left to right, always with the same
// arithmetic. When a call has too few (head, query block) items to keep the pool busy (decode),
// each chunk is its own work item and the last one to finish folds the stored chunk states
// (flash-decoding); otherwise one item folds as it goes. Either way a row's result depends only
// on its query and the cache, never on the thread count, the batch it came in or the split: a
// prompt evaluated in chunks of any size gives the same bits as in one piece.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/attention/backend.h"
#include "kernels/core/error.h"
#include "kernels/core/half.h"
#include "kernels/core/quant.h"
#include "kernels/core/quant_blocks.h"
#include "kernels/cpu/ops.h"

#if defined(__AVX2__) && defined(__FMA__)
#define KVS_FLASH_AVX2 1
#else
#define KVS_FLASH_AVX2 0
#endif

namespace kvs {
namespace {

constexpr int kTile = 64;       // keys per tile: K and V tiles of 64 x 64 f32 stay in L1
constexpr int kBlockRows = 32;  // target query rows (tokens x group heads) per block
// Below this many (head, query block) items the keys of each head are split into chunks, so
// that decode on a model with few KV heads still keeps every thread busy.
constexpr int kSplitBelowItems = 16;
constexpr int kChunk = 256;      // slots per chunk (a multiple of kTile)
constexpr int kSinkChunk = 512;  // keys per sink-pass item (a multiple of kTile)
// First-pass scores are kept for the sink pass when they fit in this many floats (decode, short
// prefill); above it the sink pass recomputes them, as a full score matrix would not fit cache.
constexpr int64_t kSavedScoreBudget = int64_t{1} << 20;

static_assert(kChunk % kTile == 0 && kSinkChunk % kTile == 0,
              "chunks must be made of whole tiles so both passes see the same tiles");

bool visible(int32_t q_pos, int32_t k_pos, int window) {
  return k_pos <= q_pos && (window <= 0 || q_pos - k_pos < window);
}

struct PosRange {
  int32_t lo, hi;  // smallest and largest key position in a tile
};

PosRange pos_range(const int32_t* pos, int n) {
  int32_t lo = pos[0], hi = pos[0];
  for (int c = 1; c < n; ++c) {
    lo = std::min(lo, pos[c]);
    hi = std::max(hi, pos[c]);
  }
  return {lo, hi};
}

// Both passes must make the same decisions from these, since the sink pass reads the scores the
// first pass saved only for tiles a row did not skip.
bool row_misses_tile(int32_t q_pos, PosRange r, int window) {
  return r.lo > q_pos || (window > 0 && int64_t{q_pos} - r.hi >= window);
}
bool row_sees_whole_tile(int32_t q_pos, PosRange r, int window) {
  return r.hi <= q_pos && (window <= 0 || int64_t{q_pos} - r.lo < window);
}

float* grab(std::vector<float>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// ---- kernels ----

#if KVS_FLASH_AVX2
// Lane i of the result is the horizontal sum of a_i.
inline __m256 transpose_sum8(__m256 a0, __m256 a1, __m256 a2, __m256 a3, __m256 a4, __m256 a5,
                             __m256 a6, __m256 a7) {
  const __m256 u0 = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  const __m256 u1 = _mm256_hadd_ps(_mm256_hadd_ps(a4, a5), _mm256_hadd_ps(a6, a7));
  return _mm256_add_ps(_mm256_permute2f128_ps(u0, u1, 0x20), _mm256_permute2f128_ps(u0, u1, 0x31));
}

// Cephes expf (about 1 ulp on [-87, 88]); exactly 0 below -87, so masked (-inf) scores get no
// mass, and NaN stays NaN.
inline __m256 exp_ps(__m256 x) {
  const __m256 lo = _mm256_set1_ps(-87.0f);
  const __m256 underflow = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
  x = _mm256_min_ps(_mm256_set1_ps(88.3762626647949f), x);
  x = _mm256_max_ps(lo, x);
  const __m256 fx = _mm256_floor_ps(
      _mm256_fmadd_ps(x, _mm256_set1_ps(1.44269504088896341f), _mm256_set1_ps(0.5f)));
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693359375f), x);
  x = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.12194440e-4f), x);
  __m256 y = _mm256_set1_ps(1.9875691500e-4f);
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.3981999507e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(8.3334519073e-3f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(4.1665795894e-2f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(1.6666665459e-1f));
  y = _mm256_fmadd_ps(y, x, _mm256_set1_ps(5.0000001201e-1f));
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(x, x), _mm256_add_ps(x, _mm256_set1_ps(1.0f)));
  const __m256i e =
      _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvttps_epi32(fx), _mm256_set1_epi32(127)), 23);
  return _mm256_andnot_ps(underflow, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
}

// Cephes tanhf (about 2 ulp): an odd polynomial below 0.625, 1 - 2 / (exp(2|x|) + 1) above.
inline __m256 tanh_ps(__m256 x) {
  const __m256 sign_bit = _mm256_set1_ps(-0.0f), one = _mm256_set1_ps(1.0f);
  const __m256 ax = _mm256_andnot_ps(sign_bit, x);
  const __m256 e = exp_ps(_mm256_add_ps(ax, ax));
  const __m256 big =
      _mm256_or_ps(_mm256_sub_ps(one, _mm256_div_ps(_mm256_set1_ps(2.0f), _mm256_add_ps(e, one))),
                   _mm256_and_ps(sign_bit, x));
  const __m256 z = _mm256_mul_ps(x, x);
  __m256 y = _mm256_set1_ps(-5.70498872745e-3f);
  y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(2.06390887954e-2f));
  y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(-5.37397155531e-2f));
  y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(1.33314422036e-1f));
  y = _mm256_fmadd_ps(y, z, _mm256_set1_ps(-3.33332819422e-1f));
  const __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(y, z), x, x);
  return _mm256_blendv_ps(small, big, _mm256_cmp_ps(ax, _mm256_set1_ps(0.625f), _CMP_GT_OQ));
}

// acc[0, 8W) += sum_c p[c] * V[c][0, 8W); V rows have stride dv.
template <int W>
void pv_columns(const float* p, const float* V, int n, int dv, float* acc, bool sparse) {
  __m256 a[W];  // [W] eight output columns each, held in registers across the tile
  for (int w = 0; w < W; ++w) a[w] = _mm256_loadu_ps(acc + 8 * w);
  for (int c = 0; c < n; ++c) {
    if (sparse && p[c] == 0.0f) continue;  // a hidden slot's V is never read, as in reference
    const __m256 pc = _mm256_set1_ps(p[c]);
    const float* v = V + static_cast<int64_t>(c) * dv;
    for (int w = 0; w < W; ++w) a[w] = _mm256_fmadd_ps(pc, _mm256_loadu_ps(v + 8 * w), a[w]);
  }
  for (int w = 0; w < W; ++w) _mm256_storeu_ps(acc + 8 * w, a[w]);
}
#endif

#if KVS_FLASH_AVX2
// scale * (q . k_i) for eight keys k_0..k_7 (rows of stride dk) into s[0, 8): eight accumulators
// and one transposing reduction instead of a horizontal sum per key.
inline void dots8(const float* q, const float* k, int dk, __m256 vscale, float* s) {
  const int dk8 = dk & ~7;
  __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0, a4 = a0, a5 = a0, a6 = a0, a7 = a0;
  for (int d = 0; d < dk8; d += 8) {
    const __m256 qv = _mm256_loadu_ps(q + d);
    a0 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + d), a0);
    a1 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + dk + d), a1);
    a2 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 2 * dk + d), a2);
    a3 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 3 * dk + d), a3);
    a4 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 4 * dk + d), a4);
    a5 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 5 * dk + d), a5);
    a6 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 6 * dk + d), a6);
    a7 = _mm256_fmadd_ps(qv, _mm256_loadu_ps(k + 7 * dk + d), a7);
  }
  __m256 r = transpose_sum8(a0, a1, a2, a3, a4, a5, a6, a7);
  if (dk8 < dk) {
    alignas(32) float tail[8];  // [8] the dimensions past the last multiple of 8, per key
    for (int i = 0; i < 8; ++i) {
      float t = 0.0f;
      for (int d = dk8; d < dk; ++d) t += q[d] * k[i * dk + d];
      tail[i] = t;
    }
    r = _mm256_add_ps(r, _mm256_load_ps(tail));
  }
  _mm256_storeu_ps(s, _mm256_mul_ps(r, vscale));
}
#endif

// s[c] = scale * (q . K[c]) for c < n; K rows have stride dk. The last n % 8 keys are padded
// to a group of eight, so every key's score is computed the same way wherever it sits in its
// tile: a tile cut short (the newest keys of a prefill chunk) scores like the same keys in a
// full, partly masked tile, and chunked prefill gives the same bits as one batch.
void scaled_dots(const float* q, const float* K, int n, int dk, float scale, float* s) {
  int c = 0;
#if KVS_FLASH_AVX2
  const __m256 vscale = _mm256_set1_ps(scale);
  for (; c + 8 <= n; c += 8) dots8(q, K + static_cast<int64_t>(c) * dk, dk, vscale, s + c);
  if (c < n) {
    thread_local std::vector<float> pad;  // [8][dk] the tail keys, zero-padded
    pad.assign(static_cast<size_t>(8) * dk, 0.0f);
    std::copy(K + static_cast<int64_t>(c) * dk, K + static_cast<int64_t>(n) * dk, pad.begin());
    alignas(32) float out[8];  // [8] scores of the padded group
    dots8(q, pad.data(), dk, vscale, out);
    std::copy(out, out + (n - c), s + c);
  }
  return;
#endif
  for (; c < n; ++c) s[c] = ops::dot_f32(q, K + static_cast<int64_t>(c) * dk, dk) * scale;
}

// s[c] = cap * tanh(s[c] / cap); std::tanh per score would cost more than the rest of a tile.
// The tail is padded to eight lanes like scaled_dots, for the same reason.
void soft_cap(float* s, int n, float cap) {
  int c = 0;
#if KVS_FLASH_AVX2
  const __m256 vcap = _mm256_set1_ps(cap);
  auto cap8 = [&](const float* x) {
    return _mm256_mul_ps(vcap, tanh_ps(_mm256_div_ps(_mm256_loadu_ps(x), vcap)));
  };
  for (; c + 8 <= n; c += 8) _mm256_storeu_ps(s + c, cap8(s + c));
  if (c < n) {
    alignas(32) float lanes[8] = {};  // [8] the tail, zero-padded
    std::copy(s + c, s + n, lanes);
    _mm256_store_ps(lanes, cap8(lanes));
    std::copy(lanes, lanes + (n - c), s + c);
  }
  return;
#endif
  for (; c < n; ++c) s[c] = cap * std::tanh(s[c] / cap);
}

float max_of(const float* s, int n) {
  int c = 0;
  float m = -INFINITY;
#if KVS_FLASH_AVX2
  if (n >= 8) {
    __m256 vm = _mm256_set1_ps(-INFINITY);
    for (; c + 8 <= n; c += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(s + c));
    alignas(32) float lanes[8];  // [8] per-lane maxima
    _mm256_store_ps(lanes, vm);
    for (float x : lanes) m = std::max(m, x);
  }
#endif
  for (; c < n; ++c) m = std::max(m, s[c]);
  return m;
}

// p[c] = exp(s[c] - m) for c < n; returns the sum of p. The tail is padded with -inf (exp 0) to
// eight lanes, so the values and the summation order match a full tile whose extra keys are
// masked: chunking never changes the bits.
float exp_shifted(const float* s, int n, float m, float* p) {
  int c = 0;
  float sum = 0.0f;
#if KVS_FLASH_AVX2
  const __m256 vm = _mm256_set1_ps(m);
  __m256 vsum = _mm256_setzero_ps();
  for (; c + 8 <= n; c += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(s + c), vm));
    _mm256_storeu_ps(p + c, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  if (c < n) {
    alignas(32) float lanes[8];  // [8] the tail, padded with -inf
    std::fill(lanes, lanes + 8, -INFINITY);
    std::copy(s + c, s + n, lanes);
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_load_ps(lanes), vm));
    _mm256_store_ps(lanes, e);
    std::copy(lanes, lanes + (n - c), p + c);
    vsum = _mm256_add_ps(vsum, e);
  }
  alignas(32) float part[8];  // [8] per-lane partial sums
  _mm256_store_ps(part, vsum);
  for (float x : part) sum += x;
  return sum;
#endif
  for (; c < n; ++c) sum += (p[c] = std::exp(s[c] - m));
  return sum;
}

// acc[d] += sum_c p[c] * V[c][d]. `sparse` skips slots with p == 0 (hidden ones).
void accumulate_pv(const float* p, const float* V, int n, int dv, float* acc, bool sparse) {
  int d = 0;
#if KVS_FLASH_AVX2
  for (; d + 64 <= dv; d += 64) pv_columns<8>(p, V + d, n, dv, acc + d, sparse);
  for (; d + 32 <= dv; d += 32) pv_columns<4>(p, V + d, n, dv, acc + d, sparse);
  for (; d + 8 <= dv; d += 8) pv_columns<1>(p, V + d, n, dv, acc + d, sparse);
#endif
  if (d == dv) return;
  for (int c = 0; c < n; ++c) {
    if (p[c] == 0.0f) continue;
    const float* v = V + static_cast<int64_t>(c) * dv;
    for (int e = d; e < dv; ++e) acc[e] += p[c] * v[e];
  }
}

#if KVS_FLASH_AVX2
float block_scale(const uint8_t* block) {
  uint16_t d;
  std::memcpy(&d, block, sizeof d);  // the first field of both block types
  return fp16_to_fp32(d);
}

void dequant_q8_0_avx2(const uint8_t* src, int64_t n_blocks, float* y) {
  static_assert(sizeof(BlockQ8_0) == 2 + kQK && offsetof(BlockQ8_0, qs) == 2);
  for (int64_t b = 0; b < n_blocks; ++b, src += sizeof(BlockQ8_0), y += kQK) {
    const __m256 d = _mm256_set1_ps(block_scale(src));
    for (int k = 0; k < kQK / 8; ++k) {
      const __m128i q = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(src + 2 + 8 * k));
      _mm256_storeu_ps(y + 8 * k, _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(q)), d));
    }
  }
}

void dequant_q4_0_avx2(const uint8_t* src, int64_t n_blocks, float* y) {
  static_assert(sizeof(BlockQ4_0) == 2 + kQK / 2 && offsetof(BlockQ4_0, qs) == 2);
  const __m128i low4 = _mm_set1_epi8(0x0F), eight = _mm_set1_epi8(8);
  for (int64_t b = 0; b < n_blocks; ++b, src += sizeof(BlockQ4_0), y += kQK) {
    const __m256 d = _mm256_set1_ps(block_scale(src));
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2));
    // Elements 0..15 are the low nibbles, 16..31 the high ones, each stored as q - 8.
    const __m128i lo = _mm_sub_epi8(_mm_and_si128(q, low4), eight);
    const __m128i hi = _mm_sub_epi8(_mm_and_si128(_mm_srli_epi16(q, 4), low4), eight);
    // [4] eight elements each, in output order
    const __m128i parts[4] = {lo, _mm_srli_si128(lo, 8), hi, _mm_srli_si128(hi, 8)};
    for (int k = 0; k < 4; ++k)
      _mm256_storeu_ps(y + 8 * k,
                       _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(parts[k])), d));
  }
}
#endif

// Rows [j0, j0 + n) of a [len][dim] cache as f32: the cache itself when it is F32, otherwise
// converted into buf ([n][dim]). A tile's rows are contiguous whole blocks, so one call
// converts them all.
const float* tile_rows(DType t, const void* base, int64_t j0, int n, int dim, float* buf) {
  if (t == DType::F32) return static_cast<const float*>(base) + j0 * dim;
  const auto* src =
      static_cast<const uint8_t*>(base) + j0 * static_cast<int64_t>(row_bytes(t, dim));
  const int64_t count = static_cast<int64_t>(n) * dim;
  int64_t i = 0;
  switch (t) {
    case DType::F16:
      // dequantize_row's scalar half conversion would cost more than the attention itself.
#if defined(__F16C__)
      for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(
            buf + i,
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i))));
#endif
      for (; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        buf[i] = fp16_to_fp32(h);
      }
      break;
    case DType::BF16:
#if KVS_FLASH_AVX2
      for (; i + 8 <= count; i += 8) {
        const __m256i w =
            _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + 2 * i)));
        _mm256_storeu_ps(buf + i, _mm256_castsi256_ps(_mm256_slli_epi32(w, 16)));
      }
#endif
      for (; i < count; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        buf[i] = bf16_to_fp32(h);
      }
      break;
#if KVS_FLASH_AVX2
    // The same products as dequantize_row, vectorized: calling it per tile took about half
    // of a Q8_0 decode step.
    case DType::Q8_0:
      dequant_q8_0_avx2(src, count / kQK, buf);
      break;
    case DType::Q4_0:
      dequant_q4_0_avx2(src, count / kQK, buf);
      break;
#endif
    default:  // Q8_0, Q4_0 without AVX2 (supports() admits nothing else)
      dequantize_row(t, src, buf, count);
      break;
  }
  return buf;
}

bool readable_dtype(DType t) {
  return t == DType::F32 || t == DType::F16 || t == DType::BF16 || t == DType::Q8_0 ||
         t == DType::Q4_0;
}

// ---- one call ----

// Per-thread tile buffers, kept across calls: a decode step makes one call per layer.
struct Scratch {
  std::vector<float> k;     // [kTile][head_dim_k] one converted key tile
  std::vector<float> v;     // [kTile][head_dim_v] one converted value tile
  std::vector<float> s;     // [kTile] scores of one query row against the tile
  std::vector<float> p;     // [kTile] their exponentials
  std::vector<float> m;     // [rows] running max per query row within a chunk
  std::vector<float> l;     // [rows] running sum of exponentials per query row within a chunk
  std::vector<float> acc;   // [rows][head_dim_v] unnormalized output per query row within a chunk
  std::vector<float> fm;    // [rows] folded max over the chunks done (unsplit items)
  std::vector<float> fl;    // [rows] folded sum
  std::vector<float> facc;  // [rows][head_dim_v] folded unnormalized output
};

// Folds one chunk's softmax state (m, l, acc) into the state of the chunks before it. Split and
// unsplit items both fold with this, in chunk order, so they round identically.
inline void fold_state(float& M, float& L, float* A, float m, float l, const float* acc, int dv) {
  if (m == -INFINITY) return;
  if (M == -INFINITY) {
    M = m;
    L = l;
    std::copy(acc, acc + dv, A);
    return;
  }
  const float nm = std::max(M, m);
  const float wa = std::exp(M - nm), wb = std::exp(m - nm);
  L = L * wa + l * wb;
  for (int d = 0; d < dv; ++d) A[d] = A[d] * wa + acc[d] * wb;
  M = nm;
}

Scratch& thread_scratch() {
  thread_local Scratch s;
  return s;
}

// Buffers of the calling thread that the workers share during one call.
struct CallBuffers {
  std::vector<float> part_m;    // [partial rows] max of each chunk's rows
  std::vector<float> part_l;    // [partial rows] sum of exponentials of each chunk's rows
  std::vector<float> part_acc;  // [partial rows][head_dim_v] unnormalized output of each chunk
  std::vector<float> row_m;     // [T][n_head] final max per query row (sinks only)
  std::vector<float> row_inv;   // [T][n_head] 1 / final sum per query row (sinks only)
  std::vector<float> saved;     // per head with sinks: [T][group][len] first-pass scores
};

CallBuffers& call_buffers() {
  thread_local CallBuffers b;
  return b;
}

struct Item {
  int g = 0;               // KV head
  int64_t t0 = 0, t1 = 0;  // query tokens [t0, t1)
  int32_t j0 = 0, j1 = 0;  // slots [j0, j1): whole chunks (the last may be short)
  int64_t part = -1;       // first partial row of this chunk; -1: the item covers the block
  int block = 0;           // index of its (head, query block)
};

struct Block {
  int g = 0;
  int64_t t0 = 0, t1 = 0;
  int first_item = 0;  // its chunks are items [first_item, first_item + n_chunks)
  int n_chunks = 1;
};

struct SinkItem {
  int g = 0;
  int32_t j0 = 0, j1 = 0;
};

class Call {
 public:
  Call(const AttentionShape& s, const float* q, const int32_t* q_pos, int64_t T, const KVView& kv,
       float* out)
      : s_(s), q_(q), q_pos_(q_pos), T_(T), kv_(kv), out_(out), group_(s.n_head / s.n_head_kv) {}

  void run(ThreadPool& pool) {
    plan();
    for_items(pool, static_cast<int64_t>(items_.size()), [&](int64_t i, Scratch& sc) {
      const Item& it = items_[i];
      attend_item(it, sc);
      if (it.part >= 0 && left_[it.block].fetch_sub(1, std::memory_order_acq_rel) == 1)
        merge(blocks_[it.block]);  // the last chunk to finish merges its block
    });
    if (!sinks_.empty())
      for_items(pool, static_cast<int64_t>(sinks_.size()),
                [&](int64_t i, Scratch& sc) { sink_item(sinks_[i], sc); });
  }

 private:
  template <typename Fn>
  static void for_items(ThreadPool& pool, int64_t n, const Fn& fn) {
    if (n == 1 || pool.size() == 1) {
      for (int64_t i = 0; i < n; ++i) fn(i, thread_scratch());
      return;
    }
    // Dynamic scheduling: heads differ in length and causal blocks in visible keys.
    std::atomic<int64_t> next{0};
    pool.run([&](int, int) {
      Scratch& sc = thread_scratch();
      for (int64_t i; (i = next.fetch_add(1, std::memory_order_relaxed)) < n;) fn(i, sc);
    });
  }

  void plan() {
    const int64_t tokens_per_block = std::max(1, kBlockRows / group_);
    const int64_t n_qb = (T_ + tokens_per_block - 1) / tokens_per_block;
    const bool split = s_.n_head_kv * n_qb < kSplitBelowItems;
    bool any_sink = false;
    int64_t saved_floats = 0;
    for (const KVHeadView& h : kv_.heads) {
      if (h.score_acc == nullptr && h.score_last == nullptr) continue;
      any_sink = true;
      saved_floats += T_ * group_ * h.len;
    }
    int64_t part_rows = 0;
    for (int g = 0; g < s_.n_head_kv; ++g) {
      const int32_t len = kv_.heads[g].len;
      // Split: one item per chunk. Unsplit: one item per block, folding its chunks itself.
      const int n_chunks = split ? std::max(1, (len + kChunk - 1) / kChunk) : 1;
      const int32_t span = split ? kChunk : std::max(len, 1);
      // Later query blocks see more keys under a causal mask: within a head they go first, so
      // cheap blocks fill the tail of the dynamic schedule.
      for (int64_t qb = n_qb - 1; qb >= 0; --qb) {
        Block b;
        b.g = g;
        b.t0 = qb * tokens_per_block;
        b.t1 = std::min(T_, b.t0 + tokens_per_block);
        b.first_item = static_cast<int>(items_.size());
        b.n_chunks = n_chunks;
        for (int c = 0; c < n_chunks; ++c) {
          Item it;
          it.g = g;
          it.t0 = b.t0;
          it.t1 = b.t1;
          it.j0 = c * span;
          it.j1 = std::min(len, it.j0 + span);
          it.block = static_cast<int>(blocks_.size());
          if (n_chunks > 1) {
            it.part = part_rows;
            part_rows += (b.t1 - b.t0) * group_;
          }
          items_.push_back(it);
        }
        blocks_.push_back(b);
      }
    }
    left_ = std::make_unique<std::atomic<int>[]>(blocks_.size());
    for (size_t b = 0; b < blocks_.size(); ++b) left_[b].store(blocks_[b].n_chunks);

    CallBuffers& cb = call_buffers();
    part_m_ = grab(cb.part_m, part_rows);
    part_l_ = grab(cb.part_l, part_rows);
    part_acc_ = grab(cb.part_acc, part_rows * s_.head_dim_v);
    if (!any_sink) return;
    row_m_ = grab(cb.row_m, T_ * s_.n_head);
    row_inv_ = grab(cb.row_inv, T_ * s_.n_head);
    saved_.assign(s_.n_head_kv, nullptr);
    if (saved_floats <= kSavedScoreBudget) {
      float* base = grab(cb.saved, saved_floats);
      for (int g = 0; g < s_.n_head_kv; ++g) {
        const KVHeadView& h = kv_.heads[g];
        if (h.score_acc == nullptr && h.score_last == nullptr) continue;
        saved_[g] = base;
        base += T_ * group_ * h.len;
      }
    }
    for (int g = 0; g < s_.n_head_kv; ++g) {
      const KVHeadView& h = kv_.heads[g];
      if (h.score_acc == nullptr && h.score_last == nullptr) continue;
      for (int32_t j = 0; j < h.len; j += kSinkChunk)
        sinks_.push_back({g, j, std::min(h.len, j + kSinkChunk)});
    }
  }

  const float* q_row(int64_t t, int g, int qh) const {
    return q_ + ((t * s_.n_head) + g * group_ + qh) * s_.head_dim_k;
  }
  float* out_row(int64_t t, int g, int qh) const {
    return out_ + ((t * s_.n_head) + g * group_ + qh) * s_.head_dim_v;
  }
  int64_t stat_index(int64_t t, int g, int qh) const { return t * s_.n_head + g * group_ + qh; }

  // Scores of one query row against a tile after scale, softcap and mask (-inf when hidden).
  void score_row(const float* q, const float* K, int n, const int32_t* kpos, int32_t q_pos,
                 bool whole_tile, float* s) const {
    scaled_dots(q, K, n, s_.head_dim_k, s_.scale, s);
    if (s_.softcap > 0.0f) soft_cap(s, n, s_.softcap);
    if (!whole_tile)
      for (int c = 0; c < n; ++c)
        if (!visible(q_pos, kpos[c], s_.window)) s[c] = -INFINITY;
  }

  // Online softmax of one block's rows over the slots [j0, j1) of one head, chunk by chunk.
  void attend_item(const Item& it, Scratch& sc) {
    const KVHeadView& h = kv_.heads[it.g];
    const int dk = s_.head_dim_k, dv = s_.head_dim_v;
    const int64_t rows = (it.t1 - it.t0) * group_;
    float *m, *l, *acc;  // [rows], [rows], [rows][dv]: state of the current chunk
    if (it.part >= 0) {
      m = part_m_ + it.part;
      l = part_l_ + it.part;
      acc = part_acc_ + it.part * dv;
    } else {
      m = grab(sc.m, rows);
      l = grab(sc.l, rows);
      acc = grab(sc.acc, rows * dv);
    }
    float *fm = nullptr, *fl = nullptr, *facc = nullptr;  // folded state (unsplit items)
    if (it.part < 0) {
      fm = grab(sc.fm, rows);
      fl = grab(sc.fl, rows);
      facc = grab(sc.facc, rows * dv);
      std::fill(fm, fm + rows, -INFINITY);
      std::fill(fl, fl + rows, 0.0f);
      std::fill(facc, facc + rows * dv, 0.0f);
    }
    float* kbuf = grab(sc.k, static_cast<size_t>(kTile) * dk);
    float* vbuf = grab(sc.v, static_cast<size_t>(kTile) * dv);
    float* sbuf = grab(sc.s, kTile);
    float* p = grab(sc.p, kTile);
    float* saved = saved_.empty() ? nullptr : saved_[it.g];

    for (int32_t jc = it.j0; jc < it.j1; jc += kChunk) {
      const int32_t jc1 = std::min(it.j1, jc + kChunk);
      std::fill(m, m + rows, -INFINITY);
      std::fill(l, l + rows, 0.0f);
      std::fill(acc, acc + rows * dv, 0.0f);
      for (int32_t jt = jc; jt < jc1; jt += kTile) {
        const int n = std::min(kTile, jc1 - jt);
        const int32_t* kpos = h.pos + jt;
        const PosRange range = pos_range(kpos, n);
        const float* K = nullptr;  // converted lazily: a tile no row sees is never read
        const float* V = nullptr;
        for (int64_t t = it.t0; t < it.t1; ++t) {
          const int32_t qp = q_pos_[t];
          if (row_misses_tile(qp, range, s_.window)) continue;
          const bool whole = row_sees_whole_tile(qp, range, s_.window);
          if (K == nullptr) K = tile_rows(kv_.k_dtype, h.k, jt, n, dk, kbuf);
          for (int qh = 0; qh < group_; ++qh) {
            const int64_t r = (t - it.t0) * group_ + qh;
            float* sr = saved != nullptr ? saved + (t * group_ + qh) * h.len + jt : sbuf;
            score_row(q_row(t, it.g, qh), K, n, kpos, qp, whole, sr);
            const float mt = max_of(sr, n);
            if (mt == -INFINITY) continue;
            float* a = acc + r * dv;
            if (mt > m[r]) {
              if (m[r] != -INFINITY) {
                const float alpha = std::exp(m[r] - mt);
                l[r] *= alpha;
                for (int d = 0; d < dv; ++d) a[d] *= alpha;
              }
              m[r] = mt;
            }
            l[r] += exp_shifted(sr, n, m[r], p);
            if (V == nullptr) V = tile_rows(kv_.v_dtype, h.v, jt, n, dv, vbuf);
            accumulate_pv(p, V, n, dv, a, !whole);
          }
        }
      }
      if (it.part >= 0) return;  // a split item is exactly one chunk; merge() folds it
      for (int64_t r = 0; r < rows; ++r)
        fold_state(fm[r], fl[r], facc + r * dv, m[r], l[r], acc + r * dv, dv);
    }
    for (int64_t t = it.t0; t < it.t1; ++t)
      for (int qh = 0; qh < group_; ++qh) {
        const int64_t r = (t - it.t0) * group_ + qh;
        finish_row(t, it.g, qh, fm[r], fl[r], facc + r * dv);
      }
  }

  // Writes the normalized output row (zeros when nothing was visible) and its sink statistics.
  void finish_row(int64_t t, int g, int qh, float m, float l, const float* acc) {
    float* o = out_row(t, g, qh);
    const int dv = s_.head_dim_v;
    const float inv = m == -INFINITY ? 0.0f : 1.0f / l;
    for (int d = 0; d < dv; ++d) o[d] = acc[d] * inv;
    if (row_m_ != nullptr) {
      row_m_[stat_index(t, g, qh)] = m;
      row_inv_[stat_index(t, g, qh)] = inv;
    }
  }

  // Folds the chunks of one (head, query block) in chunk order, as an unsplit item does, so the
  // result does not depend on the split or on which thread finished first.
  void merge(const Block& b) {
    const int dv = s_.head_dim_v;
    Scratch& sc = thread_scratch();
    float* acc = grab(sc.facc, dv);  // [dv] folded unnormalized output of one row
    for (int64_t t = b.t0; t < b.t1; ++t)
      for (int qh = 0; qh < group_; ++qh) {
        const int64_t r = (t - b.t0) * group_ + qh;
        float M = -INFINITY, L = 0.0f;
        std::fill(acc, acc + dv, 0.0f);
        for (int c = 0; c < b.n_chunks; ++c) {
          const int64_t pr = items_[b.first_item + c].part + r;
          fold_state(M, L, acc, part_m_[pr], part_l_[pr], part_acc_ + pr * dv, dv);
        }
        finish_row(t, b.g, qh, M, L, acc);
      }
  }

  // Adds the final softmax probabilities of slots [j0, j1) of one head to its sinks, in the
  // reference's order (query by query, head by head), so sums round the same way. Only this
  // item writes these slots.
  void sink_item(const SinkItem& si, Scratch& sc) {
    const KVHeadView& h = kv_.heads[si.g];
    const int dk = s_.head_dim_k;
    float* kbuf = grab(sc.k, static_cast<size_t>(kTile) * dk);
    float* sbuf = grab(sc.s, kTile);
    float* p = grab(sc.p, kTile);
    const float* saved = saved_[si.g];
    const float per_head = static_cast<float>(group_);
    for (int32_t jt = si.j0; jt < si.j1; jt += kTile) {
      const int n = std::min(kTile, si.j1 - jt);
      const int32_t* kpos = h.pos + jt;
      const PosRange range = pos_range(kpos, n);
      const float* K = nullptr;
      for (int64_t t = 0; t < T_; ++t) {
        const int32_t qp = q_pos_[t];
        if (row_misses_tile(qp, range, s_.window)) continue;
        const bool whole = row_sees_whole_tile(qp, range, s_.window);
        for (int qh = 0; qh < group_; ++qh) {
          const float mx = row_m_[stat_index(t, si.g, qh)];
          if (mx == -INFINITY) continue;
          const float inv = row_inv_[stat_index(t, si.g, qh)];
          const float* sr;
          if (saved != nullptr) {
            sr = saved + (t * group_ + qh) * h.len + jt;
          } else {
            if (K == nullptr) K = tile_rows(kv_.k_dtype, h.k, jt, n, dk, kbuf);
            score_row(q_row(t, si.g, qh), K, n, kpos, qp, whole, sbuf);
            sr = sbuf;
          }
          exp_shifted(sr, n, mx, p);
          for (int c = 0; c < n; ++c) p[c] *= inv;
          if (h.score_acc != nullptr)
            for (int c = 0; c < n; ++c) h.score_acc[jt + c] += p[c];
          if (h.score_last != nullptr && t == T_ - 1)
            for (int c = 0; c < n; ++c) h.score_last[jt + c] += p[c] / per_head;
        }
      }
    }
  }

  const AttentionShape& s_;
  const float* q_;
  const int32_t* q_pos_;
  const int64_t T_;
  const KVView& kv_;
  float* out_;
  const int group_;

  std::vector<Item> items_;
  std::vector<Block> blocks_;
  std::unique_ptr<std::atomic<int>[]> left_;  // [blocks] chunks not yet finished
  std::vector<SinkItem> sinks_;
  float* part_m_ = nullptr;  // see CallBuffers
  float* part_l_ = nullptr;
  float* part_acc_ = nullptr;
  float* row_m_ = nullptr;  // null when no head has a sink
  float* row_inv_ = nullptr;
  std::vector<float*> saved_;  // [n_head_kv] saved first-pass scores, or null to recompute
};

class FlashAttention final : public AttentionBackend {
 public:
  std::string_view name() const override { return "flash"; }
  std::string_view description() const override {
    return "tiled CPU attention, online softmax, O(n) memory; threads over KV heads and key "
           "blocks";
  }
  std::string supports(const AttentionShape& shape, const KVView& kv) const override {
    if (std::string why = check_head_layout(shape, kv); !why.empty()) return why;
    const struct {
      const char* what;
      DType t;
      int dim;
    } caches[] = {{"K", kv.k_dtype, shape.head_dim_k}, {"V", kv.v_dtype, shape.head_dim_v}};
    for (const auto& c : caches) {
      if (!readable_dtype(c.t))
        return std::string("flash attention reads F32, F16, BF16, Q8_0 or Q4_0 caches, not ") +
               c.what + " in " + std::string(dtype_name(c.t));
      if (c.dim % dtype_traits(c.t).block_size != 0)
        return std::string(c.what) + " head dimension " + std::to_string(c.dim) +
               " is not a multiple of the " + std::string(dtype_name(c.t)) + " block size";
    }
    return {};
  }

  void attend(const AttentionShape& s, const float* q, const int32_t* q_pos, int64_t T,
              const KVView& kv, float* out, ThreadPool& pool) const override {
    const std::string why = supports(s, kv);
    KVS_CHECK(why.empty(), why);
    // The reference clears score_last even when no query sees a slot.
    for (const KVHeadView& h : kv.heads)
      if (h.score_last != nullptr) std::fill(h.score_last, h.score_last + h.len, 0.0f);
    if (T <= 0 || s.n_head == 0) return;
    Call(s, q, q_pos, T, kv, out).run(pool);
  }
};

const AttentionBackendRegistrar kRegister(std::make_unique<FlashAttention>());

}  // namespace
}  // namespace kvs
