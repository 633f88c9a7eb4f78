#pragma once
// Writes the tokenizer of a GGUF model as HF files, for the converter: tokenizer.json for
// `gpt2` vocabs, tokenizer.model (a SentencePiece ModelProto) for `llama` vocabs, plus
// tokenizer_config.json. The files load back through load_hf_tokenizer with the same ids.
#include <string>

namespace kvs {

class WeightSource;

// Creates out_dir if needed; each file is written to a temporary name and renamed into
// place. Throws kvs::Error for unsupported or malformed vocabs and I/O failures.
void export_hf_tokenizer(const WeightSource& gguf, const std::string& out_dir);

}  // namespace kvs
