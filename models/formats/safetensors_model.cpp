#include "models/formats/safetensors_model.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <numbers>
#include <optional>
#include <sstream>

#include "kernels/core/buffer.h"
#include "kernels/core/error.h"
#include "kernels/core/half.h"
#include "models/formats/safetensors_file.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

json read_json_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Error(path + ": cannot open");
  std::stringstream ss;
  ss << in.rdbuf();
  if (in.bad()) throw Error(path + ": read failed");
  try {
    return json::parse(ss.str());
  } catch (const json::exception& e) {
    throw Error(path + ": malformed JSON: " + e.what());
  }
}

// Typed access to one level of config.json; `prefix` names the level in errors
// ("text_config." for Gemma3ForConditionalGeneration). JSON null counts as absent, as HF
// treats it.
class Config {
 public:
  Config(const json& j, std::string path, std::string prefix)
      : j_(j), path_(std::move(path)), prefix_(std::move(prefix)) {}

  const json* find(std::string_view key) const {
    auto it = j_.find(key);
    if (it == j_.end() || it->is_null()) return nullptr;
    return &*it;
  }
  [[noreturn]] void fail(std::string_view key, std::string_view what) const {
    throw Error(path_ + ": key '" + prefix_ + std::string(key) + "' " + std::string(what));
  }
  int64_t get_int(std::string_view key) const {
    const json* v = find(key);
    if (v == nullptr) fail(key, "is required but missing");
    return as_int(key, *v);
  }
  int64_t get_int(std::string_view key, int64_t def) const {
    const json* v = find(key);
    return v == nullptr ? def : as_int(key, *v);
  }
  double get_float(std::string_view key, double def) const {
    const json* v = find(key);
    if (v == nullptr) return def;
    if (!v->is_number()) fail(key, "must be a number");
    return v->get<double>();
  }
  bool get_bool(std::string_view key, bool def) const {
    const json* v = find(key);
    if (v == nullptr) return def;
    if (!v->is_boolean()) fail(key, "must be true or false");
    return v->get<bool>();
  }
  const std::string& path() const { return path_; }
  const std::string& prefix() const { return prefix_; }

 private:
  int64_t as_int(std::string_view key, const json& v) const {
    if (v.is_number_integer()) {
      if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX))
        fail(key, "is out of range");
      return v.get<int64_t>();
    }
    // Some configs write integral values as floats (e.g. 8192.0).
    if (v.is_number_float()) {
      const double d = v.get<double>();
      if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 9e15)
        return static_cast<int64_t>(d);
    }
    fail(key, "must be an integer");
  }

  const json& j_;
  std::string path_;
  std::string prefix_;
};

struct ArchEntry {
  std::string_view hf;
  std::string_view gguf;
};
constexpr ArchEntry kArchs[] = {
    {"LlamaForCausalLM", "llama"},   {"MistralForCausalLM", "llama"},
    {"Qwen2ForCausalLM", "qwen2"},   {"Qwen3ForCausalLM", "qwen3"},
    {"Gemma3ForCausalLM", "gemma3"}, {"Gemma3ForConditionalGeneration", "gemma3"},
};

MetaValue u32(int64_t v) {
  return MetaValue::of_int(v, MetaType::U32);
}
MetaValue f32(double v) {
  return MetaValue::of_float(v, MetaType::F32);
}

float element_to_f32(DType t, const uint8_t* p, size_t i) {
  switch (t) {
    case DType::F32: {
      float f;
      std::memcpy(&f, p + 4 * i, 4);
      return f;
    }
    case DType::F16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return fp16_to_fp32(h);
    }
    case DType::BF16: {
      uint16_t h;
      std::memcpy(&h, p + 2 * i, 2);
      return bf16_to_fp32(h);
    }
    default:
      KVS_CHECK(false, "unexpected dtype");
  }
}

class SafetensorsModel final : public WeightSource {
 public:
  SafetensorsModel(const std::string& path, std::string dir)
      : WeightSource(path), dir_(std::move(dir)) {}

  std::string_view format() const override { return "safetensors"; }
  std::string hf_dir() const override { return dir_; }

  void load(const std::string& file_arg);

 private:
  void read_config();
  void set_rope_metadata(const Config& c);
  void set_swa_metadata(const Config& c);
  void add_hf_tensor(const SafetensorsFile& f, const SafetensorsTensor& t);
  std::optional<std::string> gguf_name(const std::string& hf, const std::string& file) const;
  void add_llama3_rope_freqs(const json& rs);
  void check_shapes() const;

  std::string dir_;
  std::string config_path_;
  std::string arch_;
  std::string hf_arch_;
  int64_t n_layer_ = 0;
  int64_t n_embd_ = 0;
  int64_t n_head_ = 0;
  int64_t head_dim_ = 0;
  int64_t n_vocab_ = 0;
  double rope_theta_ = 10000.0;
  bool tied_ = false;
  std::optional<json> llama3_scaling_;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<Buffer> owned_;  // materialized tensors (gemma3 1+w norms, rope_freqs)
};

void SafetensorsModel::read_config() {
  config_path_ = (fs::path(dir_) / "config.json").string();
  if (!fs::exists(config_path_))
    throw Error(config_path_ + ": missing (required next to the weights)");
  const json root = read_json_file(config_path_);
  if (!root.is_object()) throw Error(config_path_ + ": malformed config: not a JSON object");
  meta_.set_source(config_path_);

  const auto archs = root.find("architectures");
  if (archs == root.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string())
    throw Error(config_path_ + ": key 'architectures' is required (a list of class names)");
  hf_arch_ = (*archs)[0].get<std::string>();
  for (const auto& a : kArchs)
    if (a.hf == hf_arch_) arch_ = a.gguf;
  if (arch_.empty())
    throw Error(config_path_ + ": unsupported architecture '" + hf_arch_ +
                "' in 'architectures' (supported: Llama, Mistral, Qwen2, Qwen3, Gemma3)");

  const json* level = &root;
  std::string prefix;
  if (hf_arch_ == "Gemma3ForConditionalGeneration") {
    const auto tc = root.find("text_config");
    if (tc == root.end() || !tc->is_object())
      throw Error(config_path_ + ": key 'text_config' is required for " + hf_arch_);
    level = &*tc;
    prefix = "text_config.";
  }
  const Config c(*level, config_path_, prefix);
  const Config top(root, config_path_, "");
  const bool gemma = arch_ == "gemma3";
  const std::string& a = arch_;

  // Gemma3's text config relies on HF's class defaults (the 4B+ checkpoints list only a few
  // keys); the other architectures must spell out their dimensions.
  n_embd_ = c.get_int("hidden_size");
  n_layer_ = c.get_int("num_hidden_layers");
  const int64_t n_ff = c.get_int("intermediate_size");
  n_head_ = gemma ? c.get_int("num_attention_heads", 8) : c.get_int("num_attention_heads");
  const int64_t n_head_kv = c.get_int("num_key_value_heads", gemma ? 4 : n_head_);
  n_vocab_ = gemma ? c.get_int("vocab_size", 262208) : c.get_int("vocab_size");
  if (n_embd_ <= 0 || n_layer_ <= 0 || n_ff <= 0 || n_head_ <= 0 || n_head_kv <= 0 ||
      n_vocab_ <= 0 || n_head_ % n_head_kv != 0 || n_layer_ > 100000)
    throw Error(config_path_ +
                ": inconsistent dimensions (hidden_size, num_hidden_layers, "
                "intermediate_size, num_attention_heads, num_key_value_heads, vocab_size)");
  int64_t def_head_dim = n_embd_ / n_head_;
  if (gemma) def_head_dim = 256;
  if (arch_ == "qwen3") def_head_dim = 128;
  head_dim_ = c.get_int("head_dim", def_head_dim);
  if (head_dim_ <= 0 || head_dim_ % 2 != 0) c.fail("head_dim", "must be a positive even number");

  meta_.set("general.architecture", MetaValue::of_string(a));
  meta_.set("general.name", MetaValue::of_string(fs::path(dir_).filename().string()));
  meta_.set(a + ".embedding_length", u32(n_embd_));
  meta_.set(a + ".block_count", u32(n_layer_));
  meta_.set(a + ".feed_forward_length", u32(n_ff));
  meta_.set(a + ".attention.head_count", u32(n_head_));
  meta_.set(a + ".attention.head_count_kv", u32(n_head_kv));
  meta_.set(a + ".attention.key_length", u32(head_dim_));
  meta_.set(a + ".attention.value_length", u32(head_dim_));
  meta_.set(a + ".rope.dimension_count", u32(head_dim_));
  meta_.set(a + ".attention.layer_norm_rms_epsilon", f32(c.get_float("rms_norm_eps", 1e-6)));
  meta_.set(a + ".context_length",
            u32(c.get_int("max_position_embeddings",
                          gemma ? 131072 : (arch_ == "llama" ? 2048 : 32768))));
  meta_.set(a + ".vocab_size", u32(n_vocab_));
  if (const json* sc = c.find("final_logit_softcapping")) {
    if (!sc->is_number()) c.fail("final_logit_softcapping", "must be a number");
    meta_.set(a + ".final_logit_softcapping", f32(sc->get<double>()));
  }
  if (const json* sc = c.find("attn_logit_softcapping")) {
    if (!sc->is_number()) c.fail("attn_logit_softcapping", "must be a number");
    meta_.set(a + ".attn_logit_softcapping", f32(sc->get<double>()));
  }
  set_rope_metadata(c);
  if (gemma) {
    set_swa_metadata(c);
    // llama.cpp scales Q by 1/sqrt(n_embd/n_head) for the 62-layer 27B and 1/sqrt(head_dim)
    // otherwise; only a config that disagrees needs the explicit key.
    const double qpas = c.get_float("query_pre_attn_scalar", 256.0);
    const double implied =
        n_layer_ == 62 ? static_cast<double>(n_embd_) / n_head_ : static_cast<double>(head_dim_);
    if (qpas <= 0) c.fail("query_pre_attn_scalar", "must be positive");
    if (qpas != implied) meta_.set(a + ".attention.scale", f32(1.0 / std::sqrt(qpas)));
  }
  if (arch_ == "llama") meta_.set("kvsieve.rope_neox", MetaValue::of_bool(true));

  bool tied_default = gemma;
  tied_default = top.get_bool("tie_word_embeddings", tied_default);
  tied_ = c.get_bool("tie_word_embeddings", tied_default);
}

void SafetensorsModel::set_rope_metadata(const Config& c) {
  const std::string& a = arch_;
  const bool gemma = arch_ == "gemma3";
  // transformers v5 moved RoPE settings into `rope_parameters`, per layer type for Gemma3.
  const json* rp = c.find("rope_parameters");
  if (rp != nullptr && !rp->is_object()) c.fail("rope_parameters", "must be an object");
  const json* rp_full = rp;
  const json* rp_swa = nullptr;
  if (rp != nullptr && rp->contains("full_attention")) {
    rp_full = &(*rp)["full_attention"];
    if (rp->contains("sliding_attention")) rp_swa = &(*rp)["sliding_attention"];
  }
  auto theta_of = [&](const json* p, std::string_view what) -> std::optional<double> {
    if (p == nullptr || !p->is_object() || !p->contains("rope_theta")) return std::nullopt;
    const json& v = (*p)["rope_theta"];
    if (!v.is_number()) c.fail(what, "rope_theta must be a number");
    return v.get<double>();
  };
  const double def_theta = gemma ? 1e6 : 10000.0;
  rope_theta_ = c.get_float("rope_theta", theta_of(rp_full, "rope_parameters").value_or(def_theta));
  meta_.set(a + ".rope.freq_base", f32(rope_theta_));
  if (gemma)
    meta_.set(a + ".rope.freq_base_swa",
              f32(c.get_float("rope_local_base_freq",
                              theta_of(rp_swa, "rope_parameters").value_or(10000.0))));

  const json* rs = c.find("rope_scaling");
  std::string_view rs_key = "rope_scaling";
  if (rs == nullptr) {
    rs = rp_full;
    rs_key = "rope_parameters";
  }
  if (rs == nullptr) return;
  if (!rs->is_object()) c.fail(rs_key, "must be an object");
  std::string type;
  for (const char* k : {"rope_type", "type"}) {
    if (rs->contains(k) && (*rs)[k].is_string()) {
      type = (*rs)[k].get<std::string>();
      break;
    }
  }
  auto factor = [&]() {
    if (!rs->contains("factor") || !(*rs)["factor"].is_number() ||
        !((*rs)["factor"].get<double>() > 0))
      c.fail(rs_key, "needs a positive 'factor' for rope type '" + type + "'");
    return (*rs)["factor"].get<double>();
  };
  if (type.empty() || type == "default") return;
  if (type == "linear") {
    meta_.set(a + ".rope.scaling.type", MetaValue::of_string("linear"));
    meta_.set(a + ".rope.scaling.factor", f32(factor()));
  } else if (type == "yarn") {
    meta_.set(a + ".rope.scaling.type", MetaValue::of_string("yarn"));
    meta_.set(a + ".rope.scaling.factor", f32(factor()));
    if (rs->contains("original_max_position_embeddings") &&
        (*rs)["original_max_position_embeddings"].is_number_integer())
      meta_.set(a + ".rope.scaling.original_context_length",
                u32((*rs)["original_max_position_embeddings"].get<int64_t>()));
  } else if (type == "llama3" && arch_ == "llama") {
    factor();
    llama3_scaling_ = *rs;
  } else {
    c.fail(rs_key, "has unsupported rope type '" + type + "'");
  }
}

void SafetensorsModel::set_swa_metadata(const Config& c) {
  const std::string& a = arch_;
  meta_.set(a + ".attention.sliding_window", u32(c.get_int("sliding_window", 4096)));
  if (const json* lt = c.find("layer_types")) {
    if (!lt->is_array() || static_cast<int64_t>(lt->size()) != n_layer_)
      c.fail("layer_types", "must list one type per layer");
    std::vector<bool> swa;
    for (const auto& t : *lt) {
      if (t == "sliding_attention") {
        swa.push_back(true);
      } else if (t == "full_attention") {
        swa.push_back(false);
      } else {
        c.fail("layer_types", "has an unknown layer type " + t.dump());
      }
    }
    // Find the period p with layer il local iff il % p < p-1 (p = 1: all global).
    int64_t p = 0;
    for (int64_t il = 0; il < n_layer_; ++il) {
      if (!swa[il]) {
        p = il + 1;
        break;
      }
    }
    bool periodic = p > 0;
    for (int64_t il = 0; periodic && il < n_layer_; ++il) periodic = swa[il] == (il % p < p - 1);
    if (periodic) {
      meta_.set(a + ".attention.sliding_window_pattern", u32(p));
    } else {
      std::vector<int64_t> flags;
      for (bool b : swa) flags.push_back(b ? 1 : 0);
      meta_.set(a + ".attention.sliding_window_pattern",
                MetaValue::of_array(MetaArray::of_ints(flags, MetaType::Bool)));
    }
    return;
  }
  const int64_t p = c.get_int("sliding_window_pattern", 6);
  if (p < 0) c.fail("sliding_window_pattern", "must be non-negative");
  meta_.set(a + ".attention.sliding_window_pattern", u32(p));
}

std::optional<std::string> SafetensorsModel::gguf_name(const std::string& hf_in,
                                                       const std::string& file) const {
  auto starts = [](std::string_view s, std::string_view p) { return s.substr(0, p.size()) == p; };
  auto ends = [](std::string_view s, std::string_view p) {
    return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
  };
  std::string hf = hf_in;
  if (hf_arch_ == "Gemma3ForConditionalGeneration") {
    for (std::string_view skip : {"vision_tower.", "multi_modal_projector.", "model.vision_tower.",
                                  "model.multi_modal_projector."})
      if (starts(hf, skip)) return std::nullopt;
    // Older checkpoints nest the text model as language_model.model.*, newer ones as
    // model.language_model.*.
    if (starts(hf, "language_model.model."))
      hf = "model." + hf.substr(21);
    else if (starts(hf, "model.language_model."))
      hf = "model." + hf.substr(21);
    else if (starts(hf, "language_model.lm_head."))
      hf = hf.substr(15);
  }
  if (ends(hf, ".rotary_emb.inv_freq")) return std::nullopt;  // recomputed, never a weight
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") {
    if (tied_) return std::nullopt;
    return "output.weight";
  }
  if (hf == "lm_head.bias") return "output.bias";
  const bool gemma = arch_ == "gemma3";
  if (starts(hf, "model.layers.")) {
    const size_t p0 = 13;
    size_t p1 = p0;
    while (p1 < hf.size() && p1 - p0 < 7 && std::isdigit(static_cast<unsigned char>(hf[p1]))) ++p1;
    if (p1 > p0 && p1 < hf.size() && hf[p1] == '.') {
      const int64_t il = std::stoll(hf.substr(p0, p1 - p0));
      if (il >= n_layer_)
        throw Error(file + ": tensor '" + hf_in + "' has layer " + std::to_string(il) +
                    " but config.json says num_hidden_layers = " + std::to_string(n_layer_));
      std::string rest = hf.substr(p1 + 1);
      std::string suffix;
      for (std::string_view s : {".weight", ".bias"})
        if (ends(rest, s)) {
          suffix = s;
          rest.resize(rest.size() - s.size());
        }
      struct Map {
        std::string_view hf, gguf;
      };
      static constexpr Map kCommon[] = {
          {"input_layernorm", "attn_norm"},    {"self_attn.q_proj", "attn_q"},
          {"self_attn.k_proj", "attn_k"},      {"self_attn.v_proj", "attn_v"},
          {"self_attn.o_proj", "attn_output"}, {"self_attn.q_norm", "attn_q_norm"},
          {"self_attn.k_norm", "attn_k_norm"}, {"mlp.gate_proj", "ffn_gate"},
          {"mlp.up_proj", "ffn_up"},           {"mlp.down_proj", "ffn_down"},
      };
      std::string_view g;
      for (const auto& m : kCommon)
        if (m.hf == rest) g = m.gguf;
      if (rest == "post_attention_layernorm") g = gemma ? "post_attention_norm" : "ffn_norm";
      if (gemma && rest == "pre_feedforward_layernorm") g = "ffn_norm";
      if (gemma && rest == "post_feedforward_layernorm") g = "post_ffw_norm";
      if (!g.empty() && !suffix.empty())
        return "blk." + std::to_string(il) + "." + std::string(g) + suffix;
    }
  }
  throw Error(file + ": tensor '" + hf_in + "' has no known GGUF equivalent for " + hf_arch_);
}

void SafetensorsModel::add_hf_tensor(const SafetensorsFile& f, const SafetensorsTensor& t) {
  const std::optional<std::string> name = gguf_name(t.name, f.path());
  if (!name) return;
  const std::string where = f.path() + ": tensor '" + t.name + "'";
  if (!t.dtype)
    throw Error(where + ": dtype " + t.dtype_name + " is not supported (F32, F16, BF16 only)");
  if (t.shape.size() > 4)
    throw Error(where + ": rank " + std::to_string(t.shape.size()) + " exceeds 4");
  TensorInfo info;
  info.name = *name;
  info.dtype = *t.dtype;
  info.n_dims = std::max<int>(1, static_cast<int>(t.shape.size()));
  for (size_t i = 0; i < t.shape.size(); ++i) info.ne[i] = t.shape[t.shape.size() - 1 - i];
  info.data = t.data;
  info.nbytes = t.nbytes();
  info.file = f.path();
  info.file_offset = t.file_offset;

  const bool is_norm = name->size() >= 11 && name->substr(name->size() - 11) == "norm.weight";
  if (arch_ == "gemma3" && is_norm) {
    // HF Gemma computes x̂·(1+w); GGUF stores 1+w, so the runtime sees one convention.
    const size_t n = static_cast<size_t>(info.nelements());
    Buffer buf(std::max<size_t>(n, 1) * sizeof(float));
    float* dst = buf.as<float>();  // [n] F32
    for (size_t i = 0; i < n; ++i) dst[i] = 1.0f + element_to_f32(info.dtype, t.data, i);
    info.dtype = DType::F32;
    info.data = dst;
    info.nbytes = n * sizeof(float);
    info.file.clear();
    info.file_offset = 0;
    owned_.push_back(std::move(buf));
  }
  add_tensor(std::move(info));
}

// The GGUF converter bakes Llama-3 "llama3" scaling into per-frequency divisors; doing the
// same keeps HF and GGUF sources on one code path (float32 math, like the converter).
void SafetensorsModel::add_llama3_rope_freqs(const json& rs) {
  auto num = [&](const char* k, double def) {
    return rs.contains(k) && rs[k].is_number() ? rs[k].get<double>() : def;
  };
  const double factor = num("factor", 8.0);
  const double low = num("low_freq_factor", 1.0);
  const double high = num("high_freq_factor", 4.0);
  const double old_ctx = num("original_max_position_embeddings", 8192.0);
  if (!(high > low))
    throw Error(config_path_ + ": rope_scaling needs high_freq_factor > low_freq_factor");
  const std::vector<float> v =
      llama3_rope_freqs(rope_theta_, head_dim_, factor, low, high, old_ctx);
  const int64_t n = static_cast<int64_t>(v.size());
  Buffer buf(v.size() * sizeof(float));
  float* ff = buf.as<float>();  // [head_dim/2] divisors
  std::memcpy(ff, v.data(), v.size() * sizeof(float));
  TensorInfo info;
  info.name = "rope_freqs.weight";
  info.dtype = DType::F32;
  info.ne = {n, 1, 1, 1};
  info.n_dims = 1;
  info.data = ff;
  info.nbytes = static_cast<size_t>(n) * sizeof(float);
  owned_.push_back(std::move(buf));
  add_tensor(std::move(info));
}

void SafetensorsModel::check_shapes() const {
  const TensorInfo* emb = find_tensor("token_embd.weight");
  if (emb == nullptr)
    throw Error(dir_ +
                ": no embedding tensor (model.embed_tokens.weight) in the safetensors files");
  if (emb->n_dims != 2 || emb->ne[0] != n_embd_ || emb->ne[1] != n_vocab_)
    throw Error(emb->file + ": tensor 'model.embed_tokens.weight' has shape [" +
                std::to_string(emb->ne[1]) + ", " + std::to_string(emb->ne[0]) +
                "] but config.json says vocab_size " + std::to_string(n_vocab_) +
                " x hidden_size " + std::to_string(n_embd_));
}

void SafetensorsModel::load(const std::string& file_arg) {
  read_config();
  const fs::path dir(dir_);
  const std::string single = (dir / "model.safetensors").string();
  const std::string index_path = (dir / "model.safetensors.index.json").string();
  // Like transformers: a single model.safetensors wins over an index.
  std::string only;
  if (!file_arg.empty() && !fs::exists(index_path))
    only = file_arg;
  else if (fs::exists(single))
    only = single;
  else if (file_arg.empty() && !fs::exists(index_path))
    throw Error(dir_ + ": no model.safetensors or model.safetensors.index.json");

  if (!only.empty()) {
    files_.push_back(std::make_unique<SafetensorsFile>(only));
    for (const auto& t : files_.back()->tensors()) add_hf_tensor(*files_.back(), t);
  } else {
    const json idx = read_json_file(index_path);
    if (!idx.is_object() || !idx.contains("weight_map") || !idx["weight_map"].is_object())
      throw Error(index_path + ": key 'weight_map' is required (an object)");
    std::map<std::string, SafetensorsFile*> shards;
    for (const auto& [tensor, shard_v] : idx["weight_map"].items()) {
      if (!shard_v.is_string())
        throw Error(index_path + ": weight_map entry '" + tensor + "' must be a file name");
      const std::string shard = shard_v.get<std::string>();
      // Shards are plain names inside the directory; anything else could escape it.
      if (shard.empty() || shard.find('/') != std::string::npos ||
          shard.find('\\') != std::string::npos || shard == "." || shard == "..")
        throw Error(index_path + ": weight_map entry '" + tensor + "' names an invalid shard '" +
                    shard + "'");
      auto it = shards.find(shard);
      if (it == shards.end()) {
        const std::string sp = (dir / shard).string();
        if (!fs::exists(sp))
          throw Error(index_path + ": shard '" + shard + "' (for tensor '" + tensor +
                      "') does not exist");
        files_.push_back(std::make_unique<SafetensorsFile>(sp));
        it = shards.emplace(shard, files_.back().get()).first;
      }
      const SafetensorsTensor* t = it->second->find(tensor);
      if (t == nullptr)
        throw Error(index_path + ": tensor '" + tensor + "' is not in its shard '" + shard + "'");
      add_hf_tensor(*it->second, *t);
    }
  }
  if (llama3_scaling_) add_llama3_rope_freqs(*llama3_scaling_);
  check_shapes();
}

}  // namespace

std::vector<float> llama3_rope_freqs(double theta, int64_t head_dim, double factor,
                                     double low_freq_factor, double high_freq_factor,
                                     double original_context) {
  KVS_CHECK(head_dim > 0 && head_dim % 2 == 0 && high_freq_factor > low_freq_factor);
  const float fac = static_cast<float>(factor);
  const float low = static_cast<float>(low_freq_factor);
  const float high = static_cast<float>(high_freq_factor);
  const float old_ctx = static_cast<float>(original_context);
  const float low_wavelen = old_ctx / low;
  const float high_wavelen = old_ctx / high;
  std::vector<float> ff(static_cast<size_t>(head_dim / 2));  // [head_dim/2] divisors
  for (size_t i = 0; i < ff.size(); ++i) {
    const float freq = 1.0f / std::pow(static_cast<float>(theta),
                                       static_cast<float>(2 * i) / static_cast<float>(head_dim));
    const float wavelen = 2.0f * std::numbers::pi_v<float> / freq;
    if (wavelen < high_wavelen) {
      ff[i] = 1.0f;
    } else if (wavelen > low_wavelen) {
      ff[i] = fac;
    } else {
      const float smooth = (old_ctx / wavelen - low) / (high - low);
      ff[i] = 1.0f / ((1.0f - smooth) / fac + smooth);
    }
  }
  return ff;
}

std::unique_ptr<WeightSource> open_safetensors_model(const std::string& path) {
  std::error_code ec;
  const bool is_dir = fs::is_directory(path, ec);
  if (!is_dir && !fs::exists(path, ec)) throw Error(path + ": no such file or directory");
  std::string dir = is_dir ? path : fs::path(path).parent_path().string();
  if (dir.empty()) dir = ".";
  auto m = std::make_unique<SafetensorsModel>(path, dir);
  m->load(is_dir ? std::string() : path);
  return m;
}

}  // namespace kvs
