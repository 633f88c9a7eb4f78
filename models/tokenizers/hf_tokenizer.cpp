#include "models/tokenizers/hf_tokenizer.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <variant>

#include "kernels/core/error.h"
#include "models/formats/metadata.h"
#include "models/tokenizers/bpe_tokenizer.h"
#include "models/tokenizers/pre_tokenizer.h"
#include "models/tokenizers/sentencepiece_tokenizer.h"
#include "models/tokenizers/vocab.h"

namespace kvs {

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(path + ": cannot open");
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) throw Error(path + ": read error");
  return ss.str();
}

json parse_json(const std::string& path) {
  try {
    return json::parse(read_file(path));
  } catch (const json::exception& e) {
    throw Error(path + ": invalid JSON: " + e.what());
  }
}

[[noreturn]] void fail(const std::string& path, std::string_view key, const std::string& what) {
  throw Error(path + ": " + std::string(key) + ": " + what);
}

struct HfConfig {
  struct Added {
    int64_t id;
    std::string content;
    bool special, lstrip, rstrip;
  };
  std::string path;
  std::vector<Added> added;  // added_tokens_decoder, by id
  std::optional<std::string> bos, eos, unk, pad;
  std::optional<bool> add_bos, add_eos, clean_spaces;
  std::string chat_template;
};

// tokenizer_config.json writes tokens as "text" or {"content": "text", ...}.
std::optional<std::string> token_field(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  const json& v = j[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  fail(path, key, "expected a string or {\"content\": ...}");
}

std::optional<bool> bool_field(const json& j, const char* key, const std::string& path) {
  if (!j.contains(key) || j[key].is_null()) return std::nullopt;
  if (!j[key].is_boolean()) fail(path, key, "expected true or false");
  return j[key].get<bool>();
}

HfConfig read_config(const std::string& dir) {
  HfConfig c;
  c.path = (fs::path(dir) / "tokenizer_config.json").string();
  if (!fs::exists(c.path)) return c;
  const json j = parse_json(c.path);
  if (!j.is_object()) fail(c.path, "(top level)", "expected an object");
  c.bos = token_field(j, "bos_token", c.path);
  c.eos = token_field(j, "eos_token", c.path);
  c.unk = token_field(j, "unk_token", c.path);
  c.pad = token_field(j, "pad_token", c.path);
  c.add_bos = bool_field(j, "add_bos_token", c.path);
  c.add_eos = bool_field(j, "add_eos_token", c.path);
  c.clean_spaces = bool_field(j, "clean_up_tokenization_spaces", c.path);
  if (j.contains("added_tokens_decoder") && !j["added_tokens_decoder"].is_null()) {
    const json& a = j["added_tokens_decoder"];
    if (!a.is_object()) fail(c.path, "added_tokens_decoder", "expected an object");
    for (const auto& [key, t] : a.items()) {
      int64_t id = -1;
      try {
        size_t used = 0;
        id = std::stoll(key, &used);
        if (used != key.size()) id = -1;
      } catch (const std::exception&) {
        id = -1;
      }
      if (id < 0 || id >= INT32_MAX || !t.is_object() || !t.contains("content") ||
          !t["content"].is_string())
        fail(c.path, "added_tokens_decoder", "entry '" + key + "' is not id: {\"content\": ...}");
      c.added.push_back({id, t["content"].get<std::string>(), t.value("special", false),
                         t.value("lstrip", false), t.value("rstrip", false)});
    }
    std::sort(c.added.begin(), c.added.end(),
              [](const auto& x, const auto& y) { return x.id < y.id; });
  }
  if (j.contains("chat_template") && !j["chat_template"].is_null()) {
    const json& t = j["chat_template"];
    if (t.is_string()) {
      c.chat_template = t.get<std::string>();
    } else if (t.is_array()) {
      // Named templates: the "default" one, else the first.
      for (const json& e : t) {
        if (!e.is_object() || !e.contains("template") || !e["template"].is_string())
          fail(c.path, "chat_template", "expected [{\"name\": ..., \"template\": ...}]");
        if (c.chat_template.empty() || e.value("name", "") == "default")
          c.chat_template = e["template"].get<std::string>();
      }
    } else {
      fail(c.path, "chat_template", "expected a string or a list of named templates");
    }
  }
  return c;
}

int64_t token_id(const VocabSpec& s, const std::string& text, const std::string& path,
                 const char* key) {
  for (size_t i = 0; i < s.tokens.size(); ++i)
    if (s.tokens[i] == text) return static_cast<int64_t>(i);
  fail(path, key, "token '" + text + "' is not in the vocabulary");
}

void apply_config(VocabSpec& s, const HfConfig& c, const MetaMap& meta) {
  // Added tokens past the model's vocab extend it (they are only ever produced by the
  // special-token split); inside it they must name the same token and add lstrip/rstrip.
  const auto n_base = static_cast<int64_t>(s.tokens.size());
  std::vector<std::string> appended;  // ids n_base.. (the list itself is immutable)
  for (const auto& a : c.added) {
    const auto n = n_base + static_cast<int64_t>(appended.size());
    if (a.id == n) {
      appended.push_back(a.content);
      if (!s.scores.empty()) s.scores.push_back(0.0f);
      if (s.types.empty()) s.types.assign(static_cast<size_t>(n), 1);
      s.types.push_back(a.special ? 3 : 4);
    } else if (a.id > n) {
      fail(c.path, "added_tokens_decoder",
           "id " + std::to_string(a.id) + " leaves a gap after " + std::to_string(n - 1));
    } else {
      const std::string_view have =
          a.id < n_base ? s.tokens[static_cast<size_t>(a.id)]
                        : std::string_view(appended[static_cast<size_t>(a.id - n_base)]);
      if (have != a.content)
        fail(c.path, "added_tokens_decoder",
             "id " + std::to_string(a.id) + " is '" + a.content + "' but the vocab has '" +
                 std::string(have) + "'");
    }
    uint32_t attr = (a.lstrip ? kAttrLstrip : 0u) | (a.rstrip ? kAttrRstrip : 0u);
    if (attr != 0) s.extra_attrs.emplace_back(static_cast<int32_t>(a.id), attr);
  }
  if (!appended.empty()) {
    std::vector<std::string> all = s.tokens.to_vector();
    all.insert(all.end(), appended.begin(), appended.end());
    s.tokens = StringList(all);
  }
  if (c.bos) s.bos = token_id(s, *c.bos, c.path, "bos_token");
  if (c.eos) s.eos = token_id(s, *c.eos, c.path, "eos_token");
  if (c.unk) s.unk = token_id(s, *c.unk, c.path, "unk_token");
  if (c.pad) s.pad = token_id(s, *c.pad, c.path, "pad_token");
  if (c.add_bos) s.add_bos = c.add_bos;
  if (c.add_eos) s.add_eos = c.add_eos;
  if (c.clean_spaces) s.clean_spaces = c.clean_spaces;
  if (!c.chat_template.empty()) s.chat_template = c.chat_template;
  // config.json ids, when the model's metadata carries them, fill what the files leave out.
  auto fallback = [&](std::optional<int64_t>& dst, const char* key) {
    if (dst) return;
    const MetaValue* v = meta.find(key);
    if (v == nullptr) return;
    if (const auto* i = std::get_if<int64_t>(&v->value)) dst = *i;
  };
  fallback(s.bos, "tokenizer.ggml.bos_token_id");
  fallback(s.eos, "tokenizer.ggml.eos_token_id");
}

// Any step that rewrites spaces to U+2581 marks a SentencePiece-style file.
bool has_metaspace(const json& node) {
  if (node.is_array()) {
    for (const json& e : node)
      if (has_metaspace(e)) return true;
    return false;
  }
  if (!node.is_object()) return false;
  const json* t = node.contains("type") ? &node["type"] : nullptr;
  const std::string type = t != nullptr && t->is_string() ? t->get<std::string>() : "";
  if (type == "Metaspace") return true;
  if (type == "Replace" && node.contains("content") && node["content"] == "\xE2\x96\x81")
    return true;
  if (type == "Prepend" && node.contains("prepend") && node["prepend"] == "\xE2\x96\x81")
    return true;
  for (const char* key : {"normalizers", "pretokenizers", "decoders"})
    if (node.contains(key) && has_metaspace(node[key])) return true;
  return false;
}

bool is_spm_style(const json& j) {
  for (const char* key : {"normalizer", "pre_tokenizer", "decoder"})
    if (j.contains(key) && has_metaspace(j[key])) return true;
  return false;
}

std::string escape_literal(const std::string& s) {
  std::string r;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u)) r += '\\';
    r += c;
  }
  return r;
}

void collect_pre(const json& node, std::vector<std::string>& regexes, bool& byte_level,
                 const std::string& path) {
  if (node.is_null()) return;
  if (!node.is_object() || !node.contains("type") || !node["type"].is_string())
    fail(path, "pre_tokenizer", "expected an object with a type");
  const std::string type = node["type"].get<std::string>();
  if (type == "Sequence") {
    if (!node.contains("pretokenizers") || !node["pretokenizers"].is_array())
      fail(path, "pre_tokenizer.pretokenizers", "expected an array");
    for (const json& p : node["pretokenizers"]) collect_pre(p, regexes, byte_level, path);
  } else if (type == "ByteLevel") {
    byte_level = true;
    if (node.value("add_prefix_space", false))
      fail(path, "pre_tokenizer.add_prefix_space", "true is not supported");
    // HF's ByteLevel regex is GPT-2's plus a final `|\s+`, which never matches more than the
    // gaps the split keeps anyway.
    if (node.value("use_regex", true)) regexes.push_back(kGpt2Regex);
  } else if (type == "Digits") {
    regexes.push_back(node.value("individual_digits", false) ? R"(\p{N})" : R"(\p{N}+)");
  } else if (type == "Split") {
    if (node.value("behavior", std::string()) != "Isolated")
      fail(path, "pre_tokenizer.behavior", "only Split behavior \"Isolated\" is supported");
    if (node.value("invert", false)) fail(path, "pre_tokenizer.invert", "true is not supported");
    const json& p = node.contains("pattern") ? node["pattern"] : json();
    if (p.is_object() && p.contains("Regex") && p["Regex"].is_string())
      regexes.push_back(p["Regex"].get<std::string>());
    else if (p.is_object() && p.contains("String") && p["String"].is_string())
      regexes.push_back(escape_literal(p["String"].get<std::string>()));
    else
      fail(path, "pre_tokenizer.pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
  } else {
    fail(path, "pre_tokenizer", "unsupported type '" + type + "'");
  }
}

// A TemplateProcessing post-processor shows whether BOS/EOS are added, and which.
void read_post_processor(const json& node, VocabSpec& s, const std::string& path) {
  if (!node.is_object()) return;
  const std::string type = node.value("type", "");
  if (type == "Sequence" && node.contains("processors") && node["processors"].is_array()) {
    for (const json& p : node["processors"]) read_post_processor(p, s, path);
    return;
  }
  if (type != "TemplateProcessing" || !node.contains("single") || !node["single"].is_array())
    return;
  const json& single = node["single"];
  auto special_text = [&](const json& e) -> std::optional<std::string> {
    if (e.is_object() && e.contains("SpecialToken") && e["SpecialToken"].is_object() &&
        e["SpecialToken"].contains("id") && e["SpecialToken"]["id"].is_string())
      return e["SpecialToken"]["id"].get<std::string>();
    return std::nullopt;
  };
  if (single.empty()) return;
  if (auto t = special_text(single.front())) {
    s.bos = token_id(s, *t, path, "post_processor.single");
    s.add_bos = true;
  } else {
    s.add_bos = false;
  }
  if (single.size() > 1) {
    if (auto t = special_text(single.back())) {
      s.eos = token_id(s, *t, path, "post_processor.single");
      s.add_eos = true;
    }
  }
}

VocabSpec spec_from_tokenizer_json(const json& j, const std::string& path) {
  VocabSpec s;
  s.source = path;
  s.model = "gpt2";
  const json& model = j.at("model");
  if (!model.contains("vocab")) fail(path, "model.vocab", "missing");
  const json& vocab = model.at("vocab");
  if (!vocab.is_object()) fail(path, "model.vocab", "expected an object");
  if (model.contains("dropout") && !model["dropout"].is_null() && model["dropout"] != 0)
    fail(path, "model.dropout", "BPE dropout is not supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"})
    if (model.contains(key) && !model[key].is_null() && model[key] != "")
      fail(path, std::string("model.") + key, "is not supported");
  if (model.value("byte_fallback", false))
    fail(path, "model.byte_fallback", "true is not supported with a byte-level vocab");

  std::vector<std::optional<std::string>> tokens;
  // Ids must be dense, so none can reach the number of entries: checking that before the
  // resize keeps a hostile id (say 2e9) from asking for gigabytes.
  const size_t n_entries =
      vocab.size() +
      (j.contains("added_tokens") && j["added_tokens"].is_array() ? j["added_tokens"].size() : 0);
  auto put = [&](int64_t id, const std::string& text, const char* key) {
    if (id < 0 || id >= INT32_MAX || static_cast<size_t>(id) >= n_entries)
      fail(path, key,
           "id " + std::to_string(id) + " out of range (the file has " + std::to_string(n_entries) +
               " entries)");
    if (static_cast<size_t>(id) >= tokens.size()) tokens.resize(static_cast<size_t>(id) + 1);
    auto& slot = tokens[static_cast<size_t>(id)];
    if (slot && *slot != text)
      fail(path, key, "id " + std::to_string(id) + " is both '" + *slot + "' and '" + text + "'");
    slot = text;
  };
  for (const auto& [text, id] : vocab.items()) {
    if (!id.is_number_integer())
      fail(path, "model.vocab", "id of '" + text + "' is not an integer");
    put(id.get<int64_t>(), text, "model.vocab");
  }
  std::vector<std::pair<int64_t, int32_t>> added_types;
  if (j.contains("added_tokens") && !j["added_tokens"].is_null()) {
    if (!j["added_tokens"].is_array()) fail(path, "added_tokens", "expected an array");
    for (const json& t : j["added_tokens"]) {
      if (!t.is_object() || !t.contains("id") || !t["id"].is_number_integer() ||
          !t.contains("content") || !t["content"].is_string())
        fail(path, "added_tokens", "expected {\"id\": int, \"content\": string, ...}");
      const int64_t id = t["id"].get<int64_t>();
      put(id, t["content"].get<std::string>(), "added_tokens");
      const bool special = t.value("special", false);
      added_types.emplace_back(id, special ? 3 : 4);
      uint32_t attr = 0;
      if (t.value("lstrip", false)) attr |= kAttrLstrip;
      if (t.value("rstrip", false)) attr |= kAttrRstrip;
      if (attr != 0) s.extra_attrs.emplace_back(static_cast<int32_t>(id), attr);
    }
  }
  if (tokens.empty()) fail(path, "model.vocab", "empty vocabulary");
  std::vector<std::string> texts;
  texts.reserve(tokens.size());
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (!tokens[i]) fail(path, "model.vocab", "no token has id " + std::to_string(i));
    texts.push_back(std::move(*tokens[i]));
  }
  tokens.clear();
  s.tokens = StringList(texts);
  texts.clear();
  s.types.assign(s.tokens.size(), 1);
  for (const auto& [id, type] : added_types) s.types[static_cast<size_t>(id)] = type;

  if (model.contains("merges") && !model["merges"].is_null()) {
    const json& merges = model["merges"];
    if (!merges.is_array()) fail(path, "model.merges", "expected an array");
    // Kept in GGUF's "left right" form, so that HF and GGUF vocabularies share one layout.
    std::vector<std::string> joined;
    joined.reserve(merges.size());
    for (size_t i = 0; i < merges.size(); ++i) {
      const json& m = merges[i];
      if (m.is_string()) {
        std::string str = m.get<std::string>();
        if (!split_merge(str))
          fail(path, "model.merges", "entry " + std::to_string(i) + " is not \"left right\"");
        joined.push_back(std::move(str));
      } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
        const std::string l = m[0].get<std::string>(), r = m[1].get<std::string>();
        std::string str = l + " " + r;
        const auto sides = split_merge(str);
        if (!sides || sides->first.size() != l.size())
          fail(path, "model.merges",
               "entry " + std::to_string(i) +
                   " has an empty side or a space inside its left side, which GGUF's \"left "
                   "right\" form cannot hold");
        joined.push_back(std::move(str));
      } else {
        fail(path, "model.merges", "entry " + std::to_string(i) + " is neither \"a b\" nor [a, b]");
      }
    }
    s.merges = StringList(joined);
  }
  s.ignore_merges = model.value("ignore_merges", false);

  const json& norm = j.contains("normalizer") ? j["normalizer"] : json();
  auto check_norm = [&](const json& n) {
    // llama.cpp ignores NFC (Qwen2) too: text is NFC in practice.
    if (!n.is_null() && !(n.is_object() && n.value("type", "") == "NFC"))
      fail(path, "normalizer", "unsupported normalizer " + n.dump());
  };
  if (norm.is_object() && norm.value("type", "") == "Sequence" && norm.contains("normalizers")) {
    for (const json& n : norm["normalizers"]) check_norm(n);
  } else {
    check_norm(norm);
  }

  std::vector<std::string> regexes;
  bool byte_level = false;
  collect_pre(j.contains("pre_tokenizer") ? j["pre_tokenizer"] : json(), regexes, byte_level, path);
  if (!byte_level)
    fail(path, "pre_tokenizer",
         "no ByteLevel step: only byte-level BPE tokenizer.json is supported");
  s.regexes = regexes;
  if (j.contains("post_processor")) read_post_processor(j["post_processor"], s, path);
  return s;
}

std::unique_ptr<Tokenizer> load_sentencepiece(const std::string& path, const HfConfig& config,
                                              const MetaMap& meta) {
  const std::string bytes = read_file(path);
  const SpModelProto proto = parse_sp_model(bytes, path);
  VocabSpec spec = vocab_spec_from_sp_model(proto, path);
  apply_config(spec, config, meta);
  return std::make_unique<SentencePieceTokenizer>(spec, proto, bytes);
}

}  // namespace

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& dir, const MetaMap& meta) {
  if (dir.empty()) throw Error(meta.source() + ": no HF model directory to load a tokenizer from");
  const std::string json_path = (fs::path(dir) / "tokenizer.json").string();
  const std::string model_path = (fs::path(dir) / "tokenizer.model").string();
  const bool have_model = fs::exists(model_path);
  std::string current = (fs::path(dir) / "tokenizer_config.json").string();
  try {
    const HfConfig config = read_config(dir);
    if (fs::exists(json_path)) {
      current = json_path;
      const json j = parse_json(json_path);
      if (!j.is_object() || !j.contains("model") || !j.at("model").is_object())
        fail(json_path, "model", "missing");
      const json& model = j.at("model");
      std::string type = model.value("type", "");
      if (type.empty() && model.contains("merges")) type = "BPE";  // old files omit it
      const bool spm_style = is_spm_style(j);
      if (type == "BPE" && !spm_style) {
        VocabSpec spec = spec_from_tokenizer_json(j, json_path);
        apply_config(spec, config, meta);
        return std::make_unique<BpeTokenizer>(spec);
      }
      if (!have_model) {
        if (spm_style)
          fail(json_path, "pre_tokenizer",
               "SentencePiece-style (Metaspace) tokenizer.json: tokenizer.model is needed next to "
               "it");
        fail(json_path, "model.type", "unsupported tokenizer model '" + type + "'");
      }
    }
    if (have_model) return load_sentencepiece(model_path, config, meta);
  } catch (const json::exception& e) {
    // A value of an unexpected JSON type somewhere in the file.
    throw Error(current + ": " + e.what());
  }
  throw Error(dir + ": no tokenizer.json or tokenizer.model");
}

}  // namespace kvs
