#include "models/tokenizers/spm_module.h"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "kernels/core/error.h"

namespace kvs {

namespace {

std::vector<std::string> candidates() {
  if (const char* env = std::getenv("KVSIEVE_SPM_MODULE"); env != nullptr && *env != '\0')
    return {env};
  std::vector<std::string> out;
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back((exe.parent_path() / kSpmModuleName).string());
#ifdef KVSIEVE_SPM_MODULE_PATH
  out.emplace_back(KVSIEVE_SPM_MODULE_PATH);
#endif
  return out;
}

}  // namespace

const SpmModuleApi& spm_module() {
  static std::mutex mu;
  static const SpmModuleApi* api = nullptr;
  std::lock_guard<std::mutex> lock(mu);
  if (api != nullptr) return *api;
  std::string tried;
  for (const std::string& path : candidates()) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* err = dlerror();
      tried += (tried.empty() ? "" : "; ") + std::string(err != nullptr ? err : path);
      continue;
    }
    using Entry = const SpmModuleApi* (*)();
    const auto entry = reinterpret_cast<Entry>(dlsym(h, "kvsieve_spm_module"));
    if (entry == nullptr || entry()->version != kSpmModuleApiVersion) {
      tried += (tried.empty() ? "" : "; ") + path + ": not a matching kvsieve SentencePiece module";
      dlclose(h);
      continue;
    }
    api = entry();
    return *api;
  }
  throw Error("cannot load the SentencePiece module " + std::string(kSpmModuleName) +
              " needed for tokenizer.model (" + tried + ")");
}

}  // namespace kvs
