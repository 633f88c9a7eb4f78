#pragma once
// Tokenizer interface: SentencePiece-style (GGUF `llama` vocab, or tokenizer.model through the
// SentencePiece library) and byte-level BPE (GGUF `gpt2` vocab, HF tokenizer.json).
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kvs {

class WeightSource;
class MetaMap;

struct SpecialTokens {
  int32_t bos = -1;  // -1: none
  int32_t eos = -1;
  int32_t eot = -1;
  int32_t eom = -1;
  int32_t unk = -1;
  int32_t pad = -1;
  bool add_bos = false;
  bool add_eos = false;
  std::vector<int32_t> eog;  // every end-of-generation id (eos, eot, eom, <|im_end|>, ...)
};

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;

  // "spm", "bpe" or "sentencepiece" (the library, from tokenizer.model).
  virtual std::string_view kind() const = 0;
  virtual int32_t n_vocab() const = 0;
  const SpecialTokens& special() const { return special_; }

  // Tokenizes `text` verbatim. add_special adds BOS/EOS as the vocab says; with
  // parse_special, control-token text (e.g. "<|im_start|>") becomes that token, otherwise
  // it is plain text. Throws kvs::Error on invalid UTF-8.
  virtual std::vector<int32_t> encode(std::string_view text, bool add_special,
                                      bool parse_special) const = 0;

  // The vocab entry as stored (e.g. "\u0120the", "\u2581the", "<0x0A>").
  virtual std::string piece(int32_t id) const = 0;
  // The bytes this token contributes to the text (llama.cpp token_to_piece). Control tokens
  // give "" unless render_special.
  virtual std::string token_text(int32_t id, bool render_special) const = 0;
  // Decodes a sequence (drops the SPM leading space after BOS like llama.cpp's detokenize).
  virtual std::string decode(std::span<const int32_t> ids, bool render_special) const;

  // Exact vocab lookup of a token's stored text (used for chat special tokens).
  virtual std::optional<int32_t> find_token(std::string_view text) const = 0;
  virtual bool is_control(int32_t id) const = 0;
  bool is_eog(int32_t id) const;

  // SPM-style: a space was prepended to the text, so decoding drops the first one.
  bool add_space_prefix() const { return add_space_prefix_; }
  // Jinja chat template (GGUF `tokenizer.chat_template`, HF tokenizer_config.json), or "".
  const std::string& chat_template() const { return chat_template_; }

 protected:
  SpecialTokens special_;
  bool add_space_prefix_ = false;
  // llama.cpp's clean_up_tokenization_spaces pass in decode() (" ." -> ".", " 's" -> "'s").
  bool clean_spaces_ = false;
  std::string chat_template_;
};

// Builds the tokenizer of a model: GGUF metadata, or tokenizer.json / tokenizer.model in
// an HF directory. Throws kvs::Error naming the file and key when unsupported or malformed.
std::unique_ptr<Tokenizer> load_tokenizer(const WeightSource& ws);

// Turns a token stream into text without ever emitting half a UTF-8 character.
class StreamingDetokenizer {
 public:
  explicit StreamingDetokenizer(const Tokenizer& tok, bool render_special = false)
      : tok_(tok), render_special_(render_special) {}
  // Returns the complete UTF-8 text that became available with this token.
  std::string push(int32_t id);
  // Returns what is left (incomplete bytes are replaced by U+FFFD).
  std::string flush();

 private:
  const Tokenizer& tok_;
  bool render_special_;
  bool first_ = true;
  std::string pending_;
};

}  // namespace kvs
