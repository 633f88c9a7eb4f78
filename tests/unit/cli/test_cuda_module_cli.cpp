// The CUDA backend module's load path on a machine with a driver, emulated with the toolkit's
// stub libcuda (docs/cuda.md): `--device cuda` reaches the module, which reports the stub,
// and a module that cannot be loaded is named in one line. Skips where the build has no
// module or the toolkit no stub.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "support/cli.h"
#include "support/paths.h"
#include "support/scoped_env.h"

namespace kvs {
namespace {

namespace fs = std::filesystem;

fs::path stub_driver() {
  for (const char* p :
       {"/usr/local/cuda/lib64/stubs/libcuda.so", "/usr/local/cuda/lib/stubs/libcuda.so",
        "/usr/local/cuda/targets/x86_64-linux/lib/stubs/libcuda.so"})
    if (fs::exists(p)) return p;
  return {};
}

TEST(CliCudaModule, DeviceCudaReachesTheModuleOrNamesWhyItCannot) {
  const fs::path module = fs::path(KVSIEVE_BIN).parent_path() / "libkvsieve_cuda.so";
  if (!fs::exists(module)) GTEST_SKIP() << "this build has no CUDA module";
  const fs::path stub = stub_driver();
  if (stub.empty()) GTEST_SKIP() << "no CUDA stub driver in the toolkit";
  KVS_REQUIRE_FILE(KVS_STORIES);
  const fs::path dir = fs::temp_directory_path() / ("kvs_cuda_stub_" + std::to_string(getpid()));
  fs::create_directories(dir);
  fs::remove(dir / "libcuda.so.1");
  fs::create_symlink(stub, dir / "libcuda.so.1");
  test::ScopedEnv ld("LD_LIBRARY_PATH", dir.string());
  const std::vector<std::string> args = {"generate", "-m", KVS_STORIES, "-p",  "Hi",
                                         "-n",       "1",  "--device",  "cuda"};
  {
    const auto r = test::run_cli(args);
    EXPECT_EQ(r.code, 1) << r.err;
    const auto lines = test::error_lines(r.err);
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_NE(lines[0].find("--device cuda:"), std::string::npos) << lines[0];
    EXPECT_NE(lines[0].find("stub"), std::string::npos) << lines[0];  // the module's answer
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  {
    test::ScopedEnv missing("KVSIEVE_CUDA_MODULE", (dir / "missing.so").string());
    const auto r = test::run_cli(args);
    EXPECT_EQ(r.code, 1) << r.err;
    const auto lines = test::error_lines(r.err);
    ASSERT_EQ(lines.size(), 1u) << r.err;
    EXPECT_NE(lines[0].find("cannot load the CUDA backend"), std::string::npos) << lines[0];
    EXPECT_NE(lines[0].find("missing.so"), std::string::npos) << lines[0];
  }
  std::error_code ec;
  fs::remove_all(dir, ec);
}

}  // namespace
}  // namespace kvs
