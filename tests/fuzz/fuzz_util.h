#pragma once
// Shared helpers of the libFuzzer targets: the readers take paths and mmap, so each
// process writes the input to its own directory (in /dev/shm when it exists), removed at exit.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "kernels/core/dtype.h"
#include "kernels/core/error.h"
#include "models/formats/weight_source.h"

namespace kvs::fuzz {

class ScratchDir {
 public:
  ScratchDir() {
    const char* base = std::filesystem::is_directory("/dev/shm") ? "/dev/shm" : "/tmp";
    std::string tmpl = std::string(base) + "/kvs_fuzz_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) {
      std::perror("mkdtemp");
      std::abort();
    }
    path_ = tmpl;
  }
  ~ScratchDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string file(std::string_view name) const { return path_ + "/" + std::string(name); }

  // Writes (or replaces) one file; a harness failure, not an input problem, aborts.
  std::string write(std::string_view name, std::string_view bytes) const {
    const std::string p = file(name);
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!f) {
      std::fprintf(stderr, "fuzz harness: cannot write %s\n", p.c_str());
      std::abort();
    }
    return p;
  }
  void remove(std::string_view name) const {
    std::error_code ec;
    std::filesystem::remove(file(name), ec);
  }

 private:
  std::string path_;
};

// One scratch directory per process, removed when the fuzzer exits normally.
inline ScratchDir& scratch() {
  static ScratchDir dir;
  return dir;
}

[[noreturn]] inline void violated(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz invariant violated: %s: %s\n", what, detail.c_str());
  std::fflush(stderr);
  std::abort();
}

// What every consumer of a WeightSource relies on: each tensor's bytes lie inside its file
// (or an owned buffer) and match its shape and type.
inline void check_weights(const WeightSource& ws) {
  for (const TensorInfo& t : ws.tensors()) {
    if (t.n_dims < 1 || t.n_dims > 4) violated("n_dims", t.name);
    int64_t n = 1;
    for (int64_t d : t.ne) {
      if (d < 0) violated("negative ne", t.name);
      if (d != 0 && n > INT64_MAX / d) violated("nelements overflow", t.name);
      n *= d;
    }
    const auto& tr = dtype_traits(t.dtype);
    if (t.ne[0] % tr.block_size != 0) violated("ne[0] not a multiple of the block", t.name);
    const uint64_t expect = static_cast<uint64_t>(n / tr.block_size) * tr.block_bytes;
    if (t.nbytes != expect) violated("nbytes != shape * type", t.name);
    if (t.nbytes > 0 && t.data == nullptr) violated("null data", t.name);
    if (!t.file.empty()) {
      std::error_code ec;
      const uint64_t file_size = std::filesystem::file_size(t.file, ec);
      if (ec) violated("tensor file", t.name + " in " + t.file);
      if (t.file_offset > file_size || t.nbytes > file_size - t.file_offset)
        violated("tensor outside the file", t.name);
    }
    // Touch the first and last byte: reading outside the mapping faults.
    if (t.nbytes > 0) {
      volatile uint8_t sink = static_cast<const uint8_t*>(t.data)[0];
      sink = static_cast<const uint8_t*>(t.data)[t.nbytes - 1];
      (void)sink;
    }
  }
}

}  // namespace kvs::fuzz
