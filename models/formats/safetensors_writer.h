#pragma once
// Writing .safetensors files (single file, tensors in insertion order) and the atomic
// temp-file-then-rename helper every output file of kvsieve goes through, so a reader never
// sees half a file and an interrupted run leaves the previous file intact.
#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/core/dtype.h"

namespace kvs {

// Writes to a temporary file beside `path`; commit() renames it over `path`. Destroying an
// uncommitted AtomicFile removes the temporary file.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  uint64_t bytes_written() const { return written_; }
  // Flushes, fsyncs and renames; throws kvs::Error naming the path on any I/O failure.
  void commit();

 private:
  std::string path_;
  std::string tmp_;
  std::FILE* f_ = nullptr;
  uint64_t written_ = 0;
  bool committed_ = false;
};

void write_file_atomic(const std::string& path, std::string_view content);

class SafetensorsWriter {
 public:
  // Produces exactly the tensor's byte count into `out` (checked by write()).
  using Fill = std::function<void(AtomicFile& out)>;

  void set_metadata(std::string key, std::string value) {
    metadata_[std::move(key)] = std::move(value);
  }
  // `dtype` is a safetensors dtype name ("F32", "BF16", "I64", ...). `data` must stay valid
  // until write() returns. Throws kvs::Error on a duplicate name or an unknown dtype.
  void add_tensor(std::string name, std::string dtype, std::vector<int64_t> shape,
                  const void* data);
  void add_tensor(std::string name, std::string dtype, std::vector<int64_t> shape, Fill fill);
  void add_tensor(std::string name, DType dtype, std::vector<int64_t> shape, const void* data);

  size_t size() const { return tensors_.size(); }
  // Writes the file atomically. Returns its size in bytes.
  uint64_t write(const std::string& path) const;

 private:
  struct Entry {
    std::string name;
    std::string dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes = 0;
    Fill fill;
  };
  void add(Entry e);

  std::map<std::string, std::string> metadata_;
  std::vector<Entry> tensors_;
};

}  // namespace kvs
