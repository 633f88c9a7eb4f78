#pragma once
// One .safetensors file, memory-mapped and fully validated on open: an 8-byte header
// length, a JSON header, then a byte buffer that the tensors tile exactly.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kernels/core/dtype.h"
#include "kernels/core/mapped_file.h"

namespace kvs {

// The reference implementation refuses larger headers; so do we.
inline constexpr uint64_t kSafetensorsMaxHeader = 100'000'000;

struct SafetensorsTensor {
  std::string name;
  std::string dtype_name;      // as written in the header, e.g. "BF16"
  std::optional<DType> dtype;  // set for the dtypes kvsieve computes with: F32, F16, BF16
  std::vector<int64_t> shape;  // HF (row-major) order
  uint64_t begin = 0;          // data_offsets, relative to the buffer
  uint64_t end = 0;
  const uint8_t* data = nullptr;  // into the mapping
  uint64_t file_offset = 0;       // absolute offset of the data in the file

  uint64_t nbytes() const { return end - begin; }
};

// Bits per element of a safetensors dtype name (sub-byte types like F4 exist); nullopt when
// the name is not a safetensors dtype at all.
std::optional<unsigned> safetensors_dtype_bits(std::string_view name);
// "F32"/"F16"/"BF16" for the three loadable types; other DTypes have no safetensors name
// here and throw kvs::Error.
std::string_view safetensors_dtype_name(DType t);

class SafetensorsFile {
 public:
  // Maps and validates `path`; throws kvs::Error naming the file (and the tensor or offset)
  // on any malformed input.
  explicit SafetensorsFile(const std::string& path);

  const std::string& path() const { return file_->path(); }
  uint64_t file_size() const { return file_->size(); }
  // Absolute file offset of the byte buffer (8 + header length).
  uint64_t data_start() const { return data_start_; }
  // The string-to-string __metadata__ map (empty when absent).
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  // Tensors in buffer order.
  const std::vector<SafetensorsTensor>& tensors() const { return tensors_; }
  const SafetensorsTensor* find(std::string_view name) const;
  // The mapping outlives this object while a holder keeps it.
  std::shared_ptr<const MappedFile> mapping() const { return file_; }

 private:
  void parse_header(std::string_view json_text);
  void validate_layout();

  std::shared_ptr<MappedFile> file_;
  uint64_t data_start_ = 0;
  std::map<std::string, std::string> metadata_;
  std::vector<SafetensorsTensor> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

}  // namespace kvs
