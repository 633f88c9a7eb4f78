#pragma once
// Where tests find shared data (../shared/data), downloaded models (.cache/models) and
// committed fixtures. Tests that need an absent file call GTEST_SKIP with the path.
#include <cstdlib>
#include <filesystem>
#include <string>

namespace kvs::test {

inline std::string shared_data(const std::string& rel) {
  const char* env = std::getenv("KVSIEVE_SHARED_DATA");
  return (env != nullptr ? std::string(env) : std::string(KVS_SHARED_DATA)) + "/" + rel;
}

inline std::string model_cache(const std::string& rel) {
  const char* env = std::getenv("KVSIEVE_MODEL_DIR");
  return (env != nullptr ? std::string(env) : std::string(KVS_MODEL_CACHE)) + "/" + rel;
}

inline std::string fixture(const std::string& rel) {
  return std::string(KVS_FIXTURES) + "/" + rel;
}

inline bool exists(const std::string& p) {
  return std::filesystem::exists(p);
}

}  // namespace kvs::test

#define KVS_REQUIRE_FILE(path)                                                      \
  do {                                                                              \
    if (!::kvs::test::exists(path)) GTEST_SKIP() << "test file absent: " << (path); \
  } while (0)

#define KVS_SMOLLM2 ::kvs::test::model_cache("SmolLM2-135M-Instruct.Q4_1.gguf")
#define KVS_GEMMA3 ::kvs::test::model_cache("gemma-3-270m-q4_k_m.gguf")
#define KVS_STORIES ::kvs::test::shared_data("models/stories260K.gguf")
