// vatp (Value-Aware Token Pruning, Guo et al. 2024, "Attention Score is not All You Need for
// Token Importance Indicator in KV Cache Reduction: Value Also Matters"): the accumulated
// attention a token received (as h2o) times the L1 norm of its value vector, since a token
// whose value is near zero adds little to the output however much attention it gets. Attention
// sinks have tiny values but must stay, so the first `sinks` slots (default 4) always score the
// maximum.
#include <cmath>
#include <limits>

#include "cache/policy.h"

namespace kvs {
namespace {

class Vatp final : public CachePolicy {
 public:
  explicit Vatp(int sinks) : sinks_(sinks) {}
  std::string_view name() const override { return "vatp"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.attn_accumulated = true;
    n.values = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    for (int32_t i = 0; i < in.len; ++i) {
      if (i < sinks_) {
        out[i] = std::numeric_limits<float>::max();
        continue;
      }
      double l1 = 0.0;
      if (in.values != nullptr)
        for (int d = 0; d < in.head_dim_v; ++d)
          l1 += std::fabs(in.values[static_cast<size_t>(i) * in.head_dim_v + d]);
      const double a = in.attn_acc != nullptr ? in.attn_acc[i] : 0.0;
      out[i] = static_cast<float>(a * l1);
    }
  }

 private:
  int sinks_;
};

KVS_REGISTER_POLICY(vatp, "vatp", "VATP: accumulated attention times the L1 norm of the value",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {"sinks"}, where);
                      return std::make_unique<Vatp>(
                          static_cast<int>(param_number(p, "sinks", 4, 0, 1 << 20, where)));
                    });

}  // namespace
}  // namespace kvs
