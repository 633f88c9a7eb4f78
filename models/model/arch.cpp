#include "models/model/arch.h"

#include <algorithm>
#include <cmath>

#include "kernels/core/error.h"
#include "models/formats/metadata.h"

namespace kvs {
namespace {

std::vector<ArchDef>& registry() {
  static std::vector<ArchDef> r;
  return r;
}

// A per-layer array must be uniform: kvsieve does not run models whose layers differ in width.
int64_t uniform_int(const MetaMap& meta, const std::string& key, int64_t def, bool required) {
  const MetaValue* v = meta.find(key);
  if (v != nullptr && v->type == MetaType::Array) {
    const MetaArray* arr = meta.find_array(key);
    const std::vector<int64_t> ints = arr->ints();
    if (ints.empty()) meta.fail(key, "is an empty or non-integer array");
    for (int64_t v : ints)
      if (v != ints[0]) meta.fail(key, "varies per layer, which kvsieve does not support");
    return ints[0];
  }
  return required ? meta.get_int(key) : meta.get_int(key, def);
}

void check_range(const MetaMap& meta, const std::string& key, int64_t v, int64_t lo, int64_t hi) {
  if (v < lo || v > hi)
    meta.fail(key, "= " + std::to_string(v) + " is outside [" + std::to_string(lo) + ", " +
                       std::to_string(hi) + "]");
}

}  // namespace

void register_arch(ArchDef def) {
  for (const auto& a : registry()) KVS_CHECK(a.name != def.name, "architecture registered twice");
  registry().push_back(std::move(def));
}

const ArchDef& find_arch(std::string_view name, const std::string& source) {
  for (const auto& a : registry())
    if (a.name == name) return a;
  std::string names;
  for (const auto& n : arch_names()) names += (names.empty() ? "" : ", ") + n;
  throw Error(source + ": unsupported architecture '" + std::string(name) +
              "' (general.architecture; supported: " + names + ")");
}

std::vector<std::string> arch_names() {
  std::vector<std::string> out;
  for (const auto& a : registry()) out.push_back(a.name);
  std::sort(out.begin(), out.end());
  return out;
}

ModelConfig read_model_config(const MetaMap& meta) {
  ModelConfig c;
  c.arch = meta.get_string("general.architecture");
  const ArchDef& def = find_arch(c.arch, meta.source());
  c.name = meta.get_string("general.name", c.arch);
  const std::string a = c.arch + ".";

  const int64_t n_embd = meta.get_int(a + "embedding_length");
  check_range(meta, a + "embedding_length", n_embd, 1, 1 << 16);
  const int64_t n_layer = meta.get_int(a + "block_count");
  check_range(meta, a + "block_count", n_layer, 1, 512);
  const int64_t n_head = uniform_int(meta, a + "attention.head_count", 0, true);
  check_range(meta, a + "attention.head_count", n_head, 1, 1024);
  const int64_t n_head_kv = uniform_int(meta, a + "attention.head_count_kv", n_head, false);
  check_range(meta, a + "attention.head_count_kv", n_head_kv, 1, n_head);
  if (n_head % n_head_kv != 0)
    meta.fail(a + "attention.head_count_kv", "= " + std::to_string(n_head_kv) +
                                                 " does not divide the head count " +
                                                 std::to_string(n_head));
  const bool has_key_len = meta.has(a + "attention.key_length");
  if (!has_key_len && n_embd % n_head != 0)
    meta.fail(a + "attention.head_count", "= " + std::to_string(n_head) +
                                              " does not divide the embedding width " +
                                              std::to_string(n_embd));
  const int64_t hd_k = meta.get_int(a + "attention.key_length", n_embd / n_head);
  check_range(meta, a + "attention.key_length", hd_k, 1, 1024);
  const int64_t hd_v = meta.get_int(a + "attention.value_length", hd_k);
  check_range(meta, a + "attention.value_length", hd_v, 1, 1024);
  const int64_t n_ff = uniform_int(meta, a + "feed_forward_length", 0, true);
  check_range(meta, a + "feed_forward_length", n_ff, 1, 1 << 20);
  const int64_t n_rot = meta.get_int(a + "rope.dimension_count", hd_k);
  check_range(meta, a + "rope.dimension_count", n_rot, 0, hd_k);
  if (n_rot % 2 != 0) meta.fail(a + "rope.dimension_count", "must be even");

  c.n_embd = static_cast<int>(n_embd);
  c.n_layer = static_cast<int>(n_layer);
  c.n_head = static_cast<int>(n_head);
  c.n_head_kv = static_cast<int>(n_head_kv);
  c.head_dim_k = static_cast<int>(hd_k);
  c.head_dim_v = static_cast<int>(hd_v);
  c.n_ff = static_cast<int>(n_ff);
  c.n_rot = static_cast<int>(n_rot);
  c.n_ctx_train =
      static_cast<int>(std::clamp<int64_t>(meta.get_int(a + "context_length", 2048), 1, 1 << 24));
  c.norm_eps = static_cast<float>(meta.get_float(a + "attention.layer_norm_rms_epsilon", 1e-5));
  if (!(c.norm_eps > 0.0f && c.norm_eps < 1.0f))
    meta.fail(a + "attention.layer_norm_rms_epsilon", "must be in (0, 1)");
  c.rope_base = static_cast<float>(meta.get_float(a + "rope.freq_base", 10000.0));
  if (!(c.rope_base > 1.0f)) meta.fail(a + "rope.freq_base", "must be > 1");
  c.rope_base_swa = static_cast<float>(meta.get_float(a + "rope.freq_base_swa", 10000.0));

  const std::string scaling = meta.get_string(a + "rope.scaling.type", "none");
  double factor =
      meta.get_float(a + "rope.scaling.factor", meta.get_float(a + "rope.scale_linear", 1.0));
  if (scaling == "linear" || (scaling == "none" && factor != 1.0)) {
    if (!(factor >= 1.0 && factor <= 1024.0))
      meta.fail(a + "rope.scaling.factor", "must be in [1, 1024]");
    c.rope_freq_scale = static_cast<float>(1.0 / factor);
  } else if (scaling != "none") {
    meta.fail(a + "rope.scaling.type", "= '" + scaling + "' is not supported (none, linear)");
  }

  c.kq_scale = static_cast<float>(
      meta.get_float(a + "attention.scale", 1.0 / std::sqrt(static_cast<double>(hd_k))));
  c.final_softcap = static_cast<float>(meta.get_float(a + "final_logit_softcapping", 0.0));
  c.attn_softcap = static_cast<float>(meta.get_float(a + "attn_logit_softcapping", 0.0));
  if (const MetaArray* toks = meta.find_array("tokenizer.ggml.tokens"))
    c.n_vocab = static_cast<int>(toks->size());
  c.n_vocab = static_cast<int>(meta.get_int(a + "vocab_size", c.n_vocab));

  def.configure(meta, c);
  c.rope_neox = c.rope_neox || meta.get_bool("kvsieve.rope_neox", false);
  if (c.layer_is_swa.empty()) c.layer_is_swa.assign(c.n_layer, false);
  return c;
}

}  // namespace kvs
