// h2o (Heavy-Hitter Oracle): attention mass each token has received so far, summed over the
// group's query heads and every query (prompt, then each decode step). Pair it with a
// protected recent window in the plan ("recent"), as the paper splits heavy/recent.
#include <algorithm>

#include "cache/policy.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

class H2O final : public CachePolicy {
 public:
  explicit H2O(bool mean) : mean_(mean) {}
  std::string_view name() const override { return "h2o"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.attn_accumulated = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    // "mean" divides by the number of queries that could attend to the slot (kvpress's
    // ObservedAttentionPress); "sum" is the paper's accumulated mass.
    for (int32_t i = 0; i < in.len; ++i)
      out[i] =
          mean_ ? in.attn_acc[i] / static_cast<float>(std::max<int64_t>(1, in.n_seen - in.pos[i]))
                : in.attn_acc[i];
  }

 private:
  bool mean_;
};

KVS_REGISTER_POLICY(h2o, "h2o", "Heavy-Hitter Oracle: accumulated attention mass",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {"normalize"}, where);
                      bool mean = false;
                      if (p.contains("normalize")) {
                        if (p["normalize"] == "mean")
                          mean = true;
                        else if (p["normalize"] != "sum")
                          throw Error(where + ".normalize: must be \"sum\" or \"mean\"");
                      }
                      return std::make_unique<H2O>(mean);
                    });

}  // namespace
}  // namespace kvs
