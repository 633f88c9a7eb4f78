#pragma once
// Byte-level BPE from a GGUF `gpt2` vocab or an HF tokenizer.json: regex pre-tokenizer,
// GPT-2 byte->unicode encoding, rank-ordered merges (llama.cpp's llm_tokenizer_bpe_session).
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

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
  // "left right" merges in rank order (shared with the spec).
  const StringList& merges() const { return merges_; }

 protected:
  void encode_text(std::string_view text, bool after_special,
                   std::vector<int32_t>& out) const override;

 private:
  void encode_word(const std::string& word, std::vector<int32_t>& out) const;
  // Rank of merging two symbols given their texts and vocab ids (-1: not a token); -1 when
  // no merge applies.
  int32_t rank(int32_t left_id, int32_t right_id, std::string_view left,
               std::string_view right) const;
  void build_ranks(const VocabSpec& spec);

  PreTokenizerSpec pre_;
  std::unique_ptr<RegexSplitter> splitter_;
  bool ignore_merges_ = false;
  StringList merges_;
  // Merges of two tokens by left id (CSR): the rights of left id l are
  // rank_right_[rank_begin_[l] .. rank_begin_[l + 1]), ascending, each with its rank.
  // 8 bytes per merge instead of two strings and a hash node.
  std::vector<uint32_t> rank_begin_;  // [n_vocab + 1]
  std::vector<int32_t> rank_right_;   // [merges]
  std::vector<int32_t> rank_value_;   // [merges]
  // Merges with a side that is not a token (malformed vocabs only; usually empty). Key:
  // 4-byte length of the left side, then both sides.
  std::unordered_map<std::string, int32_t> text_ranks_;
};

}  // namespace kvs
