#pragma once
// A small GGUF v3 writer: metadata of every kind and tensors of any dtype. It writes exactly
// what it is given (duplicate keys or names included) so tests can craft bad files; the
// reader is the validator. Files are written atomically (temp file + rename).
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/core/dtype.h"
#include "models/formats/metadata.h"

namespace kvs {

class GgufWriter {
 public:
  // An alignment other than 32 is recorded as general.alignment (u32) unless the caller
  // adds that key itself.
  explicit GgufWriter(uint32_t alignment = 32);

  // Keys are written in the order added.
  void add(std::string key, MetaValue v) { kv_.emplace_back(std::move(key), std::move(v)); }
  void add_u32(std::string key, uint32_t v) {
    add(std::move(key), MetaValue::of_int(v, MetaType::U32));
  }
  void add_f32(std::string key, float v) {
    add(std::move(key), MetaValue::of_float(v, MetaType::F32));
  }
  void add_string(std::string key, std::string v) {
    add(std::move(key), MetaValue::of_string(std::move(v)));
  }
  void add_strings(std::string key, std::vector<std::string> v);
  void add_ints(std::string key, std::vector<int64_t> v, MetaType elem = MetaType::I32);
  void add_floats(std::string key, std::vector<double> v, MetaType elem = MetaType::F32);

  // ne in ggml order (ne[0] contiguous), 1..4 dims. data must hold exactly the tensor's
  // bytes (row_bytes(ne[0]) * rows) and stay alive until write() returns.
  void add_tensor(std::string name, DType type, std::vector<int64_t> ne, const void* data,
                  size_t nbytes);

  // Throws kvs::Error naming the path on an I/O failure; the target is then untouched.
  void write(const std::string& path) const;

 private:
  struct Tensor {
    std::string name;
    DType type;
    std::vector<int64_t> ne;
    const void* data;
    size_t nbytes;
  };
  uint32_t alignment_;
  std::vector<std::pair<std::string, MetaValue>> kv_;
  std::vector<Tensor> tensors_;
};

}  // namespace kvs
