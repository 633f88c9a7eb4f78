// The backend module itself: it loads with every symbol resolved against the binary that
// opens it, and answers (on a machine without a device, with the reason).
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <string>

#include "engine/cuda_backend_api.h"

namespace kvs {
namespace {

TEST(CudaBackendModule, LoadsAndAnswers) {
  void* h = dlopen(KVSIEVE_CUDA_MODULE_PATH, RTLD_NOW | RTLD_LOCAL);
  ASSERT_NE(h, nullptr) << dlerror();
  using Entry = const CudaBackendApi* (*)();
  const auto entry = reinterpret_cast<Entry>(dlsym(h, "kvsieve_cuda_backend"));
  ASSERT_NE(entry, nullptr);
  ASSERT_EQ(entry()->version, kCudaBackendApiVersion);
  std::string why;
  const bool ok = entry()->available(&why);
  EXPECT_TRUE(ok || !why.empty());
}

}  // namespace
}  // namespace kvs
