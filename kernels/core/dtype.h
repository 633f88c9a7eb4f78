#pragma once
// Element types of tensors. Values equal ggml's `enum ggml_type` so GGUF type ids map 1:1.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kvs {

enum class DType : uint32_t {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  I8 = 24,
  I16 = 25,
  I32 = 26,
  I64 = 27,
  F64 = 28,
  BF16 = 30,
};

struct DTypeTraits {
  std::string_view name;
  int64_t block_size;  // elements per block (1 for scalar types)
  size_t block_bytes;  // bytes per block
  bool quantized;
};

// nullopt for ids kvsieve does not know (removed or newer ggml types).
std::optional<DType> dtype_from_id(uint32_t id);
const DTypeTraits& dtype_traits(DType t);
inline std::string_view dtype_name(DType t) {
  return dtype_traits(t).name;
}
std::optional<DType> dtype_from_name(std::string_view name);  // "Q4_K", "F16", case-insensitive

// Types weights may be stored in (what matmul and the dequantizer read).
bool dtype_is_weight_type(DType t);

// Bytes of a row of n elements; n must be a multiple of the block size (checked by callers).
inline size_t row_bytes(DType t, int64_t n) {
  const auto& tr = dtype_traits(t);
  return static_cast<size_t>(n / tr.block_size) * tr.block_bytes;
}

}  // namespace kvs
