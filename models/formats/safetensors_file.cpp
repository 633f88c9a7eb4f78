#include "models/formats/safetensors_file.h"

#include <algorithm>
#include <array>
#include <cstring>
#include <nlohmann/json.hpp>
#include <set>

#include "kernels/core/error.h"

namespace kvs {
namespace {

using json = nlohmann::json;

struct DtypeBits {
  std::string_view name;
  unsigned bits;
};

// Every dtype of the safetensors spec, including the newer sub-byte and complex ones, so
// that a file holding one is still readable when no model tensor uses it.
constexpr std::array<DtypeBits, 20> kDtypes{{
    {"BOOL", 8},    {"U8", 8},   {"I8", 8},   {"F8_E5M2", 8}, {"F8_E4M3", 8},
    {"F8_E8M0", 8}, {"I16", 16}, {"U16", 16}, {"F16", 16},    {"BF16", 16},
    {"I32", 32},    {"U32", 32}, {"F32", 32}, {"F64", 64},    {"I64", 64},
    {"U64", 64},    {"C64", 64}, {"F4", 4},   {"F6_E2M3", 6}, {"F6_E3M2", 6},
}};

uint64_t read_u64_le(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// nlohmann keeps the last of duplicate keys; a safetensors header with two entries of the
// same name is ambiguous, so duplicates are detected while parsing.
json parse_rejecting_duplicates(std::string_view text, const std::string& path) {
  std::vector<std::set<std::string>> seen;  // one key set per open object
  auto cb = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
    if (ev == json::parse_event_t::object_start) {
      seen.emplace_back();
    } else if (ev == json::parse_event_t::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (ev == json::parse_event_t::key && !seen.empty()) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (!seen.back().insert(key).second)
        throw Error(path + ": safetensors header: duplicate key '" + key + "'");
    }
    return true;
  };
  try {
    return json::parse(text.begin(), text.end(), cb);
  } catch (const json::exception& e) {
    throw Error(path + ": safetensors header is not valid JSON: " + e.what());
  }
}

uint64_t get_u64(const json& v, const std::string& what) {
  if (!v.is_number_unsigned()) throw Error(what + " must be a non-negative integer");
  return v.get<uint64_t>();
}

}  // namespace

std::optional<unsigned> safetensors_dtype_bits(std::string_view name) {
  for (const auto& d : kDtypes)
    if (d.name == name) return d.bits;
  return std::nullopt;
}

std::string_view safetensors_dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F16:
      return "F16";
    case DType::BF16:
      return "BF16";
    default:
      throw Error("safetensors: dtype " + std::string(dtype_name(t)) +
                  " cannot be written (only F32, F16, BF16)");
  }
}

SafetensorsFile::SafetensorsFile(const std::string& path)
    : file_(std::make_shared<MappedFile>(path)) {
  const uint64_t size = file_->size();
  if (size < 8)
    throw Error(path + ": truncated safetensors file (" + std::to_string(size) +
                " bytes, need at least 8 for the header length)");
  const uint64_t n = read_u64_le(file_->data());
  if (n > kSafetensorsMaxHeader)
    throw Error(path + ": safetensors header length " + std::to_string(n) + " exceeds the limit " +
                std::to_string(kSafetensorsMaxHeader));
  if (n > size - 8)
    throw Error(path + ": truncated safetensors file: header length " + std::to_string(n) +
                " but only " + std::to_string(size - 8) + " bytes follow");
  data_start_ = 8 + n;
  parse_header(std::string_view(reinterpret_cast<const char*>(file_->data()) + 8, n));
  validate_layout();
}

void SafetensorsFile::parse_header(std::string_view text) {
  const std::string& p = path();
  const json h = parse_rejecting_duplicates(text, p);
  if (!h.is_object()) throw Error(p + ": safetensors header is not a JSON object");
  const uint64_t buffer_size = file_size() - data_start_;

  for (const auto& [name, entry] : h.items()) {
    if (name == "__metadata__") {
      if (!entry.is_object()) throw Error(p + ": __metadata__ must be an object");
      for (const auto& [k, v] : entry.items()) {
        if (!v.is_string()) throw Error(p + ": __metadata__ key '" + k + "' must be a string");
        metadata_[k] = v.get<std::string>();
      }
      continue;
    }
    const std::string where = p + ": tensor '" + name + "'";
    if (!entry.is_object()) throw Error(where + ": entry must be an object");
    const auto dt = entry.find("dtype");
    const auto sh = entry.find("shape");
    const auto off = entry.find("data_offsets");
    if (dt == entry.end() || !dt->is_string()) throw Error(where + ": missing string 'dtype'");
    if (sh == entry.end() || !sh->is_array()) throw Error(where + ": missing array 'shape'");
    if (off == entry.end() || !off->is_array() || off->size() != 2)
      throw Error(where + ": 'data_offsets' must be [begin, end]");

    SafetensorsTensor t;
    t.name = name;
    t.dtype_name = dt->get<std::string>();
    const auto bits = safetensors_dtype_bits(t.dtype_name);
    if (!bits) throw Error(where + ": unknown dtype '" + t.dtype_name + "'");
    if (t.dtype_name == "F32") t.dtype = DType::F32;
    if (t.dtype_name == "F16") t.dtype = DType::F16;
    if (t.dtype_name == "BF16") t.dtype = DType::BF16;

    uint64_t numel = 1;
    for (const auto& d : *sh) {
      const uint64_t dim = get_u64(d, where + ": shape entry");
      if (dim > static_cast<uint64_t>(INT64_MAX) || __builtin_mul_overflow(numel, dim, &numel))
        throw Error(where + ": shape overflows");
      t.shape.push_back(static_cast<int64_t>(dim));
    }
    uint64_t nbits = 0;
    if (__builtin_mul_overflow(numel, uint64_t{*bits}, &nbits))
      throw Error(where + ": shape overflows");
    if (nbits % 8 != 0)
      throw Error(where + ": " + t.dtype_name + " data is not a whole byte count");
    const uint64_t expect = nbits / 8;

    t.begin = get_u64((*off)[0], where + ": data_offsets");
    t.end = get_u64((*off)[1], where + ": data_offsets");
    if (t.end < t.begin)
      throw Error(where + ": data_offsets end " + std::to_string(t.end) + " < begin " +
                  std::to_string(t.begin));
    if (t.end - t.begin != expect)
      throw Error(where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                  std::to_string(t.end) + ") hold " + std::to_string(t.end - t.begin) +
                  " bytes but dtype " + t.dtype_name + " and the shape need " +
                  std::to_string(expect));
    if (t.end > buffer_size)
      throw Error(where + ": data_offsets [" + std::to_string(t.begin) + ", " +
                  std::to_string(t.end) + ") lie outside the data buffer of " +
                  std::to_string(buffer_size) + " bytes");
    t.file_offset = data_start_ + t.begin;
    t.data = file_->data() + t.file_offset;
    tensors_.push_back(std::move(t));
  }
}

void SafetensorsFile::validate_layout() {
  std::sort(tensors_.begin(), tensors_.end(), [](const auto& a, const auto& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  const uint64_t buffer_size = file_size() - data_start_;
  uint64_t expected = 0;
  const SafetensorsTensor* prev = nullptr;
  for (const auto& t : tensors_) {
    if (t.begin > expected)
      throw Error(path() + ": gap in the data buffer: bytes [" + std::to_string(expected) + ", " +
                  std::to_string(t.begin) + ") before tensor '" + t.name + "' belong to no tensor");
    if (t.begin < expected)
      throw Error(path() + ": tensor '" + t.name + "' at offset " + std::to_string(t.begin) +
                  " overlaps tensor '" + (prev != nullptr ? prev->name : std::string("?")) +
                  "' which ends at " + std::to_string(expected));
    expected = t.end;
    prev = &t;
  }
  if (expected != buffer_size)
    throw Error(path() + ": data buffer has " + std::to_string(buffer_size - expected) +
                " bytes after the last tensor (ends at offset " + std::to_string(expected) +
                " of " + std::to_string(buffer_size) + ")");
  for (size_t i = 0; i < tensors_.size(); ++i) index_.emplace(tensors_[i].name, i);
}

const SafetensorsTensor* SafetensorsFile::find(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

}  // namespace kvs
