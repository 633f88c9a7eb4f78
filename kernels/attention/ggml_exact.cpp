// "ggml" attention: the arithmetic of llama.cpp's CPU attention without flash attention
// (f32 cache), reproduced bit for bit so that kvsieve can be checked against llama.cpp as an
// oracle. Scores are ggml_vec_dot_f32(k, q) times the scale, the softmax is ggml's (vector
// exp in 8-lane groups, float group sums added in double, one float reciprocal), and the
// output P·V is tinyBLAS's (one 8-lane accumulator, then hsum) for batches of two or more
// tokens and ggml_vec_dot_f32 for one, as llama.cpp's mul_mat picks. llama.cpp lays the cache out
// by cell, cell = position for a single sequence, so keys are placed by position here: the
// lanes a key lands in, and therefore the rounding, match llama.cpp whatever order the slots
// have. Absent and masked positions contribute exact zeros, as masked cells do there.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "kernels/attention/backend.h"
#include "kernels/core/error.h"
#include "kernels/core/quant.h"
#include "kernels/cpu/ggml_math.h"

namespace kvs {
namespace {

class GgmlExactAttention final : public AttentionBackend {
 public:
  std::string_view name() const override { return "ggml"; }
  std::string_view description() const override {
    return "bit-identical to llama.cpp's CPU attention without flash attention (oracle checks; "
           "materializes one score row per query)";
  }
  std::string supports(const AttentionShape& shape, const KVView& kv) const override {
    return check_head_layout(shape, kv);
  }

  void attend(const AttentionShape& s, const float* q, const int32_t* q_pos, int64_t T,
              const KVView& kv, float* out, ThreadPool& pool) const override {
    KVS_CHECK(supports(s, kv).empty(), supports(s, kv));
    const int group = s.n_head / s.n_head_kv;
    const int dk = s.head_dim_k, dv = s.head_dim_v;
    // Checked here, on the calling thread: the pool's workers must not throw.
    for (const KVHeadView& h : kv.heads) {
      std::vector<int32_t> pos(h.pos, h.pos + h.len);
      std::sort(pos.begin(), pos.end());
      if (const auto d = std::adjacent_find(pos.begin(), pos.end()); d != pos.end())
        throw Error("--attention ggml: two cache slots hold position " + std::to_string(*d) +
                    "; this backend needs distinct positions");
    }
    pool.parallel_for(s.n_head_kv, [&](int64_t g0, int64_t g1) {
      std::vector<float> K, Vt, row, p;          // see the shapes below
      std::vector<float> tmp(std::max(dk, dv));  // [max(dk, dv)] one dequantized row
      std::vector<int32_t> slot_of;              // [L] slot holding position base + i, or -1
      for (int64_t g = g0; g < g1; ++g) {
        const KVHeadView& h = kv.heads[g];
        if (h.score_last != nullptr) std::fill(h.score_last, h.score_last + h.len, 0.0f);
        if (h.len == 0) {
          for (int64_t t = 0; t < T; ++t)
            for (int qh = 0; qh < group; ++qh)
              std::fill_n(out + (t * s.n_head + g * group + qh) * dv, dv, 0.0f);
          continue;
        }
        // Positions [base, base + L): base aligned to 32 so that lanes follow position % 32.
        const int32_t p_min = *std::min_element(h.pos, h.pos + h.len);
        const int32_t p_max = *std::max_element(h.pos, h.pos + h.len);
        const int64_t base = p_min - p_min % 32;
        const int64_t L = (p_max - base + 1 + 31) / 32 * 32;
        slot_of.assign(L, -1);
        K.assign(L * dk, 0.0f);   // [L][dk] keys by position
        Vt.assign(dv * L, 0.0f);  // [dv][L] values by position, transposed as llama.cpp stores V
        for (int32_t j = 0; j < h.len; ++j) {
          const int64_t i = h.pos[j] - base;
          slot_of[i] = j;
          const float* kr = row_f32(kv.k_dtype, h.k, j, dk, tmp.data());
          std::copy(kr, kr + dk, K.begin() + i * dk);
          const float* vr = row_f32(kv.v_dtype, h.v, j, dv, tmp.data());
          for (int d = 0; d < dv; ++d) Vt[d * L + i] = vr[d];
        }
        row.resize(L);
        p.resize(L);
        for (int64_t t = 0; t < T; ++t) {
          for (int qh = 0; qh < group; ++qh) {
            const int64_t head = g * group + qh;
            const float* qv = q + (t * s.n_head + head) * dk;
            float* o = out + (t * s.n_head + head) * dv;
            float mx = -INFINITY;
            for (int64_t i = 0; i < L; ++i) {
              const int64_t pos = base + i;
              const bool vis = slot_of[i] >= 0 && pos <= q_pos[t] &&
                               (s.window <= 0 || q_pos[t] - pos < s.window);
              if (!vis) {
                row[i] = -INFINITY;
                continue;
              }
              float sc = ggml::vec_dot_f32(K.data() + i * dk, qv, dk) * s.scale;
              if (s.softcap > 0.0f) sc = s.softcap * std::tanh(sc / s.softcap);
              row[i] = sc;
              mx = std::max(mx, sc);
            }
            if (mx == -INFINITY) {
              std::fill_n(o, dv, 0.0f);
              continue;
            }
            double sum = 0.0;
            for (int64_t i = 0; i < L; i += 8) {
              for (int l = 0; l < 8; ++l) p[i + l] = ggml::v_expf(row[i + l] - mx);
              sum += static_cast<double>(ggml::hsum8(p.data() + i));
            }
            const float inv = static_cast<float>(1.0 / sum);
            for (int64_t i = 0; i < L; ++i) p[i] *= inv;
            // llama.cpp hands P·V to tinyBLAS only for batches of two or more tokens.
            for (int d = 0; d < dv; ++d)
              o[d] = T >= 2 ? ggml::tinyblas_dot_f32(Vt.data() + d * L, p.data(), L)
                            : ggml::vec_dot_f32(Vt.data() + d * L, p.data(), L);
            for (int64_t i = 0; i < L; ++i) {
              const int32_t j = slot_of[i];
              if (j < 0 || p[i] == 0.0f) continue;
              if (h.score_acc != nullptr) h.score_acc[j] += p[i];
              if (h.score_last != nullptr && t == T - 1) h.score_last[j] += p[i] / group;
            }
          }
        }
      }
    });
  }

 private:
  // Row j of a cache array as f32: the row itself, or its dequantization into tmp.
  static const float* row_f32(DType dt, const void* base, int64_t j, int n, float* tmp) {
    if (dt == DType::F32) return static_cast<const float*>(base) + j * n;
    dequantize_row(dt, static_cast<const uint8_t*>(base) + j * row_bytes(dt, n), tmp, n);
    return tmp;
  }
};

const AttentionBackendRegistrar kRegister(std::make_unique<GgmlExactAttention>());

}  // namespace
}  // namespace kvs
