#pragma once
// The vocabulary shared by the SPM, byte-level BPE and SentencePiece-library tokenizers:
// tokens with llama.cpp-style attributes, the special-token split, the special-id rules,
// and the text rendering of tokens.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "models/formats/string_list.h"
#include "models/tokenizers/tokenizer.h"

namespace kvs {

class MetaMap;

// GGUF tokenizer.ggml.token_type values; equal to SentencePiece's piece types.
enum class TokenType : int32_t {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
};

// llama.cpp token attributes. They are flags because auto-detected end-of-generation
// tokens gain Control on top of their stored type.
enum TokenAttr : uint32_t {
  kAttrUndefined = 0,
  kAttrUnknown = 1u << 0,
  kAttrUnused = 1u << 1,
  kAttrNormal = 1u << 2,
  kAttrControl = 1u << 3,
  kAttrUserDefined = 1u << 4,
  kAttrByte = 1u << 5,
  kAttrLstrip = 1u << 7,
  kAttrRstrip = 1u << 8,
};

// Everything a tokenizer is built from, in GGUF terms. GGUF metadata fills it directly; the
// HF loaders translate tokenizer.json / tokenizer.model into it.
struct VocabSpec {
  std::string source;  // file named in error messages
  std::string model;   // tokenizer.ggml.model: "llama", "gpt2"
  std::string pre;     // tokenizer.ggml.pre ("" when absent)
  // Shared with the GGUF metadata (a view into the file), never copied.
  StringList tokens;
  std::vector<float> scores;   // empty: all 0
  std::vector<int32_t> types;  // empty: all NORMAL
  // "left right" (split at the first space after index 0, as llama.cpp does); rank = index.
  StringList merges;
  std::optional<int64_t> bos, eos, eot, eom, unk, pad;
  std::optional<bool> add_bos, add_eos, add_space_prefix;
  std::string chat_template;
  std::string general_name;
  // HF tokenizer.json only: explicit pre-tokenizer splits and flags that GGUF derives from
  // the pre type, plus the lstrip/rstrip flags of added tokens.
  std::optional<std::vector<std::string>> regexes;
  std::optional<bool> ignore_merges, clean_spaces;
  std::vector<std::pair<int32_t, uint32_t>> extra_attrs;
};

// Splits a "left right" merge at the first space after index 0, so that a left side " "
// stays possible; nullopt when either side would be empty.
std::optional<std::pair<std::string_view, std::string_view>> split_merge(std::string_view m);

// Reads the tokenizer.* keys. Throws kvs::Error naming the file and key on wrong types,
// mismatched array lengths and malformed merges.
VocabSpec vocab_spec_from_gguf(const MetaMap& meta);

class Vocab {
 public:
  struct Fragment {
    int32_t token;  // >= 0: a special token; -1: plain text [begin, end)
    size_t begin, end;
  };

  Vocab() = default;
  // Validates the arrays (lengths, duplicates, byte tokens); throws kvs::Error.
  explicit Vocab(const VocabSpec& spec);

  int32_t size() const { return static_cast<int32_t>(text_.size()); }
  std::string_view text(int32_t id) const { return text_[id]; }
  // The token list (shared, for export and for tokenizers that index it).
  const StringList& texts() const { return text_; }
  float score(int32_t id) const { return scores_.empty() ? 0.0f : scores_[id]; }
  int32_t type(int32_t id) const { return types_.empty() ? 1 : types_[id]; }
  static_assert(kAttrRstrip <= 0xFFFF, "attributes are stored in 16 bits");
  uint32_t attr(int32_t id) const { return attr_[id]; }
  void set_attr(int32_t id, uint32_t a) { attr_[id] = static_cast<uint16_t>(a); }
  bool valid(int64_t id) const { return id >= 0 && id < size(); }
  // Exact lookup of a stored token text; -1 when absent.
  int32_t find(std::string_view text) const;
  // The value of a BYTE token "<0xXX>".
  uint8_t byte_value(int32_t id) const;
  // SPM byte fallback: "<0xXX>", else the one-byte token; -1 when neither exists.
  int32_t byte_token(uint8_t b) const;

  // Orders the CONTROL / USER_DEFINED / UNKNOWN tokens longest first; call once the
  // attributes are final.
  void build_special_cache();
  // Splits text on the literal text of special tokens, longest first (llama.cpp's
  // tokenizer_st_partition, including lstrip/rstrip). CONTROL and UNKNOWN tokens are split
  // only with parse_special.
  std::vector<Fragment> partition(std::string_view text, bool parse_special) const;

 private:
  StringList text_;
  std::vector<float> scores_;
  // Per-token arrays at the narrowest width their values need: types are 0..6 and the
  // attribute flags fit 16 bits (Gemma 3's 262144 tokens: 0.75 MiB instead of 2.25 MiB).
  std::vector<uint8_t> types_;  // [n] or empty
  std::vector<uint16_t> attr_;  // [n]
  // Open addressing over token ids (-1 = empty), a power of two at least 1.5x the vocab:
  // 4 bytes per slot instead of a node and a string copy per token.
  std::vector<int32_t> index_;  // [slots]
  std::vector<int32_t> special_cache_;
};

// A tokenizer over a Vocab: special-token splitting, BOS/EOS, rendering. Subclasses only
// encode runs of plain text.
class VocabTokenizer : public Tokenizer {
 public:
  int32_t n_vocab() const override { return vocab_.size(); }
  std::vector<int32_t> encode(std::string_view text, bool add_special,
                              bool parse_special) const override;
  std::string piece(int32_t id) const override;
  std::string token_text(int32_t id, bool render_special) const override;
  std::optional<int32_t> find_token(std::string_view text) const override;
  bool is_control(int32_t id) const override;

  const Vocab& vocab() const { return vocab_; }
  // Raw token types as stored (for export).
  int32_t token_type(int32_t id) const { return vocab_.type(id); }

 protected:
  struct SpecialDefaults {
    int32_t bos = -1, eos = -1, unk = -1;
    bool add_bos = false, add_eos = false;
  };
  // Builds the vocab and resolves special ids, flags and end-of-generation tokens the way
  // llama.cpp's llama_vocab::load does.
  void init_vocab(const VocabSpec& spec, const SpecialDefaults& defaults);
  void check_id(int32_t id) const;

  // Encodes one run of plain text; `after_special` is true at the start of the text and
  // right after a special token.
  virtual void encode_text(std::string_view text, bool after_special,
                           std::vector<int32_t>& out) const = 0;

  Vocab vocab_;
  bool byte_level_ = false;  // NORMAL tokens are GPT-2 byte-encoded (else U+2581 = space)
};

// U+2581 "▁", SentencePiece's escaped space.
inline constexpr std::string_view kSpmSpace = "\xE2\x96\x81";

}  // namespace kvs
