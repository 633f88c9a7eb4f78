// `kvsieve inspect FILE|DIR [--json] [--all-metadata]`: what a model file holds, without
// loading the model: format, architecture, hyper-parameters, tokenizer summary, general.*
// keys and the tensor table. The big tokenizer arrays are summarized, never dumped.
#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "models/formats/gguf_reader.h"
#include "models/formats/weight_source.h"
#include "tools/command.h"

namespace kvs::cli {
namespace {

using nlohmann::json;

constexpr size_t kJsonArrayLimit = 64;  // longer arrays become {elem_type, count}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}
bool ends_with(std::string_view s, std::string_view p) {
  return s.size() >= p.size() && s.substr(s.size() - p.size()) == p;
}

// Keys shown in the tokenizer section; every other tokenizer.* key only with --all-metadata.
bool is_special_id_key(std::string_view k) {
  return starts_with(k, "tokenizer.ggml.") && ends_with(k, "_token_id");
}

json value_to_json(const MetaValue& v);

json array_to_json(const MetaArray& a) {
  if (a.size() > kJsonArrayLimit)
    return {{"elem_type", meta_type_name(a.elem_type)}, {"count", a.size()}};
  json out = json::array();
  for (size_t i = 0; i < a.size(); ++i) {
    if (a.elem_type == MetaType::String)
      out.push_back(std::string(a.strings[i]));
    else if (a.elem_type == MetaType::Array)
      out.push_back(value_to_json(a.items[i]));
    else if (a.holds_floats())
      out.push_back(a.float_at(i));
    else if (a.elem_type == MetaType::Bool)
      out.push_back(a.int_at(i) != 0);
    else if (a.elem_type == MetaType::U64)
      out.push_back(static_cast<uint64_t>(a.int_at(i)));
    else
      out.push_back(a.int_at(i));
  }
  return out;
}

json value_to_json(const MetaValue& v) {
  switch (v.type) {
    case MetaType::String:
      return std::get<std::string>(v.value);
    case MetaType::Bool:
      return std::get<bool>(v.value);
    case MetaType::F32:
    case MetaType::F64:
      return std::get<double>(v.value);
    case MetaType::Array:
      return array_to_json(*std::get<std::shared_ptr<const MetaArray>>(v.value));
    case MetaType::U64:
      return static_cast<uint64_t>(std::get<int64_t>(v.value));
    default:
      return std::get<int64_t>(v.value);
  }
}

// PyTorch/HF order: the reverse of ggml's ne.
std::vector<int64_t> torch_shape(const TensorInfo& t) {
  std::vector<int64_t> s;
  for (int d = t.n_dims - 1; d >= 0; --d) s.push_back(t.ne[static_cast<size_t>(d)]);
  return s;
}

std::string shape_string(const std::vector<int64_t>& s) {
  std::string r = "[";
  for (size_t i = 0; i < s.size(); ++i) r += (i ? ", " : "") + std::to_string(s[i]);
  return r + "]";
}

struct Report {
  const WeightSource& src;
  const MetaMap& meta;
  std::string arch;
  std::vector<std::string> hparams, general, special_ids, other;

  explicit Report(const WeightSource& s)
      : src(s), meta(s.metadata()), arch(meta.get_string("general.architecture", "")) {
    const std::string prefix = arch + ".";
    for (const auto& [k, v] : meta.entries()) {
      if (!arch.empty() && starts_with(k, prefix))
        hparams.push_back(k);
      else if (starts_with(k, "general."))
        general.push_back(k);
      else if (is_special_id_key(k))
        special_ids.push_back(k);
      else
        other.push_back(k);
    }
  }

  // -1 when the tokenizer has no token list.
  int64_t vocab_size() const {
    const MetaArray* t = meta.find_array("tokenizer.ggml.tokens");
    return t == nullptr ? -1 : static_cast<int64_t>(t->size());
  }
  std::string tokenizer_string(std::string_view key) const { return meta.get_string(key, ""); }
  const MetaValue* find(std::string_view key) const { return meta.find(key); }
};

void print_text(const Report& r, bool all_metadata) {
  const WeightSource& src = r.src;
  std::printf("format:       %s\n", std::string(src.format()).c_str());
  std::printf("path:         %s\n", src.path().c_str());
  if (const auto* g = dynamic_cast<const GgufSource*>(&src))
    std::printf("gguf:         version %u, alignment %u, data at %llu\n", g->version(),
                g->alignment(), static_cast<unsigned long long>(g->data_offset()));
  std::printf("architecture: %s\n", r.arch.empty() ? "(none)" : r.arch.c_str());

  std::printf("\nhyper-parameters:\n");
  if (r.hparams.empty()) std::printf("  (none)\n");
  for (const auto& k : r.hparams)
    std::printf("  %s = %s\n", k.c_str(), r.find(k)->to_display().c_str());

  std::printf("\ntokenizer:\n");
  const std::string model = r.tokenizer_string("tokenizer.ggml.model");
  const std::string pre = r.tokenizer_string("tokenizer.ggml.pre");
  std::printf("  model = %s\n", model.empty() ? "(none)" : model.c_str());
  std::printf("  pre = %s\n", pre.empty() ? "(none)" : pre.c_str());
  const int64_t vocab = r.vocab_size();
  std::printf("  vocab size = %s\n", vocab < 0 ? "(no token list)" : std::to_string(vocab).c_str());
  for (const auto& k : r.special_ids)
    std::printf("  %s = %s\n", k.c_str() + std::strlen("tokenizer.ggml."),
                r.find(k)->to_display().c_str());
  for (const char* k : {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"}) {
    if (const MetaValue* v = r.find(k))
      std::printf("  %s = %s\n", k + std::strlen("tokenizer.ggml."), v->to_display().c_str());
  }
  const MetaValue* tmpl = r.find("tokenizer.chat_template");
  std::printf("  chat template = %s\n",
              tmpl == nullptr
                  ? "no"
                  : ("yes (" + std::to_string(r.meta.get_string("tokenizer.chat_template").size()) +
                     " bytes)")
                        .c_str());

  std::printf("\ngeneral:\n");
  if (r.general.empty()) std::printf("  (none)\n");
  for (const auto& k : r.general)
    std::printf("  %s = %s\n", k.c_str(), r.find(k)->to_display().c_str());

  if (all_metadata) {
    std::printf("\nother metadata:\n");
    if (r.other.empty()) std::printf("  (none)\n");
    for (const auto& k : r.other)
      std::printf("  %s = %s\n", k.c_str(), r.find(k)->to_display().c_str());
  }

  size_t name_w = 4, type_w = 4, shape_w = 5;
  for (const auto& t : src.tensors()) {
    name_w = std::max(name_w, t.name.size());
    type_w = std::max(type_w, dtype_name(t.dtype).size());
    shape_w = std::max(shape_w, shape_string(torch_shape(t)).size());
  }
  std::printf("\ntensors:\n");
  std::printf("  %-*s  %-*s  %-*s  %s\n", static_cast<int>(name_w), "NAME",
              static_cast<int>(type_w), "TYPE", static_cast<int>(shape_w), "SHAPE", "BYTES");
  std::map<std::string, size_t> per_type;
  for (const auto& t : src.tensors()) {
    const std::string type(dtype_name(t.dtype));
    ++per_type[type];
    std::printf("  %-*s  %-*s  %-*s  %zu\n", static_cast<int>(name_w), t.name.c_str(),
                static_cast<int>(type_w), type.c_str(), static_cast<int>(shape_w),
                shape_string(torch_shape(t)).c_str(), t.nbytes);
  }
  std::string types;
  for (const auto& [type, n] : per_type)
    types += (types.empty() ? "" : ", ") + type + ": " + std::to_string(n);
  std::printf("\ntotal: %zu tensors, %zu bytes (%.2f MiB)%s%s\n", src.tensors().size(),
              src.total_bytes(), static_cast<double>(src.total_bytes()) / (1024.0 * 1024.0),
              types.empty() ? "" : "; ", types.c_str());
}

void print_json(const Report& r, bool all_metadata) {
  const WeightSource& src = r.src;
  json out;
  out["format"] = std::string(src.format());
  out["path"] = src.path();
  if (const auto* g = dynamic_cast<const GgufSource*>(&src)) {
    out["gguf_version"] = g->version();
    out["alignment"] = g->alignment();
    out["data_offset"] = g->data_offset();
  }
  out["architecture"] = r.arch.empty() ? json(nullptr) : json(r.arch);
  json& hp = out["hparams"] = json::object();
  for (const auto& k : r.hparams) hp[k] = value_to_json(*r.find(k));

  json& tok = out["tokenizer"] = json::object();
  const std::string model = r.tokenizer_string("tokenizer.ggml.model");
  const std::string pre = r.tokenizer_string("tokenizer.ggml.pre");
  tok["model"] = model.empty() ? json(nullptr) : json(model);
  tok["pre"] = pre.empty() ? json(nullptr) : json(pre);
  const int64_t vocab = r.vocab_size();
  tok["vocab_size"] = vocab < 0 ? json(nullptr) : json(vocab);
  json& ids = tok["special_ids"] = json::object();
  for (const auto& k : r.special_ids)
    ids[k.substr(std::strlen("tokenizer.ggml."))] = value_to_json(*r.find(k));
  for (const char* k : {"tokenizer.ggml.add_bos_token", "tokenizer.ggml.add_eos_token"})
    if (const MetaValue* v = r.find(k)) tok[k + std::strlen("tokenizer.ggml.")] = value_to_json(*v);
  tok["has_chat_template"] = r.find("tokenizer.chat_template") != nullptr;

  json& gen = out["general"] = json::object();
  for (const auto& k : r.general) gen[k] = value_to_json(*r.find(k));
  if (all_metadata) {
    json& other = out["other_metadata"] = json::object();
    for (const auto& k : r.other) other[k] = value_to_json(*r.find(k));
  }

  json tensors = json::array();
  std::map<std::string, size_t> per_type;
  for (const auto& t : src.tensors()) {
    const std::string type(dtype_name(t.dtype));
    ++per_type[type];
    tensors.push_back(
        {{"name", t.name}, {"type", type}, {"shape", torch_shape(t)}, {"bytes", t.nbytes}});
  }
  out["tensors"] = std::move(tensors);
  out["totals"] = {
      {"count", src.tensors().size()}, {"bytes", src.total_bytes()}, {"types", per_type}};
  // Metadata strings come from the file and need not be valid UTF-8.
  std::printf("%s\n", out.dump(2, ' ', false, json::error_handler_t::replace).c_str());
}

void setup_inspect(CLI::App& sub) {
  auto path = std::make_shared<std::string>();
  auto as_json = std::make_shared<bool>(false);
  auto all = std::make_shared<bool>(false);
  sub.add_option("path", *path, "GGUF file, .safetensors file or HF model directory")->required();
  sub.add_flag("--json", *as_json, "Print one JSON object");
  sub.add_flag("--all-metadata", *all, "Also print every other metadata key (arrays abridged)");
  sub.callback([path, as_json, all] {
    // Opened (and fully validated) before anything is printed: a bad file leaves stdout empty.
    const std::unique_ptr<WeightSource> src = open_weights(*path);
    const Report report(*src);
    if (*as_json)
      print_json(report, *all);
    else
      print_text(report, *all);
  });
}

}  // namespace

KVS_COMMAND(inspect, "Show a model file's metadata and tensors", setup_inspect);

}  // namespace kvs::cli
