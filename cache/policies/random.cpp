// random: uniform random scores (the lower bound every policy must beat), deterministic for
// the plan's seed, layer and head.
#include <random>

#include "cache/policy.h"

namespace kvs {
namespace {

class Random final : public CachePolicy {
 public:
  std::string_view name() const override { return "random"; }
  PolicyNeeds needs() const override { return {}; }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    std::mt19937_64 rng(in.seed ^ (static_cast<uint64_t>(in.n_seen) * 0x9E3779B97F4A7C15ull));
    std::uniform_real_distribution<float> u(0.0f, 1.0f);
    for (int32_t i = 0; i < in.len; ++i) out[i] = u(rng);
  }
};

KVS_REGISTER_POLICY(random, "random", "uniform random scores (lower bound)",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {}, where);
                      return std::make_unique<Random>();
                    });

}  // namespace
}  // namespace kvs
