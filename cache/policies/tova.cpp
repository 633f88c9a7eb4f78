// tova (Token Omission Via Attention): attention of the latest query, averaged over every
// query head of the layer (as kvpress's TOVAPress), so all heads of a layer agree.
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
    const float* row = in.attn_last_layer != nullptr ? in.attn_last_layer : in.attn_last;
    for (int32_t i = 0; i < in.len; ++i) out[i] = row != nullptr ? row[i] : 0.0f;
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
