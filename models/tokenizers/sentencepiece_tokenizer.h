#pragma once
// A tokenizer.model run by the SentencePiece library (through its module, spm_module.h). The
// library does not recognise control pieces in text, so the special-token split is ours
// (VocabTokenizer) and only the plain runs go to SentencePiece.
#include "models/tokenizers/sp_model_proto.h"
#include "models/tokenizers/spm_module_api.h"
#include "models/tokenizers/vocab.h"

namespace kvs {

class SentencePieceTokenizer final : public VocabTokenizer {
 public:
  // `spec` lists the model's pieces and the special ids (tokenizer_config.json applied);
  // `model_bytes` is the serialized ModelProto. Throws kvs::Error when the library rejects it.
  SentencePieceTokenizer(const VocabSpec& spec, const SpModelProto& proto,
                         std::string_view model_bytes);
  ~SentencePieceTokenizer() override;
  SentencePieceTokenizer(const SentencePieceTokenizer&) = delete;
  SentencePieceTokenizer& operator=(const SentencePieceTokenizer&) = delete;
  std::string_view kind() const override { return "sentencepiece"; }

 protected:
  void encode_text(std::string_view text, bool after_special,
                   std::vector<int32_t>& out) const override;

 private:
  const SpmModuleApi* api_ = nullptr;
  void* sp_ = nullptr;  // the library's processor, owned
  std::string source_;
};

// Builds the VocabSpec of a ModelProto (pieces, types, trainer ids, add_dummy_prefix).
VocabSpec vocab_spec_from_sp_model(const SpModelProto& proto, const std::string& source);

}  // namespace kvs
