// knorm: keys with a low L2 norm attract attention, so the score is -||k||_2.
#include <cmath>
#include <limits>

#include "cache/policy.h"

namespace kvs {
namespace {

class KNorm final : public CachePolicy {
 public:
  explicit KNorm(int skip_layers) : skip_layers_(skip_layers) {}
  std::string_view name() const override { return "knorm"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.keys = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    if (in.layer < skip_layers_) {
      // The paper keeps the first layers whole: their key norms do not predict attention.
      for (float& s : out) s = std::numeric_limits<float>::max();
      return;
    }
    for (int32_t i = 0; i < in.len; ++i) {
      const float* k = in.keys + static_cast<size_t>(i) * in.head_dim_k;
      // Four independent partial sums: one dependent chain of head_dim adds per key was most
      // of a decode-time compression.
      double part[4] = {0.0, 0.0, 0.0, 0.0};
      int d = 0;
      for (; d + 4 <= in.head_dim_k; d += 4)
        for (int j = 0; j < 4; ++j) part[j] += static_cast<double>(k[d + j]) * k[d + j];
      for (; d < in.head_dim_k; ++d) part[0] += static_cast<double>(k[d]) * k[d];
      out[i] = -static_cast<float>(std::sqrt((part[0] + part[1]) + (part[2] + part[3])));
    }
  }

 private:
  int skip_layers_;
};

KVS_REGISTER_POLICY(knorm, "knorm", "L2 norm of keys: keep low-norm keys (score -||k||)",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {"skip_layers"}, where);
                      return std::make_unique<KNorm>(
                          static_cast<int>(param_number(p, "skip_layers", 0, 0, 4096, where)));
                    });

}  // namespace
}  // namespace kvs
