#pragma once
// Byte-level BPE from a GGUF `gpt2` vocab or an HF tokenizer.json: regex pre-tokenizer,
// GPT-2 byte->unicode encoding, rank-ordered merges (llama.cpp's llm_tokenizer_bpe_session).
#include <memory>

#include "models/tokenizers/pre_tokenizer.h"
#include "models/tokenizers/vocab.h"

namespace kvs {

class BpeTokenizer final : public VocabTokenizer {
 public:
  // Throws kvs::Error naming the file and `tokenizer.ggml.pre` for an unknown pre type.
  explicit BpeTokenizer(const VocabSpec& spec);
  std::string_view kind() const override { return "bpe"; }

  const PreTokenizerSpec& pre_tokenizer() const { return pre_; }
  bool ignore_merges() const { return ignore_merges_; }
  const std::vector<std::pair<std::string, std::string>>& merges() const { return merges_; }

 protected:
  void encode_text(std::string_view text, bool after_special,
                   std::vector<int32_t>& out) const override;

 private:
  void encode_word(const std::string& word, std::vector<int32_t>& out) const;
  int32_t rank(std::string_view left, std::string_view right) const;

  PreTokenizerSpec pre_;
  std::unique_ptr<RegexSplitter> splitter_;
  bool ignore_merges_ = false;
  std::vector<std::pair<std::string, std::string>> merges_;
  // Key: 4-byte length of the left side, then both sides (unambiguous for any token text).
  std::unordered_map<std::string, int32_t> ranks_;
};

}  // namespace kvs
