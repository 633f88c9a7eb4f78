// streaming (StreamingLLM): attention sinks (the first tokens) plus the most recent tokens.
// With "positions": "cache" in the plan, text can stream past the trained context.
#include <limits>

#include "cache/policy.h"

namespace kvs {
namespace {

class Streaming final : public CachePolicy {
 public:
  explicit Streaming(int sinks) : sinks_(sinks) {}
  std::string_view name() const override { return "streaming"; }
  PolicyNeeds needs() const override { return {}; }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    // Slots are in position order, so the first `sinks_` slots are the sink tokens.
    for (int32_t i = 0; i < in.len; ++i)
      out[i] = i < sinks_ ? std::numeric_limits<float>::max() : static_cast<float>(in.pos[i]);
  }

 private:
  int sinks_;
};

KVS_REGISTER_POLICY(streaming, "streaming", "StreamingLLM: attention sinks plus a recent window",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {"sinks"}, where);
                      return std::make_unique<Streaming>(
                          static_cast<int>(param_number(p, "sinks", 4, 0, 1 << 20, where)));
                    });

}  // namespace
}  // namespace kvs
