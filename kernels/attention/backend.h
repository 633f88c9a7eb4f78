#pragma once
// Attention backends behind one interface, picked by name (`--attention NAME`). The mask is
// causal by original position: a query at position p attends to slots whose position is <= p
// (and within the sliding window when one is set), so prefill and decode are the same call.
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/attention/kv_view.h"
#include "kernels/core/thread_pool.h"

namespace kvs {

class AttentionBackend {
 public:
  virtual ~AttentionBackend() = default;
  virtual std::string_view name() const = 0;
  virtual std::string_view description() const = 0;
  // Empty when this backend can run the call; otherwise why not.
  virtual std::string supports(const AttentionShape& shape, const KVView& kv) const = 0;
  // q: [T, n_head, head_dim_k] f32, q_pos: [T], out: [T, n_head, head_dim_v] f32.
  virtual void attend(const AttentionShape& shape, const float* q, const int32_t* q_pos, int64_t T,
                      const KVView& kv, float* out, ThreadPool& pool) const = 0;
};

// The checks every backend shares: GQA head counts and a view with one entry per KV head.
// Empty when they hold, else why not.
std::string check_head_layout(const AttentionShape& shape, const KVView& kv);

void register_attention_backend(std::unique_ptr<AttentionBackend> backend);
// Throws kvs::Error listing the registered names when `name` is unknown.
const AttentionBackend& find_attention_backend(std::string_view name);
std::vector<const AttentionBackend*> attention_backends();

struct AttentionBackendRegistrar {
  explicit AttentionBackendRegistrar(std::unique_ptr<AttentionBackend> b) {
    register_attention_backend(std::move(b));
  }
};

}  // namespace kvs
