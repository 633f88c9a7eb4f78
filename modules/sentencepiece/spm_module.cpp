// libkvsieve_spm.so: the SentencePiece library behind SpmModuleApi. Every library call is
// wrapped, so that neither a status nor a C++ exception escapes the module.
#include <sentencepiece_processor.h>

#include <exception>
#include <memory>

#include "models/tokenizers/spm_module_api.h"

namespace {

using sentencepiece::SentencePieceProcessor;

void* load(std::string_view model_bytes, std::string* error) {
  try {
    auto sp = std::make_unique<SentencePieceProcessor>();
    const auto status = sp->LoadFromSerializedProto(model_bytes);
    if (!status.ok()) {
      *error = status.ToString();
      return nullptr;
    }
    return sp.release();
  } catch (const std::exception& e) {
    *error = e.what();
    return nullptr;
  }
}

int piece_size(const void* p) {
  return static_cast<const SentencePieceProcessor*>(p)->GetPieceSize();
}

bool encode(const void* p, std::string_view text, std::vector<int>* ids, std::string* error) {
  try {
    std::vector<int> out;
    const auto status = static_cast<const SentencePieceProcessor*>(p)->Encode(text, &out);
    if (!status.ok()) {
      *error = status.ToString();
      return false;
    }
    ids->insert(ids->end(), out.begin(), out.end());
    return true;
  } catch (const std::exception& e) {
    *error = e.what();
    return false;
  }
}

void destroy(void* p) {
  delete static_cast<SentencePieceProcessor*>(p);
}

constexpr kvs::SpmModuleApi kApi{kvs::kSpmModuleApiVersion, load, piece_size, encode, destroy};

}  // namespace

extern "C" __attribute__((visibility("default"))) const kvs::SpmModuleApi* kvsieve_spm_module() {
  return &kApi;
}
