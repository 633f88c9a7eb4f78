#pragma once
// SentencePiece-style tokenizer from a GGUF `llama` vocab: llama.cpp's
// llm_tokenizer_spm_session (score-priority bigram merges, byte fallback).
#include "models/tokenizers/vocab.h"

namespace kvs {

class SpmTokenizer final : public VocabTokenizer {
 public:
  explicit SpmTokenizer(const VocabSpec& spec);
  std::string_view kind() const override { return "spm"; }

 protected:
  void encode_text(std::string_view text, bool after_special,
                   std::vector<int32_t>& out) const override;
};

}  // namespace kvs
