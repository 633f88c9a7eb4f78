#pragma once
// WeightSource: metadata + named tensors of one model, from a GGUF file or an HF
// safetensors directory. Tensor names and shapes always use GGUF conventions
// (names like "blk.0.attn_q.weight", ne[0] the contiguous dimension), so models never
// care where the weights came from.
#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kernels/core/dtype.h"
#include "kernels/core/tensor.h"
#include "models/formats/metadata.h"

namespace kvs {

struct TensorInfo {
  std::string name;  // GGUF name
  DType dtype = DType::F32;
  std::array<int64_t, 4> ne{1, 1, 1, 1};  // ggml order: ne[0] contiguous
  int n_dims = 1;
  const void* data = nullptr;  // into the mapping (or an owned buffer)
  size_t nbytes = 0;
  std::string file;          // file holding the data
  uint64_t file_offset = 0;  // absolute offset of the data in `file`

  Tensor view() const { return Tensor{data, dtype, ne, n_dims}; }
  int64_t nelements() const { return ne[0] * ne[1] * ne[2] * ne[3]; }
};

class WeightSource {
 public:
  virtual ~WeightSource() = default;

  const std::string& path() const { return path_; }
  // "gguf" or "safetensors".
  virtual std::string_view format() const = 0;
  const MetaMap& metadata() const { return meta_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }
  const TensorInfo* find_tensor(std::string_view name) const;
  // Throws kvs::Error naming the file and the tensor when absent.
  const TensorInfo& tensor(std::string_view name) const;
  // For an HF directory: the directory; for a GGUF file: empty.
  virtual std::string hf_dir() const { return {}; }
  // Sum of tensor bytes.
  size_t total_bytes() const;

 protected:
  explicit WeightSource(std::string path) : path_(std::move(path)), meta_(path_) {}
  // Registers a tensor; throws kvs::Error on a duplicate name.
  void add_tensor(TensorInfo info);

  std::string path_;
  MetaMap meta_;
  std::vector<TensorInfo> tensors_;
  std::unordered_map<std::string, size_t> index_;
};

// Opens a GGUF file, a .safetensors file next to config.json, or an HF model directory.
// Throws kvs::Error with the path and the reason.
std::unique_ptr<WeightSource> open_weights(const std::string& path);

}  // namespace kvs
