// keydiff (KeyDiff, Park et al. 2025, "KeyDiff: Key Similarity-Based KV Cache Eviction for
// Long-Context LLM Inference"): keys that point away from the head's average key direction are
// distinctive and attract attention, so the score is -cos(k_i, a) with a the mean of the
// L2-normalized keys of the head (kvpress KeyDiffPress). The paper evicts block by block
// (blocks of 128 tokens); `block` > 0 computes the anchor within consecutive blocks of that many
// slots instead of over the whole head.
#include <algorithm>
#include <cmath>
#include <vector>

#include "cache/policy.h"

namespace kvs {
namespace {

class KeyDiff final : public CachePolicy {
 public:
  explicit KeyDiff(int block) : block_(block) {}
  std::string_view name() const override { return "keydiff"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.keys = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    const int d = in.head_dim_k;
    const int32_t step = block_ > 0 ? block_ : std::max<int32_t>(in.len, 1);
    std::vector<double> norm(in.len), anchor(d);
    for (int32_t i = 0; i < in.len; ++i) {
      double ss = 0.0;
      for (int c = 0; c < d; ++c) ss += static_cast<double>(key(in, i)[c]) * key(in, i)[c];
      norm[i] = std::sqrt(ss);
    }
    for (int32_t b = 0; b < in.len; b += step) {
      const int32_t e = std::min(in.len, b + step);
      std::fill(anchor.begin(), anchor.end(), 0.0);
      for (int32_t i = b; i < e; ++i)
        for (int c = 0; c < d; ++c) anchor[c] += key(in, i)[c] / std::max(norm[i], 1e-12);
      double an = 0.0;
      for (int c = 0; c < d; ++c) an += anchor[c] * anchor[c];
      an = std::sqrt(an);  // the mean's 1/n cancels in the cosine
      for (int32_t i = b; i < e; ++i) {
        double dot = 0.0;
        for (int c = 0; c < d; ++c) dot += key(in, i)[c] * anchor[c];
        out[i] = static_cast<float>(-dot / std::max(norm[i] * an, 1e-12));
      }
    }
  }

 private:
  static const float* key(const HeadScoreInput& in, int32_t i) {
    return in.keys + static_cast<size_t>(i) * in.head_dim_k;
  }
  int block_;
};

KVS_REGISTER_POLICY(keydiff, "keydiff", "KeyDiff: keys least similar to the mean key direction",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {"block"}, where);
                      return std::make_unique<KeyDiff>(
                          static_cast<int>(param_number(p, "block", 0, 0, 1 << 24, where)));
                    });

}  // namespace
}  // namespace kvs
