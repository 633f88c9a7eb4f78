// The CUDA backend is a module loaded on first use (engine/cuda_backend_api.h): a CPU run on a
// machine without a CUDA driver must not map cuBLAS, which costs ~150 MiB of resident memory.
#include <dlfcn.h>
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>
#include <string>

#include "engine/engine.h"
#include "support/paths.h"

namespace kvs {
namespace {

std::string own_maps() {
  std::ifstream f("/proc/self/maps");
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

TEST(CudaBackendLoading, AutoDeviceWithoutADriverMapsNoCuda) {
  KVS_REQUIRE_FILE(KVS_STORIES);
  if (dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL) != nullptr)
    GTEST_SKIP() << "a CUDA driver is installed: auto loads the backend here";
  EngineOptions eo;
  eo.device = "auto";
  const auto e = Engine::load(KVS_STORIES, eo);
  EXPECT_EQ(std::string(e->device()), "cpu");
  std::string why;
  EXPECT_FALSE(cuda_available(&why));
  EXPECT_FALSE(why.empty());
  const std::string maps = own_maps();
  EXPECT_EQ(maps.find("libcublas"), std::string::npos) << why;
  EXPECT_EQ(maps.find("libcudart"), std::string::npos) << why;
  EXPECT_EQ(maps.find("libkvsieve_cuda"), std::string::npos) << why;
}

}  // namespace
}  // namespace kvs
