#pragma once
// GGUF v2/v3 reader over a read-only mmap: tensor data pointers point into the mapping,
// which the source keeps alive. Every size and offset is checked against the file before use.
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "kernels/core/mapped_file.h"
#include "models/formats/weight_source.h"

namespace kvs {

// GGUF defaults and limits (FORMATS.md section 1; the limits follow ggml's gguf.cpp).
inline constexpr uint32_t kGgufMagic = 0x46554747;  // "GGUF" read as u32 LE
inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr uint64_t kGgufMaxStringBytes = uint64_t{1} << 30;
inline constexpr uint64_t kGgufMaxArrayItems = uint64_t{1} << 30;
inline constexpr size_t kGgufMaxNameBytes = 63;  // GGML_MAX_NAME (64) includes the NUL

class GgufSource : public WeightSource {
 public:
  // Throws kvs::Error naming the path and the offending key/tensor/offset.
  explicit GgufSource(const std::string& path);

  std::string_view format() const override { return "gguf"; }
  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  // Absolute file offset of the tensor data section.
  uint64_t data_offset() const { return data_offset_; }
  const MappedFile& file() const { return *file_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
};

std::unique_ptr<WeightSource> open_gguf(const std::string& path);

}  // namespace kvs
