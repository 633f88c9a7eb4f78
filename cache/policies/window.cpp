// window: a sliding window of the most recent tokens, no sinks.
#include "cache/policy.h"

namespace kvs {
namespace {

class Window final : public CachePolicy {
 public:
  std::string_view name() const override { return "window"; }
  PolicyNeeds needs() const override { return {}; }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    for (int32_t i = 0; i < in.len; ++i) out[i] = static_cast<float>(in.pos[i]);
  }
};

KVS_REGISTER_POLICY(window, "window", "keep the most recent tokens (sliding window)",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {}, where);
                      return std::make_unique<Window>();
                    });

}  // namespace
}  // namespace kvs
