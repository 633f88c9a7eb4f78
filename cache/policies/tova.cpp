// tova (Token Omission Via Attention): attention of the latest query, averaged over the
// query heads of the KV group.
#include "cache/policy.h"

namespace kvs {
namespace {

class Tova final : public CachePolicy {
 public:
  std::string_view name() const override { return "tova"; }
  PolicyNeeds needs() const override {
    PolicyNeeds n;
    n.attn_last_row = true;
    return n;
  }
  void score(const HeadScoreInput& in, std::span<float> out) const override {
    for (int32_t i = 0; i < in.len; ++i) out[i] = in.attn_last != nullptr ? in.attn_last[i] : 0.0f;
  }
};

KVS_REGISTER_POLICY(tova, "tova", "TOVA: attention of the latest query",
                    [](const nlohmann::json& p,
                       const std::string& where) -> std::unique_ptr<CachePolicy> {
                      check_params(p, {}, where);
                      return std::make_unique<Tova>();
                    });

}  // namespace
}  // namespace kvs
