// full: keep every token (the baseline; equals running without a cache manager).
#include "cache/policy.h"

namespace kvs {
namespace {

class Full final : public CachePolicy {
 public:
  std::string_view name() const override { return "full"; }
  PolicyNeeds needs() const override { return {}; }
  bool keeps_everything() const override { return true; }
  void score(const HeadScoreInput&, std::span<float> out) const override {
    for (float& s : out) s = 0.0f;
  }
};

KVS_REGISTER_POLICY(full, "full", "keep every token",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {}, where);
                      return std::make_unique<Full>();
                    });

}  // namespace
}  // namespace kvs
