// Reference attention: naive softmax(q·K^T)·V per query and head, f32 or any dtype the
// dequantizer reads. It is the twin every faster backend is tested against.
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/attention/backend.h"
#include "kernels/core/error.h"
#include "kernels/core/quant.h"
#include "kernels/cpu/ops.h"

namespace kvs {
namespace {

bool visible(int32_t q_pos, int32_t k_pos, int window) {
  return k_pos <= q_pos && (window <= 0 || q_pos - k_pos < window);
}

class ReferenceAttention final : public AttentionBackend {
 public:
  std::string_view name() const override { return "reference"; }
  std::string_view description() const override {
    return "naive CPU attention (reference; materializes one score row per query)";
  }
  std::string supports(const AttentionShape& shape, const KVView& kv) const override {
    return check_head_layout(shape, kv);
  }

  void attend(const AttentionShape& s, const float* q, const int32_t* q_pos, int64_t T,
              const KVView& kv, float* out, ThreadPool& pool) const override {
    KVS_CHECK(supports(s, kv).empty(), supports(s, kv));
    const int group = s.n_head / s.n_head_kv;
    // Each KV head's work goes to one thread, so its score sinks have a single writer.
    pool.parallel_for(s.n_head_kv, [&](int64_t g0, int64_t g1) {
      std::vector<float> scores;
      std::vector<float> kbuf, vbuf;
      for (int64_t g = g0; g < g1; ++g) {
        const KVHeadView& h = kv.heads[g];
        const int64_t n = h.len;
        // [n][head_dim] f32 copies when the cache is stored in another type
        const float* K = static_cast<const float*>(h.k);
        const float* V = static_cast<const float*>(h.v);
        if (kv.k_dtype != DType::F32) {
          kbuf.resize(n * s.head_dim_k);
          for (int64_t j = 0; j < n; ++j)
            dequantize_row(
                kv.k_dtype,
                static_cast<const uint8_t*>(h.k) + j * row_bytes(kv.k_dtype, s.head_dim_k),
                kbuf.data() + j * s.head_dim_k, s.head_dim_k);
          K = kbuf.data();
        }
        if (kv.v_dtype != DType::F32) {
          vbuf.resize(n * s.head_dim_v);
          for (int64_t j = 0; j < n; ++j)
            dequantize_row(
                kv.v_dtype,
                static_cast<const uint8_t*>(h.v) + j * row_bytes(kv.v_dtype, s.head_dim_v),
                vbuf.data() + j * s.head_dim_v, s.head_dim_v);
          V = vbuf.data();
        }
        scores.resize(n);
        if (h.score_last != nullptr) std::fill(h.score_last, h.score_last + n, 0.0f);
        for (int64_t t = 0; t < T; ++t) {
          for (int qh = 0; qh < group; ++qh) {
            const int64_t head = g * group + qh;
            const float* qv = q + (t * s.n_head + head) * s.head_dim_k;
            float mx = -INFINITY;
            for (int64_t j = 0; j < n; ++j) {
              if (!visible(q_pos[t], h.pos[j], s.window)) {
                scores[j] = -INFINITY;
                continue;
              }
              float sc = ops::dot_f32(qv, K + j * s.head_dim_k, s.head_dim_k) * s.scale;
              if (s.softcap > 0.0f) sc = s.softcap * std::tanh(sc / s.softcap);
              scores[j] = sc;
              mx = std::max(mx, sc);
            }
            float* o = out + (t * s.n_head + head) * s.head_dim_v;
            std::fill(o, o + s.head_dim_v, 0.0f);
            if (mx == -INFINITY) continue;  // nothing visible (cannot happen for a causal prefix)
            double sum = 0.0;
            for (int64_t j = 0; j < n; ++j) {
              scores[j] = scores[j] == -INFINITY ? 0.0f : std::exp(scores[j] - mx);
              sum += scores[j];
            }
            const float inv = static_cast<float>(1.0 / sum);
            for (int64_t j = 0; j < n; ++j) {
              const float p = scores[j] * inv;
              if (p == 0.0f) continue;
              const float* vv = V + j * s.head_dim_v;
              for (int d = 0; d < s.head_dim_v; ++d) o[d] += p * vv[d];
              if (h.score_acc != nullptr) h.score_acc[j] += p;
              if (h.score_last != nullptr && t == T - 1) h.score_last[j] += p / group;
            }
          }
        }
      }
    });
  }
};

const AttentionBackendRegistrar kRegister(std::make_unique<ReferenceAttention>());

}  // namespace
}  // namespace kvs
