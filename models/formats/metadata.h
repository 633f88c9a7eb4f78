#pragma once
// Model metadata as GGUF key/value pairs. GGUF files fill it directly; HF directories
// (config.json, tokenizer files) are translated into the same GGUF keys, so everything
// downstream reads one vocabulary of keys.
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "models/formats/string_list.h"

namespace kvs {

// Values equal GGUF's gguf_type ids.
enum class MetaType : int32_t {
  U8 = 0,
  I8 = 1,
  U16 = 2,
  I16 = 3,
  U32 = 4,
  I32 = 5,
  F32 = 6,
  Bool = 7,
  String = 8,
  Array = 9,
  U64 = 10,
  I64 = 11,
  F64 = 12,
};
std::string_view meta_type_name(MetaType t);
bool meta_type_is_int(MetaType t);
bool meta_type_is_float(MetaType t);

class MetaArray;

struct MetaValue {
  MetaType type = MetaType::U32;
  // Integers of every width are held as int64_t (u64 above INT64_MAX as its bit pattern),
  // floats as double.
  std::variant<int64_t, double, bool, std::string, std::shared_ptr<const MetaArray>> value;

  static MetaValue of_int(int64_t v, MetaType t = MetaType::I64) { return {t, v}; }
  static MetaValue of_float(double v, MetaType t = MetaType::F32) { return {t, v}; }
  static MetaValue of_bool(bool v) { return {MetaType::Bool, v}; }
  static MetaValue of_string(std::string v) { return {MetaType::String, std::move(v)}; }
  static MetaValue of_array(MetaArray a);

  std::string to_display(size_t max_items = 8) const;  // for `inspect`
};

// Arrays hold strings (a StringList), nested arrays (`items`), or packed little-endian
// scalars of elem_type's width (integers of every width, bools as 0/1 bytes, f32/f64). A GGUF
// file's arrays are views into its mapping: a vocabulary's tokens, scores and types are
// never copied onto the heap.
class MetaArray {
 public:
  MetaType elem_type = MetaType::U8;
  StringList strings;            // elem_type == String
  std::vector<MetaValue> items;  // elem_type == Array (GGUF allows it in principle)

  static MetaArray of_strings(StringList s);
  // Packs the values at t's width (u64 as its bit pattern, bools as 0/1).
  static MetaArray of_ints(const std::vector<int64_t>& v, MetaType t = MetaType::I32);
  static MetaArray of_floats(const std::vector<double>& v, MetaType t = MetaType::F32);
  static MetaArray of_items(std::vector<MetaValue> items);
  // n packed scalars of type t at `data`, owned by `keep`; the caller checked the bounds.
  static MetaArray view_scalars(MetaType t, size_t n, const uint8_t* data,
                                std::shared_ptr<const void> keep);

  size_t size() const;
  bool holds_ints() const { return meta_type_is_int(elem_type) || elem_type == MetaType::Bool; }
  bool holds_floats() const { return meta_type_is_float(elem_type); }
  // Element i of an integer/bool array (u64 above INT64_MAX as its bit pattern).
  int64_t int_at(size_t i) const;
  // Element i of a float array.
  double float_at(size_t i) const;
  // Copies; empty unless the array holds that kind.
  std::vector<int64_t> ints() const;
  std::vector<double> floats() const;

 private:
  const uint8_t* scalars_ = nullptr;  // [n_scalars_ * width of elem_type]
  size_t n_scalars_ = 0;
  std::shared_ptr<const void> keep_;
};

// Bytes of one scalar of type t (bool: 1); 0 for strings and arrays.
size_t meta_scalar_bytes(MetaType t);

class MetaMap {
 public:
  explicit MetaMap(std::string source = {}) : source_(std::move(source)) {}

  // Source named in error messages (a file path).
  const std::string& source() const { return source_; }
  void set_source(std::string s) { source_ = std::move(s); }

  bool has(std::string_view key) const { return find(key) != nullptr; }
  const MetaValue* find(std::string_view key) const;
  void set(std::string key, MetaValue v) { map_[std::move(key)] = std::move(v); }
  const std::map<std::string, MetaValue, std::less<>>& entries() const { return map_; }

  // Typed getters accept any integer width / any float width. A missing key or a value of
  // the wrong kind throws kvs::Error naming the source and the key.
  int64_t get_int(std::string_view key) const;
  int64_t get_int(std::string_view key, int64_t def) const;
  double get_float(std::string_view key) const;  // integers are accepted too
  double get_float(std::string_view key, double def) const;
  bool get_bool(std::string_view key, bool def) const;
  const std::string& get_string(std::string_view key) const;
  std::string get_string(std::string_view key, std::string_view def) const;
  const MetaArray& get_array(std::string_view key) const;
  const MetaArray* find_array(std::string_view key) const;

  [[noreturn]] void fail(std::string_view key, std::string_view what) const;

 private:
  std::string source_;
  std::map<std::string, MetaValue, std::less<>> map_;
};

}  // namespace kvs
