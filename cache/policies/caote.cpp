// caote (CAOTE, Goel et al. 2025, "CAOTE: KV Caching through Attention Output Error based Token
// Eviction"): evicting token i from an attention with weights alpha and output
// o = sum_j alpha_j v_j renormalizes the rest, o' = (o - alpha_i v_i) / (1 - alpha_i), which moves
// the output by ||o - o'||_2 = alpha_i / (1 - alpha_i) ||o - v_i||_2: the score. CAOTE wraps an
// attention-based scorer; here alpha comes from the manager's statistics: "base": "last_row"
// (default, the latest query as TOVA) or "window" (the mean attention of the last `window`
// queries as SnapKV, o then being their mean output). alpha is the group's average, so o is the
// output of that averaged attention, not of each query head.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "cache/policy.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

class Caote final : public CachePolicy {
 public:
  explicit Caote(int window) : window_(window) {}
  std::string_view name() const override { return "caote"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.values = true;
    if (window_ > 0)
      n.attn_window = window_;
    else
      n.attn_last_row = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    const float* alpha = window_ > 0 ? in.attn_window : in.attn_last;
    const int dv = in.head_dim_v;
    if (alpha == nullptr || in.values == nullptr) {
      std::fill(out.begin(), out.end(), 0.0f);
      return;
    }
    std::vector<double> o(dv, 0.0);
    for (int32_t i = 0; i < in.len; ++i)
      for (int c = 0; c < dv; ++c) o[c] += alpha[i] * in.values[static_cast<size_t>(i) * dv + c];
    for (int32_t i = 0; i < in.len; ++i) {
      double ss = 0.0;
      for (int c = 0; c < dv; ++c) {
        const double e = o[c] - in.values[static_cast<size_t>(i) * dv + c];
        ss += e * e;
      }
      // alpha = 1 would make the rest empty: cap it so the score stays finite and largest.
      const double a = std::clamp<double>(alpha[i], 0.0, 1.0 - 1e-6);
      out[i] = static_cast<float>(a / (1.0 - a) * std::sqrt(ss));
    }
  }

 private:
  int window_;  // 0: last row
};

KVS_REGISTER_POLICY(
    caote, "caote", "CAOTE: attention output error of evicting each token",
    [](const nlohmann::json& p, const std::string& where) -> std::unique_ptr<CachePolicy> {
      check_params(p, {"base", "window"}, where);
      std::string base = "last_row";
      if (p.is_object() && p.contains("base")) {
        if (!p["base"].is_string())
          throw Error(where + ".base: must be \"last_row\" or \"window\"");
        base = p["base"].get<std::string>();
      }
      if (base != "last_row" && base != "window")
        throw Error(where + ".base: '" + base + "' is not \"last_row\" or \"window\"");
      if (base == "last_row" && p.is_object() && p.contains("window"))
        throw Error(where + ".window: only used with \"base\": \"window\"");
      const int window =
          base == "window" ? static_cast<int>(param_number(p, "window", 32, 1, 4096, where)) : 0;
      return std::make_unique<Caote>(window);
    });

}  // namespace
}  // namespace kvs
