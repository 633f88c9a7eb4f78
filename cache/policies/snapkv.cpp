// snapkv: mean attention from the last `window` prompt queries, smoothed by a 1-D average
// pool; the window's own tokens are always kept.
#include <algorithm>
#include <limits>
#include <vector>

#include "cache/policy.h"
#include "kernels/core/error.h"

namespace kvs {
namespace {

class SnapKV final : public CachePolicy {
 public:
  SnapKV(int window, int kernel) : window_(window), kernel_(kernel) {}
  std::string_view name() const override { return "snapkv"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.attn_window = window_;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    const int32_t n = in.len;
    if (n == 0) return;
    const int32_t newest = *std::max_element(in.pos, in.pos + n);
    // Only the slots before the observation window are pooled (the window itself is kept),
    // with zero padding at the edges and the full kernel as divisor (count_include_pad).
    int32_t n_pool = 0;
    for (int32_t i = 0; i < n; ++i)
      if (newest - in.pos[i] >= window_) ++n_pool;
    const int half = kernel_ / 2;
    for (int32_t i = 0; i < n; ++i) {
      if (newest - in.pos[i] < window_) {
        out[i] = std::numeric_limits<float>::max();
        continue;
      }
      double s = 0.0;
      for (int j = -half; j <= half; ++j)
        if (i + j >= 0 && i + j < n_pool && in.attn_window != nullptr) s += in.attn_window[i + j];
      out[i] = static_cast<float>(s / kernel_);
    }
  }

 private:
  int window_;
  int kernel_;
};

KVS_REGISTER_POLICY(snapkv, "snapkv", "SnapKV: pooled attention of the last window of queries",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {"window", "kernel"}, where);
                      const int window =
                          static_cast<int>(param_number(p, "window", 32, 1, 4096, where));
                      const int kernel =
                          static_cast<int>(param_number(p, "kernel", 5, 1, 255, where));
                      if (kernel % 2 == 0) throw Error(where + ".kernel: must be odd");
                      return std::make_unique<SnapKV>(window, kernel);
                    });

}  // namespace
}  // namespace kvs
