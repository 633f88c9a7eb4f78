// Finding the CUDA backend. Builds without CUDA never have a device. Builds with CUDA load
// the backend module (engine/cuda_backend_api.h) on first use, and only where a CUDA driver
// is installed, so that CPU runs never map cuBLAS.
#include "engine/device_runner.h"

#include "kernels/core/error.h"

#ifdef KVSIEVE_HAVE_CUDA
#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <vector>

#include "engine/cuda_backend_api.h"
#endif

namespace kvs {

#ifndef KVSIEVE_HAVE_CUDA

bool cuda_available(std::string* why) {
  if (why != nullptr)
    *why = "this kvsieve was built without CUDA (configure with -DKVSIEVE_CUDA=ON and nvcc)";
  return false;
}

std::unique_ptr<DeviceModel> load_cuda_model(const Model&) {
  std::string why;
  cuda_available(&why);
  throw Error(why);
}

#else

namespace {

constexpr const char* kModuleName = "libkvsieve_cuda.so";

// Where the module may be: KVSIEVE_CUDA_MODULE, beside the executable, the build tree.
std::vector<std::string> module_candidates() {
  std::vector<std::string> out;
  if (const char* env = std::getenv("KVSIEVE_CUDA_MODULE"); env != nullptr && *env != '\0')
    return {env};
  std::error_code ec;
  const std::filesystem::path exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) out.push_back((exe.parent_path() / kModuleName).string());
  out.emplace_back(KVSIEVE_CUDA_MODULE_PATH);
  return out;
}

struct Backend {
  const CudaBackendApi* api = nullptr;
  std::string error;  // why api is null
};

Backend open_backend() {
  Backend b;
  // No driver, no device: decided without loading the CUDA runtime and cuBLAS at all.
  if (dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL) == nullptr) {
    b.error = "no CUDA driver (libcuda.so.1 not found)";
    return b;
  }
  std::string tried;
  for (const std::string& path : module_candidates()) {
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* err = dlerror();
      tried += (tried.empty() ? "" : "; ") + std::string(err != nullptr ? err : path);
      continue;
    }
    using Entry = const CudaBackendApi* (*)();
    const auto entry = reinterpret_cast<Entry>(dlsym(h, "kvsieve_cuda_backend"));
    if (entry == nullptr || entry()->version != kCudaBackendApiVersion) {
      tried += (tried.empty() ? "" : "; ") + path + ": not a matching kvsieve CUDA module";
      continue;
    }
    b.api = entry();
    return b;
  }
  b.error = "cannot load the CUDA backend (" + tried + ")";
  return b;
}

const Backend& backend() {
  static const Backend b = open_backend();
  return b;
}

}  // namespace

bool cuda_available(std::string* why) {
  const Backend& b = backend();
  if (b.api == nullptr) {
    if (why != nullptr) *why = b.error;
    return false;
  }
  return b.api->available(why);
}

std::unique_ptr<DeviceModel> load_cuda_model(const Model& m) {
  const Backend& b = backend();
  if (b.api == nullptr) throw Error("no CUDA device: " + b.error);
  return b.api->load(m);
}

#endif

}  // namespace kvs
