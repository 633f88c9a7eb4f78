#include "models/tokenizers/sentencepiece_tokenizer.h"

#include "kernels/core/error.h"
#include "models/tokenizers/spm_module.h"

namespace kvs {

VocabSpec vocab_spec_from_sp_model(const SpModelProto& proto, const std::string& source) {
  VocabSpec s;
  s.source = source;
  s.model = "llama";
  const size_t n = proto.pieces.size();
  std::vector<std::string> pieces;
  pieces.reserve(n);
  s.scores.reserve(n);
  s.types.reserve(n);
  for (const auto& p : proto.pieces) {
    pieces.push_back(p.piece);
    s.scores.push_back(p.score);
    s.types.push_back(p.type >= 0 && p.type <= 6 ? p.type : 0);
  }
  s.tokens = StringList(pieces);
  auto id = [&](int32_t v) -> std::optional<int64_t> {
    if (v < 0) return std::nullopt;  // disabled in the trainer spec
    return v;
  };
  s.unk = id(proto.unk_id);
  s.bos = id(proto.bos_id);
  s.eos = id(proto.eos_id);
  s.pad = id(proto.pad_id);
  s.add_space_prefix = proto.add_dummy_prefix;
  return s;
}

SentencePieceTokenizer::SentencePieceTokenizer(const VocabSpec& spec, const SpModelProto& proto,
                                               std::string_view model_bytes)
    : source_(spec.source) {
  SpecialDefaults d;
  d.add_bos = true;  // HF's LlamaTokenizer default; tokenizer_config.json overrides it
  init_vocab(spec, d);
  add_space_prefix_ = proto.add_dummy_prefix;
  clean_spaces_ = false;
  byte_level_ = false;
  // The library's trie builder throws (not a status) on a piece holding a NUL byte, and a
  // throw from inside it must not escape as anything but kvs::Error.
  for (size_t i = 0; i < proto.pieces.size(); ++i)
    if (proto.pieces[i].piece.find('\0') != std::string::npos)
      throw Error(spec.source + ": SentencePiece piece " + std::to_string(i) +
                  " contains a NUL byte");
  api_ = &spm_module();
  std::string error;
  sp_ = api_->load(model_bytes, &error);
  if (sp_ == nullptr) throw Error(spec.source + ": SentencePiece rejects the model: " + error);
  // Tokens added by tokenizer_config.json may follow the model's pieces.
  const int pieces = api_->piece_size(sp_);
  if (pieces != static_cast<int>(proto.pieces.size()) || pieces > vocab_.size()) {
    api_->destroy(sp_);
    throw Error(spec.source + ": SentencePiece reports " + std::to_string(pieces) +
                " pieces, the model lists " + std::to_string(proto.pieces.size()));
  }
}

SentencePieceTokenizer::~SentencePieceTokenizer() {
  if (sp_ != nullptr) api_->destroy(sp_);
}

void SentencePieceTokenizer::encode_text(std::string_view text, bool /*after_special*/,
                                         std::vector<int32_t>& out) const {
  // SentencePiece adds its dummy prefix to every call; every plain run starts the text or
  // follows a special token, which is exactly where llama.cpp adds it.
  std::vector<int> ids;
  std::string error;
  if (!api_->encode(sp_, text, &ids, &error))
    throw Error(source_ + ": SentencePiece cannot encode the text: " + error);
  out.insert(out.end(), ids.begin(), ids.end());
}

}  // namespace kvs
