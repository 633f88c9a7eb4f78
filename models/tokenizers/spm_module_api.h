#pragma once
// The interface of the SentencePiece module (libkvsieve_spm.so, modules/sentencepiece/).
// libsentencepiece is loaded only when a tokenizer.model is: mapping it into every run cost
// 0.6 MiB of resident code and relocated data for models that never use it (GGUF files carry
// their own vocabulary). Both sides are built together, so C++ types cross the boundary;
// exceptions do not (the module reports errors in `error`).
#include <string>
#include <string_view>
#include <vector>

namespace kvs {

inline constexpr int kSpmModuleApiVersion = 1;
inline constexpr const char* kSpmModuleName = "libkvsieve_spm.so";

struct SpmModuleApi {
  int version;
  // A processor for a serialized ModelProto, or null with *error set.
  void* (*load)(std::string_view model_bytes, std::string* error);
  int (*piece_size)(const void* processor);
  // Appends the ids of `text`; false with *error set when the library fails.
  bool (*encode)(const void* processor, std::string_view text, std::vector<int>* ids,
                 std::string* error);
  void (*destroy)(void* processor);
};

}  // namespace kvs

// The module's one exported symbol.
extern "C" const kvs::SpmModuleApi* kvsieve_spm_module();
