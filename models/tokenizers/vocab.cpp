#include "models/tokenizers/vocab.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <set>
#include <variant>

#include "kernels/core/error.h"
#include "models/formats/metadata.h"
#include "models/tokenizers/utf8.h"

namespace kvs {

namespace {

[[noreturn]] void fail(const std::string& source, std::string_view key, const std::string& what) {
  throw Error(source + ": " + std::string(key) + ": " + what);
}

const MetaArray* find_array(const MetaMap& m, std::string_view key) {
  const MetaValue* v = m.find(key);
  if (v == nullptr) return nullptr;
  const auto* p = std::get_if<std::shared_ptr<const MetaArray>>(&v->value);
  if (p == nullptr || *p == nullptr) fail(m.source(), key, "expected an array");
  return p->get();
}

std::optional<int64_t> find_int(const MetaMap& m, std::string_view key) {
  const MetaValue* v = m.find(key);
  if (v == nullptr) return std::nullopt;
  const auto* p = std::get_if<int64_t>(&v->value);
  if (p == nullptr) fail(m.source(), key, "expected an integer");
  // u32 ids are stored zero-extended; keep the value as is so range checks catch 2^32-1.
  return *p;
}

std::optional<bool> find_bool(const MetaMap& m, std::string_view key) {
  const MetaValue* v = m.find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* b = std::get_if<bool>(&v->value)) return *b;
  if (const auto* i = std::get_if<int64_t>(&v->value)) return *i != 0;
  fail(m.source(), key, "expected a bool");
}

std::string find_string(const MetaMap& m, std::string_view key) {
  const MetaValue* v = m.find(key);
  if (v == nullptr) return {};
  const auto* s = std::get_if<std::string>(&v->value);
  if (s == nullptr) fail(m.source(), key, "expected a string");
  return *s;
}

bool is_space_c(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r';
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

size_t hash_text(std::string_view s) {
  return std::hash<std::string_view>{}(s);
}

}  // namespace

std::optional<std::pair<std::string_view, std::string_view>> split_merge(std::string_view m) {
  const size_t pos = m.size() > 1 ? m.find(' ', 1) : std::string_view::npos;
  if (pos == std::string_view::npos || pos + 1 >= m.size()) return std::nullopt;
  return std::pair{m.substr(0, pos), m.substr(pos + 1)};
}

VocabSpec vocab_spec_from_gguf(const MetaMap& meta) {
  VocabSpec s;
  s.source = meta.source();
  s.model = find_string(meta, "tokenizer.ggml.model");
  if (s.model.empty()) fail(s.source, "tokenizer.ggml.model", "missing (the file has no vocab)");
  s.pre = find_string(meta, "tokenizer.ggml.pre");

  const MetaArray* tokens = find_array(meta, "tokenizer.ggml.tokens");
  if (tokens == nullptr) fail(s.source, "tokenizer.ggml.tokens", "missing");
  if (tokens->elem_type != MetaType::String)
    fail(s.source, "tokenizer.ggml.tokens", "expected an array of strings");
  s.tokens = tokens->strings;
  const size_t n = s.tokens.size();
  if (n == 0) fail(s.source, "tokenizer.ggml.tokens", "empty vocabulary");
  if (n > static_cast<size_t>(INT32_MAX))
    fail(s.source, "tokenizer.ggml.tokens", "too many tokens");

  if (const MetaArray* a = find_array(meta, "tokenizer.ggml.scores")) {
    if (a->size() != n)
      fail(s.source, "tokenizer.ggml.scores",
           std::to_string(a->size()) + " scores for " + std::to_string(n) + " tokens");
    if (!a->holds_floats() && !a->holds_ints())
      fail(s.source, "tokenizer.ggml.scores", "expected an array of numbers");
    s.scores.resize(n);
    for (size_t i = 0; i < n; ++i)
      s.scores[i] = static_cast<float>(a->holds_floats() ? a->float_at(i)
                                                         : static_cast<double>(a->int_at(i)));
  }
  if (const MetaArray* a = find_array(meta, "tokenizer.ggml.token_type")) {
    if (a->size() != n)
      fail(s.source, "tokenizer.ggml.token_type",
           std::to_string(a->size()) + " types for " + std::to_string(n) + " tokens");
    if (!a->holds_ints()) fail(s.source, "tokenizer.ggml.token_type", "expected integers");
    s.types.resize(n);
    for (size_t i = 0; i < n; ++i) {
      const int64_t t = a->int_at(i);
      // Unknown type values act like UNDEFINED in llama.cpp; keep them in range.
      s.types[i] = (t >= 0 && t <= 6) ? static_cast<int32_t>(t) : 0;
    }
  }
  if (const MetaArray* a = find_array(meta, "tokenizer.ggml.merges")) {
    if (a->elem_type != MetaType::String)
      fail(s.source, "tokenizer.ggml.merges", "expected an array of strings");
    for (size_t i = 0; i < a->strings.size(); ++i)
      if (!split_merge(a->strings[i]))
        fail(s.source, "tokenizer.ggml.merges",
             "entry " + std::to_string(i) + " is not \"left right\"");
    s.merges = a->strings;
  }
  s.bos = find_int(meta, "tokenizer.ggml.bos_token_id");
  s.eos = find_int(meta, "tokenizer.ggml.eos_token_id");
  s.eot = find_int(meta, "tokenizer.ggml.eot_token_id");
  s.eom = find_int(meta, "tokenizer.ggml.eom_token_id");
  s.unk = find_int(meta, "tokenizer.ggml.unknown_token_id");
  s.pad = find_int(meta, "tokenizer.ggml.padding_token_id");
  s.add_bos = find_bool(meta, "tokenizer.ggml.add_bos_token");
  s.add_eos = find_bool(meta, "tokenizer.ggml.add_eos_token");
  s.add_space_prefix = find_bool(meta, "tokenizer.ggml.add_space_prefix");
  s.chat_template = find_string(meta, "tokenizer.chat_template");
  s.general_name = find_string(meta, "general.name");
  return s;
}

Vocab::Vocab(const VocabSpec& spec) {
  const size_t n = spec.tokens.size();
  if (n == 0) fail(spec.source, "tokenizer.ggml.tokens", "empty vocabulary");
  if (!spec.scores.empty() && spec.scores.size() != n)
    fail(spec.source, "tokenizer.ggml.scores", "length differs from the token list");
  if (!spec.types.empty() && spec.types.size() != n)
    fail(spec.source, "tokenizer.ggml.token_type", "length differs from the token list");
  text_ = spec.tokens;
  // llama.cpp renames empty tokens so that every token stays addressable by its text; only
  // then does the vocabulary get its own copy of the list.
  if (std::any_of(text_.begin(), text_.end(), [](std::string_view t) { return t.empty(); })) {
    std::vector<std::string> renamed = text_.to_vector();
    for (size_t i = 0; i < n; ++i)
      if (renamed[i].empty()) renamed[i] = "[EMPTY_" + std::to_string(i) + "]";
    text_ = StringList(renamed);
  }
  scores_ = spec.scores;
  types_.resize(spec.types.size());
  for (size_t i = 0; i < spec.types.size(); ++i)
    types_[i] = spec.types[i] >= 0 && spec.types[i] <= 6 ? static_cast<uint8_t>(spec.types[i]) : 0;
  attr_.assign(n, kAttrNormal);
  // Load factor at most 3/4: linear probing stays short and the table costs 4-8 bytes/token.
  size_t slots = 16;
  while (slots * 3 < n * 4) slots *= 2;
  index_.assign(slots, -1);
  const size_t mask = slots - 1;
  for (size_t i = 0; i < n; ++i) {
    const std::string_view t = text_[i];
    size_t h = hash_text(t) & mask;
    while (index_[h] >= 0 && text_[static_cast<size_t>(index_[h])] != t) h = (h + 1) & mask;
    if (index_[h] >= 0)
      fail(spec.source, "tokenizer.ggml.tokens",
           "duplicate token '" + std::string(t) + "' at ids " + std::to_string(index_[h]) +
               " and " + std::to_string(i));
    index_[h] = static_cast<int32_t>(i);
    if (types_.empty()) continue;
    switch (static_cast<TokenType>(types_[i])) {
      case TokenType::Normal:
        attr_[i] = kAttrNormal;
        break;
      case TokenType::Unknown:
        attr_[i] = kAttrUnknown;
        break;
      case TokenType::Control:
        attr_[i] = kAttrControl;
        break;
      case TokenType::UserDefined:
        attr_[i] = kAttrUserDefined;
        break;
      case TokenType::Unused:
        attr_[i] = kAttrUnused;
        break;
      case TokenType::Byte: {
        const std::string_view t = text_[i];
        const int hi = t.size() == 6 ? hex_digit(t[3]) : -1,
                  lo = t.size() == 6 ? hex_digit(t[4]) : -1;
        if (t.size() != 6 || t.compare(0, 3, "<0x") != 0 || t[5] != '>' || hi < 0 || lo < 0)
          fail(spec.source, "tokenizer.ggml.token_type",
               "token " + std::to_string(i) + " '" + std::string(t) +
                   "' has type BYTE but is not <0xXX>");
        attr_[i] = kAttrByte;
        break;
      }
      default:
        attr_[i] = kAttrUndefined;
        break;
    }
  }
  for (const auto& [id, a] : spec.extra_attrs) {
    if (!valid(id)) fail(spec.source, "added_tokens", "id " + std::to_string(id) + " out of range");
    attr_[id] = static_cast<uint16_t>(attr_[id] | a);
  }
}

int32_t Vocab::find(std::string_view text) const {
  if (index_.empty()) return -1;
  const size_t mask = index_.size() - 1;
  for (size_t h = hash_text(text) & mask;; h = (h + 1) & mask) {
    const int32_t id = index_[h];
    if (id < 0 || text_[static_cast<size_t>(id)] == text) return id;
  }
}

uint8_t Vocab::byte_value(int32_t id) const {
  // "<0xXX>", checked when the vocabulary was built.
  const std::string_view t = text_[static_cast<size_t>(id)];
  const int hi = t.size() == 6 ? hex_digit(t[3]) : -1, lo = t.size() == 6 ? hex_digit(t[4]) : -1;
  KVS_CHECK(hi >= 0 && lo >= 0, "byte_value of a token that is not <0xXX>");
  return static_cast<uint8_t>(hi * 16 + lo);
}

int32_t Vocab::byte_token(uint8_t b) const {
  static constexpr char kHex[] = "0123456789ABCDEF";
  const char buf[6] = {'<', '0', 'x', kHex[b >> 4], kHex[b & 15], '>'};
  const int32_t id = find(std::string_view(buf, 6));
  if (id >= 0) return id;
  const char c = static_cast<char>(b);
  return find(std::string_view(&c, 1));
}

void Vocab::build_special_cache() {
  special_cache_.clear();
  for (int32_t id = 0; id < size(); ++id)
    if (attr_[id] & (kAttrControl | kAttrUserDefined | kAttrUnknown)) special_cache_.push_back(id);
  // Longest first; ties by id so that the order never depends on the sort implementation.
  std::stable_sort(special_cache_.begin(), special_cache_.end(),
                   [&](int32_t a, int32_t b) { return text_[a].size() > text_[b].size(); });
}

std::vector<Vocab::Fragment> Vocab::partition(std::string_view text, bool parse_special) const {
  std::vector<Fragment> frags;
  if (text.empty()) return frags;
  frags.push_back({-1, 0, text.size()});
  std::vector<Fragment> next;
  for (const int32_t id : special_cache_) {
    const uint32_t a = attr_[id];
    if (!parse_special && (a & (kAttrControl | kAttrUnknown))) continue;
    const std::string_view tok = text_[id];
    // Most special tokens never occur; one scan of the whole text rules them out cheaply.
    if (text.find(tok) == std::string_view::npos) continue;
    next.clear();
    for (const Fragment& f : frags) {
      if (f.token >= 0) {
        next.push_back(f);
        continue;
      }
      size_t begin = f.begin;
      const size_t end = f.end;
      while (begin < end) {
        const size_t m = text.substr(0, end).find(tok, begin);
        if (m == std::string_view::npos) break;
        size_t left_end = m;
        if (a & kAttrLstrip)
          while (left_end > begin && is_space_c(text[left_end - 1])) --left_end;
        if (left_end > begin) next.push_back({-1, begin, left_end});
        next.push_back({id, m, m + tok.size()});
        begin = m + tok.size();
        if (a & kAttrRstrip)
          while (begin < end && is_space_c(text[begin])) ++begin;
      }
      if (begin < end) next.push_back({-1, begin, end});
    }
    frags.swap(next);
  }
  return frags;
}

// ---------------------------------------------------------------------------------------

void VocabTokenizer::init_vocab(const VocabSpec& spec, const SpecialDefaults& defaults) {
  vocab_ = Vocab(spec);
  chat_template_ = spec.chat_template;
  SpecialTokens& st = special_;
  auto default_id = [&](int32_t id) { return vocab_.valid(id) ? id : -1; };
  st.bos = default_id(defaults.bos);
  st.eos = default_id(defaults.eos);
  st.unk = default_id(defaults.unk);
  st.add_bos = defaults.add_bos;
  st.add_eos = defaults.add_eos;

  auto take = [&](const std::optional<int64_t>& v, int32_t& id, const char* key, bool lenient) {
    if (!v) return;
    // LLAMA_TOKEN_NULL written as u32: "no such token", the default stays (as in llama.cpp).
    if (*v == 0xFFFFFFFFll || *v == -1) return;
    if (!vocab_.valid(*v)) {
      // Converters write out-of-range padding ids now and then; nothing encodes with it.
      if (lenient) {
        spdlog::warn("{}: {} = {} is out of range, ignored", spec.source, key, *v);
        return;
      }
      fail(spec.source, key,
           "id " + std::to_string(*v) + " out of range [0, " + std::to_string(vocab_.size()) + ")");
    }
    id = static_cast<int32_t>(*v);
  };
  take(spec.bos, st.bos, "tokenizer.ggml.bos_token_id", false);
  take(spec.eos, st.eos, "tokenizer.ggml.eos_token_id", false);
  take(spec.eot, st.eot, "tokenizer.ggml.eot_token_id", false);
  take(spec.eom, st.eom, "tokenizer.ggml.eom_token_id", false);
  take(spec.unk, st.unk, "tokenizer.ggml.unknown_token_id", false);
  take(spec.pad, st.pad, "tokenizer.ggml.padding_token_id", true);
  if (spec.add_bos) st.add_bos = *spec.add_bos;
  if (spec.add_eos) st.add_eos = *spec.add_eos;
  if (st.add_bos && st.bos < 0)
    fail(spec.source, "tokenizer.ggml.add_bos_token", "is true but there is no BOS token");
  if (st.add_eos && st.eos < 0)
    fail(spec.source, "tokenizer.ggml.add_eos_token", "is true but there is no EOS token");

  // Vocab scans for end-of-turn tokens that converters do not always record (llama.cpp's
  // list, searched in this order so that the choice is deterministic). Such tokens are
  // control tokens even when stored as normal ones.
  auto make_control = [&](int32_t id) { vocab_.set_attr(id, vocab_.attr(id) | kAttrControl); };
  static constexpr std::array<std::string_view, 11> kEotNames = {
      "<|eot_id|>",
      "<|im_end|>",
      "<|end|>",
      "<end_of_turn>",
      "<|endoftext|>",
      "<|end_of_text|>",
      "<EOT>",
      "_<EOT>",
      "[EOT]",
      "<\xEF\xBD\x9C"
      "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
      "<end_of_utterance>"};
  if (st.eot < 0) {
    for (const auto name : kEotNames) {
      const int32_t id = vocab_.find(name);
      if (id >= 0) {
        st.eot = id;
        make_control(id);
        break;
      }
    }
  }
  if (st.eom < 0) {
    const int32_t id = vocab_.find("<|eom_id|>");
    if (id >= 0) {
      st.eom = id;
      make_control(id);
    }
  }
  static constexpr std::array<std::string_view, 22> kEogNames = {
      "<|eot_id|>",
      "<|im_end|>",
      "<|end|>",
      "<|return|>",
      "<|call|>",
      "<|flush|>",
      "<|calls|>",
      "<end_of_turn>",
      "<|endoftext|>",
      "</s>",
      "<|eom_id|>",
      "<EOT>",
      "_<EOT>",
      "[EOT]",
      "[EOS]",
      "<|end_of_text|>",
      "<end_of_utterance>",
      "<eos>",
      "<turn|>",
      "<|tool_response>",
      "<\xEF\xBD\x9C"
      "end\xE2\x96\x81of\xE2\x96\x81sentence\xEF\xBD\x9C>",
      "[e~["};
  std::set<int32_t> eog;
  for (const auto name : kEogNames) {
    const int32_t id = vocab_.find(name);
    if (id < 0) continue;
    eog.insert(id);
    make_control(id);
  }
  for (const int32_t id : {st.eos, st.eot, st.eom})
    if (id >= 0) eog.insert(id);
  // llama.cpp's workarounds: with <|return|>/<|call|> (harmony) or <|calls|>/<|flush|>
  // (solar-open), <|end|> ends a message, not the generation; with <|tool_response>
  // (gemma4), </s> is an ordinary token.
  auto has = [&](std::string_view name) {
    const int32_t id = vocab_.find(name);
    return id >= 0 && eog.count(id) != 0 ? id : -1;
  };
  const int32_t end_id = has("<|end|>");
  if (end_id >= 0 && ((has("<|return|>") >= 0 && has("<|call|>") >= 0) ||
                      (has("<|calls|>") >= 0 && has("<|flush|>") >= 0))) {
    eog.erase(end_id);
    vocab_.set_attr(end_id, kAttrUserDefined);
  }
  const int32_t s_id = has("</s>");
  if (s_id >= 0 && has("<|tool_response>") >= 0) {
    eog.erase(s_id);
    vocab_.set_attr(s_id, kAttrNormal);
  }
  st.eog.assign(eog.begin(), eog.end());

  vocab_.build_special_cache();

  // llama.cpp marks Phi-3's special tokens rstrip by model name (the GGUF has no attributes).
  std::string name = spec.general_name;
  std::transform(name.begin(), name.end(), name.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (name.find("phi-3") != std::string::npos || name.find("phi3") != std::string::npos) {
    for (int32_t id = 0; id < vocab_.size(); ++id)
      if (vocab_.attr(id) & (kAttrControl | kAttrUserDefined | kAttrUnknown))
        vocab_.set_attr(id, vocab_.attr(id) | kAttrRstrip);
    if (const int32_t id = vocab_.find("</s>"); id >= 0)
      vocab_.set_attr(id, vocab_.attr(id) | kAttrRstrip);
    for (const char* t : {"<unk>", "<s>", "<|endoftext|>"})
      if (const int32_t id = vocab_.find(t); id >= 0)
        vocab_.set_attr(id, vocab_.attr(id) & ~kAttrRstrip);
  }
}

void VocabTokenizer::check_id(int32_t id) const {
  if (!vocab_.valid(id))
    throw Error("token id " + std::to_string(id) + " out of range [0, " +
                std::to_string(vocab_.size()) + ")");
}

std::vector<int32_t> VocabTokenizer::encode(std::string_view text, bool add_special,
                                            bool parse_special) const {
  utf8::validate(text, "tokenize: input text");
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && special_.add_bos) out.push_back(special_.bos);
  bool after_special = true;
  for (const auto& f : vocab_.partition(text, parse_special)) {
    if (f.token >= 0) {
      out.push_back(f.token);
      after_special = true;
      continue;
    }
    encode_text(text.substr(f.begin, f.end - f.begin), after_special, out);
    after_special = false;
  }
  if (add_special && special_.add_eos) out.push_back(special_.eos);
  return out;
}

std::string VocabTokenizer::piece(int32_t id) const {
  check_id(id);
  return std::string(vocab_.text(id));
}

std::string VocabTokenizer::token_text(int32_t id, bool render_special) const {
  check_id(id);
  const uint32_t a = vocab_.attr(id);
  if (!render_special && (a & (kAttrUnknown | kAttrControl))) return {};
  const std::string_view t = vocab_.text(id);
  if (a & (kAttrUnknown | kAttrControl | kAttrUserDefined)) return std::string(t);
  if (a & kAttrNormal) {
    std::string out;
    out.reserve(t.size());
    if (byte_level_) {
      size_t pos = 0;
      while (pos < t.size()) {
        const size_t start = pos;
        const int b = utf8::unicode_to_byte(utf8::decode(t, pos));
        // A code point outside GPT-2's alphabet stands for itself.
        if (b >= 0)
          out += static_cast<char>(b);
        else
          out.append(t.substr(start, pos - start));
      }
    } else {
      size_t pos = 0;
      while (pos < t.size()) {
        if (t.compare(pos, kSpmSpace.size(), kSpmSpace) == 0) {
          out += ' ';
          pos += kSpmSpace.size();
        } else {
          out += t[pos++];
        }
      }
    }
    return out;
  }
  if (a & kAttrByte) return std::string(1, static_cast<char>(vocab_.byte_value(id)));
  return {};
}

std::optional<int32_t> VocabTokenizer::find_token(std::string_view text) const {
  const int32_t id = vocab_.find(text);
  if (id < 0) return std::nullopt;
  return id;
}

bool VocabTokenizer::is_control(int32_t id) const {
  check_id(id);
  return (vocab_.attr(id) & kAttrControl) != 0;
}

}  // namespace kvs
