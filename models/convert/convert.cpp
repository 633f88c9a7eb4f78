#include "models/convert/convert.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "kernels/core/error.h"
#include "kernels/core/half.h"
#include "kernels/core/quant.h"
#include "models/formats/safetensors_file.h"
#include "models/formats/safetensors_model.h"
#include "models/formats/safetensors_writer.h"
#include "models/formats/weight_source.h"
#include "models/tokenizers/tokenizer_export.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;
using ojson = nlohmann::ordered_json;

constexpr const char* kMarkerKey = "kvsieve.converted_from";
// Tokenizer files a previous run may have left; removed so a stale one never shadows the
// new tokenizer (e.g. tokenizer.model from an SPM model next to a new tokenizer.json).
constexpr const char* kStaleTokenizerFiles[] = {"tokenizer.json", "tokenizer.model",
                                                "tokenizer_config.json", "special_tokens_map.json",
                                                "added_tokens.json"};

// GGUF stores f32 hparams; 9.999999747e-06 should reach config.json as 1e-05, the shortest
// decimal that reads back as the same f32.
double clean_f32(double v) {
  const float f = static_cast<float>(v);
  if (!std::isfinite(f)) return v;
  char buf[64];
  for (int digits = 1; digits <= 9; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, static_cast<double>(f));
    const double d = std::strtod(buf, nullptr);
    if (static_cast<float>(d) == f) return d;
  }
  return static_cast<double>(f);
}

struct Hparams {
  std::string arch;
  int64_t n_embd = 0, n_layer = 0, n_ff = 0, n_head = 0, n_head_kv = 0, head_dim = 0;
  int64_t n_vocab = 0, n_ctx = 0;
  double eps = 1e-6, rope_theta = 10000.0;
  bool tied = true;
  bool attn_bias = false;
};

// MetaMap::find_array throws for a scalar; these keys may be either.
const MetaArray* array_or_null(const MetaMap& m, const std::string& key) {
  const MetaValue* v = m.find(key);
  return v != nullptr && v->type == MetaType::Array ? m.find_array(key) : nullptr;
}

// A per-layer array must be uniform: HF configs hold one value.
int64_t get_uniform_int(const MetaMap& m, const std::string& key, std::optional<int64_t> def) {
  if (const MetaArray* a = array_or_null(m, key)) {
    const std::vector<int64_t> ints = a->ints();
    if (ints.empty()) m.fail(key, "is an empty array");
    for (int64_t v : ints)
      if (v != ints[0]) m.fail(key, "varies per layer, which HF config.json cannot express");
    return ints[0];
  }
  return def ? m.get_int(key, *def) : m.get_int(key);
}

// GGUF -> HF tensor name; nullopt when the tensor has no HF counterpart (handled elsewhere).
std::optional<std::string> hf_name(const std::string& g, const std::string& arch, int64_t n_layer,
                                   const std::string& file) {
  if (g == "token_embd.weight") return "model.embed_tokens.weight";
  if (g == "output_norm.weight") return "model.norm.weight";
  if (g == "output.weight") return "lm_head.weight";
  if (g == "output.bias") return "lm_head.bias";
  if (g == "rope_freqs.weight") return std::nullopt;
  const bool gemma = arch == "gemma3";
  if (g.rfind("blk.", 0) == 0) {
    const size_t dot = g.find('.', 4);
    if (dot != std::string::npos && dot > 4 && dot - 4 <= 6 &&
        std::all_of(g.begin() + 4, g.begin() + static_cast<std::ptrdiff_t>(dot),
                    [](char c) { return c >= '0' && c <= '9'; })) {
      const int64_t il = std::stoll(g.substr(4, dot - 4));
      std::string rest = g.substr(dot + 1);
      std::string suffix;
      for (const char* s : {".weight", ".bias"}) {
        const size_t n = std::strlen(s);
        if (rest.size() > n && rest.compare(rest.size() - n, n, s) == 0) {
          suffix = s;
          rest.resize(rest.size() - n);
        }
      }
      struct Map {
        const char* gguf;
        const char* hf;
      };
      static constexpr Map kCommon[] = {
          {"attn_norm", "input_layernorm"},    {"attn_q", "self_attn.q_proj"},
          {"attn_k", "self_attn.k_proj"},      {"attn_v", "self_attn.v_proj"},
          {"attn_output", "self_attn.o_proj"}, {"attn_q_norm", "self_attn.q_norm"},
          {"attn_k_norm", "self_attn.k_norm"}, {"ffn_gate", "mlp.gate_proj"},
          {"ffn_up", "mlp.up_proj"},           {"ffn_down", "mlp.down_proj"},
      };
      std::string h;
      for (const auto& m : kCommon)
        if (rest == m.gguf) h = m.hf;
      if (rest == "ffn_norm") h = gemma ? "pre_feedforward_layernorm" : "post_attention_layernorm";
      if (gemma && rest == "post_attention_norm") h = "post_attention_layernorm";
      if (gemma && rest == "post_ffw_norm") h = "post_feedforward_layernorm";
      if (!h.empty() && !suffix.empty() && il < n_layer)
        return "model.layers." + std::to_string(il) + "." + h + suffix;
    }
  }
  throw Error(file + ": tensor '" + g + "' has no HF equivalent for architecture " + arch);
}

Hparams read_hparams(const WeightSource& ws) {
  const MetaMap& m = ws.metadata();
  Hparams h;
  h.arch = m.get_string("general.architecture");
  const std::string& a = h.arch;
  if (a != "llama" && a != "qwen2" && a != "qwen3" && a != "gemma3")
    m.fail("general.architecture", "is '" + a + "'; convert supports llama, qwen2, qwen3, gemma3");
  h.n_embd = m.get_int(a + ".embedding_length");
  h.n_layer = m.get_int(a + ".block_count");
  h.n_ff = get_uniform_int(m, a + ".feed_forward_length", std::nullopt);
  h.n_head = get_uniform_int(m, a + ".attention.head_count", std::nullopt);
  h.n_head_kv = get_uniform_int(m, a + ".attention.head_count_kv", h.n_head);
  if (h.n_embd <= 0 || h.n_layer <= 0 || h.n_ff <= 0 || h.n_head <= 0 || h.n_head_kv <= 0)
    m.fail(a + ".embedding_length", "or another dimension is not positive");
  h.head_dim = m.get_int(a + ".attention.key_length", h.n_embd / h.n_head);
  if (m.get_int(a + ".attention.value_length", h.head_dim) != h.head_dim)
    m.fail(a + ".attention.value_length", "differs from key_length; HF has one head_dim");
  if (m.get_int(a + ".rope.dimension_count", h.head_dim) != h.head_dim)
    m.fail(a + ".rope.dimension_count", "partial rotary dimensions are not supported");
  h.eps = clean_f32(m.get_float(a + ".attention.layer_norm_rms_epsilon", 1e-6));
  h.rope_theta = clean_f32(m.get_float(a + ".rope.freq_base", 10000.0));
  h.n_ctx = m.get_int(a + ".context_length", 2048);
  const TensorInfo& emb = ws.tensor("token_embd.weight");
  if (emb.n_dims != 2 || emb.ne[0] != h.n_embd)
    throw Error(ws.path() + ": tensor 'token_embd.weight' does not have n_embd columns");
  h.n_vocab = emb.ne[1];
  h.tied = ws.find_tensor("output.weight") == nullptr;
  h.attn_bias = ws.find_tensor("blk.0.attn_q.bias") != nullptr;
  return h;
}

std::string torch_dtype(DType t) {
  switch (t) {
    case DType::F32:
      return "float32";
    case DType::F16:
      return "float16";
    default:
      return "bfloat16";
  }
}

// Fits HF "llama3" rope_scaling parameters to a GGUF rope_freqs tensor: the converter
// generated it from them, and HF can only express it that way.
ojson llama3_scaling_from(const WeightSource& ws, const TensorInfo& t, const Hparams& h) {
  if (t.dtype != DType::F32 || t.n_dims != 1 || t.ne[0] != h.head_dim / 2)
    throw Error(ws.path() + ": tensor 'rope_freqs.weight' must be F32 [head_dim/2]");
  const float* ff = static_cast<const float*>(t.data);  // [head_dim/2]
  const double factor = ff[t.ne[0] - 1];
  for (double low : {1.0, 2.0})
    for (double high : {4.0, 8.0})
      for (double ctx : {8192.0, 4096.0, 16384.0, 32768.0}) {
        const std::vector<float> g =
            llama3_rope_freqs(h.rope_theta, h.head_dim, factor, low, high, ctx);
        bool same = true;
        for (size_t i = 0; i < g.size() && same; ++i)
          same = std::fabs(g[i] - ff[i]) <= 1e-5f * std::max(1.0f, std::fabs(ff[i]));
        if (same)
          return ojson{{"factor", clean_f32(factor)},
                       {"high_freq_factor", high},
                       {"low_freq_factor", low},
                       {"original_max_position_embeddings", static_cast<int64_t>(ctx)},
                       {"rope_type", "llama3"}};
      }
  throw Error(ws.path() +
              ": tensor 'rope_freqs.weight' does not match Llama-3 rope scaling; "
              "HF config.json cannot express it");
}

ojson rope_scaling_json(const WeightSource& ws, const Hparams& h) {
  const MetaMap& m = ws.metadata();
  const std::string& a = h.arch;
  if (const TensorInfo* rf = ws.find_tensor("rope_freqs.weight")) {
    if (a != "llama")
      throw Error(ws.path() + ": tensor 'rope_freqs.weight' is only supported for llama");
    return llama3_scaling_from(ws, *rf, h);
  }
  std::string type = m.get_string(a + ".rope.scaling.type", "");
  double factor = m.get_float(a + ".rope.scaling.factor", 0.0);
  if (factor == 0.0 && m.has(a + ".rope.scale_linear")) {
    factor = m.get_float(a + ".rope.scale_linear");
    if (type.empty()) type = "linear";
  }
  if (type.empty() && factor != 0.0) type = "linear";  // llama.cpp's default type
  if (type.empty() || type == "none" || (type == "linear" && factor == 1.0)) return nullptr;
  if (!(factor > 0)) m.fail(a + ".rope.scaling.factor", "must be positive");
  if (type == "linear") return ojson{{"factor", clean_f32(factor)}, {"rope_type", "linear"}};
  if (type == "yarn") {
    ojson j{{"factor", clean_f32(factor)}, {"rope_type", "yarn"}};
    if (m.has(a + ".rope.scaling.original_context_length"))
      j["original_max_position_embeddings"] =
          m.get_int(a + ".rope.scaling.original_context_length");
    return j;
  }
  m.fail(a + ".rope.scaling.type", "'" + type + "' cannot be converted (linear, yarn only)");
}

// Per-layer sliding-window flags (true = local layer), as llama.cpp derives them.
std::vector<bool> gemma_swa_layers(const MetaMap& m, const Hparams& h) {
  const std::string key = h.arch + ".attention.sliding_window_pattern";
  std::vector<bool> swa(static_cast<size_t>(h.n_layer));
  if (const MetaArray* arr = array_or_null(m, key)) {
    const std::vector<int64_t> ints = arr->ints();
    if (static_cast<int64_t>(ints.size()) != h.n_layer)
      m.fail(key, "must have one entry per layer");
    for (size_t i = 0; i < swa.size(); ++i) swa[i] = ints[i] != 0;
    return swa;
  }
  const int64_t p = m.get_int(key, 6);
  if (p < 0) m.fail(key, "must be non-negative");
  for (int64_t il = 0; il < h.n_layer; ++il) swa[il] = p == 0 || il % p < p - 1;
  return swa;
}

void add_token_ids(const MetaMap& m, const Hparams& h, ojson& j, bool generation) {
  auto id = [&](const char* key) -> std::optional<int64_t> {
    if (!m.has(key)) return std::nullopt;
    const int64_t v = m.get_int(key);
    if (v < 0 || v >= h.n_vocab) return std::nullopt;  // 0xFFFFFFFF marks "none"
    return v;
  };
  const auto bos = id("tokenizer.ggml.bos_token_id");
  const auto eos = id("tokenizer.ggml.eos_token_id");
  const auto eot = id("tokenizer.ggml.eot_token_id");
  const auto pad = id("tokenizer.ggml.padding_token_id");
  if (bos) j["bos_token_id"] = *bos;
  std::vector<int64_t> eog;
  if (eos) eog.push_back(*eos);
  if (generation) {
    // HF generation stops at every end-of-turn token (Gemma's <end_of_turn> is not the eos).
    if (eot) eog.push_back(*eot);
    if (const MetaValue* v = m.find("tokenizer.ggml.tokens"); v && v->type == MetaType::Array) {
      const auto& toks = m.get_array("tokenizer.ggml.tokens").strings;
      for (size_t i = 0; i < toks.size(); ++i)
        for (const char* t : {"<end_of_turn>", "<|eot_id|>", "<|eom_id|>", "<|im_end|>"})
          if (toks[i] == t) eog.push_back(static_cast<int64_t>(i));
    }
    std::sort(eog.begin() + (eos ? 1 : 0), eog.end());
    eog.erase(std::unique(eog.begin(), eog.end()), eog.end());
    if (eos) eog.erase(std::remove(eog.begin() + 1, eog.end(), *eos), eog.end());
  }
  if (eog.size() == 1) j["eos_token_id"] = eog[0];
  if (eog.size() > 1) j["eos_token_id"] = eog;
  if (pad) j["pad_token_id"] = *pad;
}

ojson make_config(const WeightSource& ws, const Hparams& h, DType out) {
  const MetaMap& m = ws.metadata();
  const std::string& a = h.arch;
  ojson j;
  if (a == "llama") {
    j["architectures"] = {"LlamaForCausalLM"};
    j["model_type"] = "llama";
  } else if (a == "qwen2") {
    j["architectures"] = {"Qwen2ForCausalLM"};
    j["model_type"] = "qwen2";
  } else if (a == "qwen3") {
    j["architectures"] = {"Qwen3ForCausalLM"};
    j["model_type"] = "qwen3";
  } else {
    j["architectures"] = {"Gemma3ForCausalLM"};
    j["model_type"] = "gemma3_text";
  }
  j["hidden_size"] = h.n_embd;
  j["intermediate_size"] = h.n_ff;
  j["num_hidden_layers"] = h.n_layer;
  j["num_attention_heads"] = h.n_head;
  j["num_key_value_heads"] = h.n_head_kv;
  j["head_dim"] = h.head_dim;
  j["rms_norm_eps"] = h.eps;
  j["rope_theta"] = h.rope_theta;
  j["rope_scaling"] = rope_scaling_json(ws, h);
  j["max_position_embeddings"] = h.n_ctx;
  j["vocab_size"] = h.n_vocab;
  j["tie_word_embeddings"] = h.tied;
  j["attention_bias"] = a == "qwen2" || h.attn_bias;
  j["attention_dropout"] = 0.0;
  j["initializer_range"] = 0.02;
  j["use_cache"] = true;
  add_token_ids(m, h, j, false);
  if (a == "gemma3") {
    j["hidden_activation"] = "gelu_pytorch_tanh";
    // llama.cpp's rule when the GGUF has no explicit attention scale (see the HF reader).
    double qpas = h.n_layer == 62 ? static_cast<double>(h.n_embd) / h.n_head
                                  : static_cast<double>(h.head_dim);
    if (m.has(a + ".attention.scale")) {
      const double s = m.get_float(a + ".attention.scale");
      if (!(s > 0)) m.fail(a + ".attention.scale", "must be positive");
      qpas = clean_f32(1.0 / (s * s));
    }
    if (qpas == std::floor(qpas) && qpas < 1e9) {
      j["query_pre_attn_scalar"] = static_cast<int64_t>(qpas);
    } else {
      j["query_pre_attn_scalar"] = qpas;
    }
    j["rope_local_base_freq"] = clean_f32(m.get_float(a + ".rope.freq_base_swa", 10000.0));
    j["sliding_window"] = m.get_int(a + ".attention.sliding_window", 4096);
    const std::vector<bool> swa = gemma_swa_layers(m, h);
    if (!array_or_null(m, a + ".attention.sliding_window_pattern"))
      j["sliding_window_pattern"] = m.get_int(a + ".attention.sliding_window_pattern", 6);
    ojson lt = ojson::array();
    for (bool s : swa) lt.push_back(s ? "sliding_attention" : "full_attention");
    j["layer_types"] = lt;
    j["final_logit_softcapping"] = nullptr;
    if (m.has(a + ".final_logit_softcapping"))
      j["final_logit_softcapping"] = clean_f32(m.get_float(a + ".final_logit_softcapping"));
    j["attn_logit_softcapping"] = nullptr;
    if (m.has(a + ".attn_logit_softcapping"))
      j["attn_logit_softcapping"] = clean_f32(m.get_float(a + ".attn_logit_softcapping"));
  } else {
    j["hidden_act"] = "silu";
    if (a == "llama") {
      j["mlp_bias"] = false;
      j["pretraining_tp"] = 1;
    } else {
      j["use_sliding_window"] = false;
      j["sliding_window"] = nullptr;
      j["max_window_layers"] = h.n_layer;
    }
  }
  j["torch_dtype"] = torch_dtype(out);
  j["transformers_version"] = "4.56.0";
  return j;
}

// Where HF row r of a llama Q/K weight lives in GGUF: the converter interleaved the two
// rotary halves of each head (GGUF row 2i = HF row i, 2i+1 = HF row i+d/2).
int64_t llama_qk_src_row(int64_t r, int64_t d) {
  const int64_t head = r / d, j = r % d, half = d / 2;
  return head * d + (j < half ? 2 * j : 2 * (j - half) + 1);
}

struct Plan {
  const TensorInfo* t = nullptr;  // null: zeros (a bias HF's class always has)
  std::string hf;
  std::vector<int64_t> shape;  // HF order
  int64_t permute_heads = 0;   // llama attn_q/attn_k: heads to un-permute
  bool minus_one = false;      // gemma3 norms: GGUF holds 1+w
};

void write_tensor(const Plan& p, DType out, AtomicFile& f) {
  if (p.t == nullptr) {
    const std::vector<uint8_t> zeros(static_cast<size_t>(p.shape.at(0)) *
                                     (out == DType::F32 ? 4 : 2));
    f.write(zeros.data(), zeros.size());
    return;
  }
  const TensorInfo& t = *p.t;
  const int64_t ne0 = t.ne[0];
  const int64_t rows = t.nelements() / std::max<int64_t>(ne0, 1);
  const size_t src_row = row_bytes(t.dtype, ne0);
  const size_t out_size = out == DType::F32 ? 4 : 2;
  // A 1-D Q/K bias is un-permuted element-wise; a weight row-wise.
  const bool permute_elems = p.permute_heads > 0 && t.n_dims == 1;
  const int64_t d_rows = p.permute_heads > 0 ? (permute_elems ? ne0 : rows) / p.permute_heads : 0;

  std::vector<float> row(static_cast<size_t>(ne0));  // [ne0] dequantized GGUF row
  std::vector<float> tmp(permute_elems ? static_cast<size_t>(ne0) : 0);
  std::vector<uint8_t> chunk;  // converted rows awaiting write
  const size_t out_row = static_cast<size_t>(ne0) * out_size;
  const size_t chunk_rows = std::max<size_t>(1, (4u << 20) / std::max<size_t>(out_row, 1));
  chunk.reserve(std::min<size_t>(chunk_rows, static_cast<size_t>(rows)) * out_row);
  const auto* base = static_cast<const uint8_t*>(t.data);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t src = (p.permute_heads > 0 && !permute_elems) ? llama_qk_src_row(r, d_rows) : r;
    dequantize_row(t.dtype, base + static_cast<size_t>(src) * src_row, row.data(), ne0);
    if (permute_elems) {
      for (int64_t i = 0; i < ne0; ++i) tmp[i] = row[llama_qk_src_row(i, d_rows)];
      row.swap(tmp);
    }
    if (p.minus_one)
      for (float& v : row) v -= 1.0f;
    const size_t at = chunk.size();
    chunk.resize(at + out_row);
    uint8_t* dst = chunk.data() + at;
    for (int64_t i = 0; i < ne0; ++i) {
      if (out == DType::F32) {
        std::memcpy(dst + 4 * i, &row[i], 4);
      } else {
        const uint16_t v = out == DType::F16 ? fp32_to_fp16(row[i]) : fp32_to_bf16(row[i]);
        std::memcpy(dst + 2 * i, &v, 2);
      }
    }
    if (chunk.size() >= chunk_rows * out_row) {
      f.write(chunk.data(), chunk.size());
      chunk.clear();
    }
  }
  f.write(chunk.data(), chunk.size());
}

void prepare_out_dir(const std::string& out_dir, bool force) {
  std::error_code ec;
  if (fs::exists(out_dir, ec)) {
    if (!fs::is_directory(out_dir, ec)) throw Error(out_dir + ": exists and is not a directory");
    const bool empty = fs::is_empty(out_dir, ec);
    if (ec) throw Error(out_dir + ": cannot list: " + ec.message());
    if (!empty && !force && !is_previous_convert_output(out_dir))
      throw Error(out_dir +
                  ": directory is not empty and does not hold a previous kvsieve "
                  "conversion; refusing to overwrite (use --force)");
  } else {
    fs::create_directories(out_dir, ec);
    if (ec) throw Error(out_dir + ": cannot create directory: " + ec.message());
  }
}

}  // namespace

bool is_previous_convert_output(const std::string& dir) {
  const fs::path p = fs::path(dir) / "model.safetensors";
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return false;
  try {
    const SafetensorsFile f(p.string());
    return f.metadata().count(kMarkerKey) != 0;
  } catch (const Error&) {
    return false;  // unreadable: not ours to overwrite silently
  }
}

DType default_hf_dtype(const WeightSource& gguf) {
  bool all_f32 = true, all_f16 = true;
  for (const auto& t : gguf.tensors()) {
    if (t.dtype == DType::BF16) return DType::BF16;
    all_f32 = all_f32 && t.dtype == DType::F32;
    all_f16 = all_f16 && (t.dtype == DType::F32 || t.dtype == DType::F16);
  }
  return all_f32 ? DType::F32 : all_f16 ? DType::F16 : DType::BF16;
}

void convert_gguf_to_hf(const std::string& gguf_path, const std::string& out_dir, DType out_dtype,
                        const ConvertOptions& opts) {
  if (out_dtype != DType::F32 && out_dtype != DType::F16 && out_dtype != DType::BF16)
    throw Error("convert: output dtype " + std::string(dtype_name(out_dtype)) +
                " is not supported (f32, f16, bf16)");
  const std::unique_ptr<WeightSource> ws = open_weights(gguf_path);
  if (ws->format() != "gguf") throw Error(gguf_path + ": convert expects a GGUF file");
  const Hparams h = read_hparams(*ws);

  std::vector<Plan> plans;
  for (const auto& t : ws->tensors()) {
    std::optional<std::string> name = hf_name(t.name, h.arch, h.n_layer, ws->path());
    if (!name) continue;
    if (t.ne[0] % dtype_traits(t.dtype).block_size != 0)
      throw Error(ws->path() + ": tensor '" + t.name + "' row is not a whole number of blocks");
    Plan p;
    p.t = &t;
    p.hf = std::move(*name);
    for (int i = t.n_dims - 1; i >= 0; --i) p.shape.push_back(t.ne[i]);
    if (h.arch == "llama") {
      const bool blk = t.name.rfind("blk.", 0) == 0;
      const bool q = blk && t.name.find(".attn_q.") != std::string::npos;
      const bool k = blk && t.name.find(".attn_k.") != std::string::npos;
      if (q || k) {
        p.permute_heads = q ? h.n_head : h.n_head_kv;
        const int64_t rows = t.n_dims == 1 ? t.ne[0] : t.nelements() / t.ne[0];
        if (rows % p.permute_heads != 0 || (rows / p.permute_heads) % 2 != 0)
          throw Error(ws->path() + ": tensor '" + t.name +
                      "' rows do not split into heads of even size");
      }
    }
    const std::string& n = t.name;
    p.minus_one =
        h.arch == "gemma3" && n.size() >= 11 && n.compare(n.size() - 11, 11, "norm.weight") == 0;
    plans.push_back(std::move(p));
  }
  if (h.arch == "qwen2") {
    // HF's Qwen2 attention always has q/k/v biases; a GGUF without them means zeros.
    for (int64_t il = 0; il < h.n_layer; ++il)
      for (const char* x : {"q", "k", "v"}) {
        const std::string g = "blk." + std::to_string(il) + ".attn_" + x;
        const TensorInfo* wt = ws->find_tensor(g + ".weight");
        if (wt == nullptr || ws->find_tensor(g + ".bias") != nullptr) continue;
        Plan p;
        p.hf = "model.layers." + std::to_string(il) + ".self_attn." + x + "_proj.bias";
        p.shape = {wt->ne[1]};
        plans.push_back(std::move(p));
      }
  }
  const ojson config = make_config(*ws, h, out_dtype);  // validates before anything is written

  prepare_out_dir(out_dir, opts.force);
  const fs::path dir(out_dir);
  for (const char* stale : kStaleTokenizerFiles) {
    std::error_code ec;
    fs::remove(dir / stale, ec);
  }

  SafetensorsWriter w;
  w.set_metadata("format", "pt");  // transformers requires it
  w.set_metadata(kMarkerKey, fs::path(gguf_path).filename().string());
  const std::string out_name(safetensors_dtype_name(out_dtype));
  size_t done = 0;
  for (const Plan& p : plans) {
    w.add_tensor(p.hf, out_name, p.shape, [&, pp = &p](AtomicFile& f) {
      write_tensor(*pp, out_dtype, f);
      ++done;
      if (opts.progress) opts.progress(done, plans.size(), pp->t ? pp->t->name : pp->hf);
    });
  }
  w.write((dir / "model.safetensors").string());

  export_hf_tokenizer(*ws, out_dir);

  ojson gen;
  gen["_from_model_config"] = true;
  add_token_ids(ws->metadata(), h, gen, true);
  gen["transformers_version"] = config["transformers_version"];
  write_file_atomic((dir / "generation_config.json").string(), gen.dump(2) + "\n");
  // config.json last: a directory with it is complete.
  write_file_atomic((dir / "config.json").string(), config.dump(2) + "\n");
}

}  // namespace kvs
