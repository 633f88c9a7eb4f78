// h2o (Heavy-Hitter Oracle): attention mass each token has received so far, summed over the
// group's query heads and every query (prompt, then each decode step). Pair it with a
// protected recent window in the plan ("recent"), as the paper splits heavy/recent.
#include "cache/policy.h"

namespace kvs {
namespace {

class H2O final : public CachePolicy {
 public:
  std::string_view name() const override { return "h2o"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.attn_accumulated = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    for (int32_t i = 0; i < in.len; ++i) out[i] = in.attn_acc[i];
  }
};

KVS_REGISTER_POLICY(h2o, "h2o", "Heavy-Hitter Oracle: accumulated attention mass",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {}, where);
                      return std::make_unique<H2O>();
                    });

}  // namespace
}  // namespace kvs
