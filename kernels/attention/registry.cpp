#include <algorithm>

#include "kernels/attention/backend.h"
#include "kernels/core/error.h"

namespace kvs {

std::string check_head_layout(const AttentionShape& shape, const KVView& kv) {
  if (shape.n_head_kv <= 0 || shape.n_head % shape.n_head_kv != 0)
    return "query heads must be a multiple of KV heads";
  if (static_cast<int>(kv.heads.size()) != shape.n_head_kv)
    return "KV view has the wrong head count";
  return {};
}
namespace {

std::vector<std::unique_ptr<AttentionBackend>>& registry() {
  static std::vector<std::unique_ptr<AttentionBackend>> r;
  return r;
}

}  // namespace

void register_attention_backend(std::unique_ptr<AttentionBackend> backend) {
  KVS_CHECK(backend != nullptr);
  for (const auto& b : registry())
    KVS_CHECK(b->name() != backend->name(), "attention backend registered twice");
  registry().push_back(std::move(backend));
}

const AttentionBackend& find_attention_backend(std::string_view name) {
  std::string names;
  for (const auto& b : registry()) {
    if (b->name() == name) return *b;
    names += (names.empty() ? "" : ", ") + std::string(b->name());
  }
  throw Error("unknown attention backend '" + std::string(name) + "' (available: " + names + ")");
}

std::vector<const AttentionBackend*> attention_backends() {
  std::vector<const AttentionBackend*> out;
  for (const auto& b : registry()) out.push_back(b.get());
  std::sort(out.begin(), out.end(), [](auto* a, auto* b) { return a->name() < b->name(); });
  return out;
}

}  // namespace kvs
