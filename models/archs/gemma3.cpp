// gemma3: sliding-window local layers with every Nth layer global, per-layer RoPE base,
// QK-norm, pre- and post-norms, GELU-tanh gated FFN, embeddings scaled by sqrt(n_embd).
#include <cmath>

#include "models/formats/metadata.h"
#include "models/model/arch.h"

namespace kvs {
namespace {

void configure_gemma3(const MetaMap& meta, ModelConfig& c) {
  c.rope_neox = true;
  c.activation = Activation::GeluTanh;
  c.qk_norm = true;
  c.post_norms = true;
  c.embed_scale = true;
  // Q is scaled before attention; the 27B (62 layers) uses n_embd/n_head instead of head_dim.
  const double qd = c.n_layer == 62 ? static_cast<double>(c.n_embd) / c.n_head : c.head_dim_k;
  c.q_scale = static_cast<float>(1.0 / std::sqrt(qd));
  c.kq_scale = 1.0f;
  c.sliding_window = static_cast<int>(meta.get_int("gemma3.attention.sliding_window", 0));
  if (c.sliding_window < 0) meta.fail("gemma3.attention.sliding_window", "must be >= 0");
  c.layer_is_swa.assign(c.n_layer, false);
  if (c.sliding_window > 0) {
    const std::string key = "gemma3.attention.sliding_window_pattern";
    const MetaValue* pv = meta.find(key);
    if (pv != nullptr && pv->type == MetaType::Array) {
      const MetaArray* arr = meta.find_array(key);
      const std::vector<int64_t> ints = arr->ints();
      if (static_cast<int>(ints.size()) != c.n_layer)
        meta.fail(key, "has " + std::to_string(arr->size()) + " entries, expected one per layer (" +
                           std::to_string(c.n_layer) + ")");
      for (int il = 0; il < c.n_layer; ++il) c.layer_is_swa[il] = ints[il] != 0;
    } else {
      const int64_t pattern = meta.get_int(key, 6);
      if (pattern < 1 || pattern > 1024) meta.fail(key, "must be in [1, 1024]");
      // Layer il is local unless it is the last of each group of `pattern` layers.
      for (int il = 0; il < c.n_layer; ++il) c.layer_is_swa[il] = il % pattern < pattern - 1;
    }
  }
}

const ArchRegistrar kGemma3({"gemma3", configure_gemma3});

}  // namespace
}  // namespace kvs
