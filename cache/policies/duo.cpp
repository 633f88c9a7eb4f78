// duo (DuoAttention, Xiao et al. 2024, "DuoAttention: Efficient Long-Context LLM Inference with
// Retrieval and Streaming Heads"): a head profile (plan key "head_profile", DuoAttention's
// gate values per layer and KV head) splits the heads; the manager turns retrieval heads into
// `full` (keep everything) and this policy scores the streaming heads like StreamingLLM:
// `sinks` first slots (default 64; the paper uses 64-128) then the most recent, whose count is
// the plan's budget ("recent" protects them too; the paper uses 256). A plan without a head
// profile is refused: every head would stream.
#include <limits>

#include "cache/policy.h"

namespace kvs {
namespace {

class Duo final : public CachePolicy {
 public:
  explicit Duo(int sinks) : sinks_(sinks) {}
  std::string_view name() const override { return "duo"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.head_profile = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    // Slots are in position order, so the first `sinks_` slots are the sink tokens.
    for (int32_t i = 0; i < in.len; ++i)
      out[i] = i < sinks_ ? std::numeric_limits<float>::max() : static_cast<float>(in.pos[i]);
  }

 private:
  int sinks_;
};

KVS_REGISTER_POLICY(duo, "duo",
                    "DuoAttention: streaming heads keep sinks + recent (needs a head profile)",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {"sinks"}, where);
                      return std::make_unique<Duo>(
                          static_cast<int>(param_number(p, "sinks", 64, 0, 1 << 20, where)));
                    });

}  // namespace
}  // namespace kvs
