#include "kernels/core/dtype.h"

#include <array>
#include <cctype>

#include "kernels/core/error.h"

namespace kvs {
namespace {

struct Entry {
  DType type;
  DTypeTraits traits;
};

constexpr std::array<Entry, 20> kTypes{{
    {DType::F32, {"F32", 1, 4, false}},      {DType::F16, {"F16", 1, 2, false}},
    {DType::Q4_0, {"Q4_0", 32, 18, true}},   {DType::Q4_1, {"Q4_1", 32, 20, true}},
    {DType::Q5_0, {"Q5_0", 32, 22, true}},   {DType::Q5_1, {"Q5_1", 32, 24, true}},
    {DType::Q8_0, {"Q8_0", 32, 34, true}},   {DType::Q8_1, {"Q8_1", 32, 36, true}},
    {DType::Q2_K, {"Q2_K", 256, 84, true}},  {DType::Q3_K, {"Q3_K", 256, 110, true}},
    {DType::Q4_K, {"Q4_K", 256, 144, true}}, {DType::Q5_K, {"Q5_K", 256, 176, true}},
    {DType::Q6_K, {"Q6_K", 256, 210, true}}, {DType::Q8_K, {"Q8_K", 256, 292, true}},
    {DType::I8, {"I8", 1, 1, false}},        {DType::I16, {"I16", 1, 2, false}},
    {DType::I32, {"I32", 1, 4, false}},      {DType::I64, {"I64", 1, 8, false}},
    {DType::F64, {"F64", 1, 8, false}},      {DType::BF16, {"BF16", 1, 2, false}},
}};

// kTypes indexed by type id (the kernels look traits up per call): -1 where no type.
constexpr auto kIndex = [] {
  std::array<int8_t, 32> index{};
  index.fill(-1);
  for (size_t i = 0; i < kTypes.size(); ++i)
    index[static_cast<uint32_t>(kTypes[i].type)] = static_cast<int8_t>(i);
  return index;
}();

}  // namespace

std::optional<DType> dtype_from_id(uint32_t id) {
  for (const auto& e : kTypes)
    if (static_cast<uint32_t>(e.type) == id) return e.type;
  return std::nullopt;
}

const DTypeTraits& dtype_traits(DType t) {
  const auto id = static_cast<uint32_t>(t);
  if (id < kIndex.size() && kIndex[id] >= 0) return kTypes[kIndex[id]].traits;
  KVS_CHECK(false, "unknown dtype " + std::to_string(static_cast<uint32_t>(t)));
}

std::optional<DType> dtype_from_name(std::string_view name) {
  for (const auto& e : kTypes) {
    if (e.traits.name.size() != name.size()) continue;
    bool eq = true;
    for (size_t i = 0; i < name.size(); ++i)
      if (std::toupper(static_cast<unsigned char>(name[i])) != e.traits.name[i]) eq = false;
    if (eq) return e.type;
  }
  return std::nullopt;
}

bool dtype_is_weight_type(DType t) {
  switch (t) {
    case DType::F32:
    case DType::F16:
    case DType::BF16:
    case DType::Q4_0:
    case DType::Q4_1:
    case DType::Q5_0:
    case DType::Q5_1:
    case DType::Q8_0:
    case DType::Q2_K:
    case DType::Q3_K:
    case DType::Q4_K:
    case DType::Q5_K:
    case DType::Q6_K:
      return true;
    default:
      return false;
  }
}

}  // namespace kvs
