#pragma once
// CachePolicy: scores the slots of one (layer, KV head); higher means keep. A policy never
// selects or moves data: the cache manager keeps protected slots, then the top scores up to
// the head's budget. Each policy lives in its own file in cache/policies/ and registers
// itself there with KVS_REGISTER_POLICY.
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvs {

// What a policy needs the manager to provide in HeadScoreInput.
struct PolicyNeeds {
  bool keys = false;              // K of every slot, f32
  bool values = false;            // V of every slot, f32
  bool attn_accumulated = false;  // attention mass each slot received so far (h2o, vatp)
  bool attn_last_row = false;     // attention of the latest query, averaged over the group
  int attn_window = 0;            // attention from the last w queries (snapkv): side pass
  bool calibration = false;       // per-head data computed offline (qfilter directions)
  // Mean and covariance of the group's pre-RoPE queries at positions >= query_stats_skip,
  // rotated by RoPE averaged over the next query_stats_future positions (expected_attention).
  bool query_stats = false;
  int query_stats_skip = 0;
  int query_stats_future = 0;
  // The plan must name a head profile (duo, razor): the manager turns its retrieval heads into
  // `full` and this policy scores the others.
  bool head_profile = false;
};

struct HeadScoreInput {
  int layer = 0;
  int head = 0;  // KV head
  int n_layer = 0;
  int n_head_kv = 0;
  int group = 1;  // query heads per KV head
  int head_dim_k = 0;
  int head_dim_v = 0;
  int32_t len = 0;                         // slots to score
  const int32_t* pos = nullptr;            // [len] original positions
  const float* keys = nullptr;             // [len][head_dim_k] when needs().keys
  const float* values = nullptr;           // [len][head_dim_v] when needs().values
  const float* attn_acc = nullptr;         // [len] when needs().attn_accumulated
  const float* attn_last = nullptr;        // [len] when needs().attn_last_row
  const float* attn_last_layer = nullptr;  // [len] the same, averaged over every query head of
                                           // the layer (matched by position)
  const float* attn_window = nullptr;      // [len] mean attention of the window queries, averaged
                                           // over the group's query heads, when needs().attn_window
  const float* calibration = nullptr;      // [head_dim_k] per-head vector when needs().calibration
  // When needs().query_stats: the projected mean [group][head_dim_k] and covariance
  // [group][head_dim_k][head_dim_k] of the group's queries, and how many queries they count.
  const double* query_mean = nullptr;
  const double* query_cov = nullptr;
  int64_t n_query_stats = 0;
  float kq_scale = 1.0f;  // the model's attention scale (logits are kq_scale * <q, k>)
  int32_t sinks = 0;      // the plan's protected sinks: slots [0, sinks) are kept anyway
  int64_t n_seen = 0;     // tokens processed by the session so far
  uint64_t seed = 0;      // for randomized policies: deterministic per head
};

class CachePolicy {
 public:
  virtual ~CachePolicy() = default;
  virtual std::string_view name() const = 0;
  virtual PolicyNeeds needs() const = 0;
  // True for `full`: the manager never evicts from heads using it.
  virtual bool keeps_everything() const { return false; }
  // True for `razor`: when slots are evicted, the manager folds them into one compensation slot
  // per head holding the count-weighted mean of the dropped K and V (see CacheManager).
  virtual bool compensates() const { return false; }
  // out: [in.len] scores.
  virtual void score(const HeadScoreInput& in, std::span<float> out) const = 0;
};

// Parameters come from the plan ("params"); unknown keys are errors (throw kvs::Error naming
// the key). `where` names the plan key for messages, e.g. "layers.3.params".
using PolicyFactory = std::function<std::unique_ptr<CachePolicy>(const nlohmann::json& params,
                                                                 const std::string& where)>;

struct PolicyInfo {
  std::string name;
  std::string description;
  PolicyFactory make;
};

void register_policy(PolicyInfo info);
// Throws kvs::Error listing the registered policies when `name` is unknown.
const PolicyInfo& find_policy(std::string_view name, const std::string& where);
std::vector<const PolicyInfo*> policies();

struct PolicyRegistrar {
  explicit PolicyRegistrar(PolicyInfo info) { register_policy(std::move(info)); }
};

// Reads an optional number from params, checking its range; marks the key as known.
// Policies call check_params(params, {known keys}, where) to reject typos.
void check_params(const nlohmann::json& params, std::initializer_list<std::string_view> known,
                  const std::string& where);
double param_number(const nlohmann::json& params, std::string_view key, double def, double lo,
                    double hi, const std::string& where);

}  // namespace kvs

#define KVS_REGISTER_POLICY(ident, ...) \
  static ::kvs::PolicyRegistrar kvs_policy_registrar_##ident({__VA_ARGS__})
