#pragma once
// Byte-level BPE pre-tokenizers: llama.cpp's regex lists per `tokenizer.ggml.pre`, applied
// as successive splits with PCRE2 (UTF + UCP, JIT).
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace kvs {

struct PreTokenizerSpec {
  std::string name;                  // canonical pre type ("gpt-2", "llama-bpe", ...)
  std::vector<std::string> regexes;  // applied in order, each on the pieces of the previous
  bool ignore_merges = false;        // a pre-token already in the vocab is emitted as is
  bool clean_spaces = true;          // decode() applies clean_up_tokenization_spaces
  bool add_bos = false;
};

// The spec for a `tokenizer.ggml.pre` value (aliases included; "" = llama.cpp's default),
// or nullopt when unsupported.
std::optional<PreTokenizerSpec> find_pre_tokenizer(std::string_view pre);
// The canonical pre type whose regex list is exactly `regexes` (HF tokenizer.json
// patterns included), or nullopt.
std::optional<PreTokenizerSpec> match_pre_tokenizer(const std::vector<std::string>& regexes);

// GPT-2's pattern (HF ByteLevel with use_regex).
extern const char* const kGpt2Regex;

// Splits text into pieces: every regex match becomes a piece, and so does every run of text
// between matches (llama.cpp's unicode_regex_split). Each later regex works on the pieces
// of the one before, never across them.
class RegexSplitter {
 public:
  // Throws kvs::Error naming `context` when a pattern does not compile.
  RegexSplitter(const std::vector<std::string>& regexes, const std::string& context);
  ~RegexSplitter();
  RegexSplitter(const RegexSplitter&) = delete;
  RegexSplitter& operator=(const RegexSplitter&) = delete;

  // `text` must be valid UTF-8. Returns [begin, end) byte ranges covering it in order.
  std::vector<std::pair<size_t, size_t>> split(std::string_view text) const;

 private:
  struct Compiled;
  std::vector<std::unique_ptr<Compiled>> regexes_;
};

}  // namespace kvs
