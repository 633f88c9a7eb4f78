// razor (RazorAttention, Tang et al. 2024, "RazorAttention: Efficient KV Cache Compression
// Through Retrieval Heads"): as `duo`, the plan's head profile marks retrieval heads (kept
// whole, by the manager) and the others keep `sinks` first slots (default 4) plus the most
// recent; in addition each such head keeps ONE compensation token whose K and V are the mean of
// every token it dropped, weighted by count, so the dropped context still contributes its
// average. The manager builds that token (compensates(); see CacheManager::compact_compensated)
// and counts it against the head's budget.
#include <limits>

#include "cache/policy.h"

namespace kvs {
namespace {

class Razor final : public CachePolicy {
 public:
  explicit Razor(int sinks) : sinks_(sinks) {}
  std::string_view name() const override { return "razor"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.head_profile = true;
    return n;
  }
  bool compensates() const override { return true; }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    for (int32_t i = 0; i < in.len; ++i)
      out[i] = i < sinks_ ? std::numeric_limits<float>::max() : static_cast<float>(in.pos[i]);
  }

 private:
  int sinks_;
};

KVS_REGISTER_POLICY(
    razor, "razor",
    "RazorAttention: sinks + recent + one compensation token (needs a head profile)",
    [](const nlohmann::json& p, const std::string& where) -> std::unique_ptr<CachePolicy> {
      check_params(p, {"sinks"}, where);
      return std::make_unique<Razor>(
          static_cast<int>(param_number(p, "sinks", 4, 0, 1 << 20, where)));
    });

}  // namespace
}  // namespace kvs
