#pragma once
// Tokenizers of HF model directories: tokenizer.json (byte-level BPE) or tokenizer.model
// (SentencePiece library), with tokenizer_config.json for special tokens, add_bos/add_eos
// and the chat template.
#include <memory>
#include <string>

#include "models/tokenizers/tokenizer.h"

namespace kvs {

class MetaMap;

// Prefers tokenizer.json unless it is SentencePiece-style (Metaspace), then tokenizer.model.
// `meta` (the model's metadata) supplies tokenizer.ggml.{bos,eos}_token_id when
// tokenizer_config.json names none. Throws kvs::Error naming the file and key.
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& dir, const MetaMap& meta);

}  // namespace kvs
