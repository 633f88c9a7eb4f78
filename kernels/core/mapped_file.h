#pragma once
// Read-only memory mapping of a whole file (zero copy: the page cache is the weight store).
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

namespace kvs {

class MappedFile {
 public:
  // Throws kvs::Error naming the path when it cannot be opened or mapped.
  explicit MappedFile(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  std::span<const uint8_t> bytes() const { return {data_, size_}; }

 private:
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kvs
