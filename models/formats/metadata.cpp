#include "models/formats/metadata.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "kernels/core/error.h"

namespace kvs {

std::string_view meta_type_name(MetaType t) {
  switch (t) {
    case MetaType::U8:
      return "u8";
    case MetaType::I8:
      return "i8";
    case MetaType::U16:
      return "u16";
    case MetaType::I16:
      return "i16";
    case MetaType::U32:
      return "u32";
    case MetaType::I32:
      return "i32";
    case MetaType::F32:
      return "f32";
    case MetaType::Bool:
      return "bool";
    case MetaType::String:
      return "string";
    case MetaType::Array:
      return "array";
    case MetaType::U64:
      return "u64";
    case MetaType::I64:
      return "i64";
    case MetaType::F64:
      return "f64";
  }
  return "unknown";
}

bool meta_type_is_int(MetaType t) {
  switch (t) {
    case MetaType::U8:
    case MetaType::I8:
    case MetaType::U16:
    case MetaType::I16:
    case MetaType::U32:
    case MetaType::I32:
    case MetaType::U64:
    case MetaType::I64:
      return true;
    default:
      return false;
  }
}

bool meta_type_is_float(MetaType t) {
  return t == MetaType::F32 || t == MetaType::F64;
}

MetaValue MetaValue::of_array(MetaArray a) {
  return {MetaType::Array, std::make_shared<const MetaArray>(std::move(a))};
}

size_t meta_scalar_bytes(MetaType t) {
  switch (t) {
    case MetaType::U8:
    case MetaType::I8:
    case MetaType::Bool:
      return 1;
    case MetaType::U16:
    case MetaType::I16:
      return 2;
    case MetaType::U32:
    case MetaType::I32:
    case MetaType::F32:
      return 4;
    case MetaType::U64:
    case MetaType::I64:
    case MetaType::F64:
      return 8;
    case MetaType::String:
    case MetaType::Array:
      return 0;
  }
  return 0;
}

MetaArray MetaArray::of_strings(StringList s) {
  MetaArray a;
  a.elem_type = MetaType::String;
  a.strings = std::move(s);
  return a;
}

MetaArray MetaArray::of_items(std::vector<MetaValue> items) {
  MetaArray a;
  a.elem_type = MetaType::Array;
  a.items = std::move(items);
  return a;
}

MetaArray MetaArray::view_scalars(MetaType t, size_t n, const uint8_t* data,
                                  std::shared_ptr<const void> keep) {
  KVS_CHECK(meta_scalar_bytes(t) > 0, "view_scalars needs a scalar type");
  MetaArray a;
  a.elem_type = t;
  a.scalars_ = data;
  a.n_scalars_ = n;
  a.keep_ = std::move(keep);
  return a;
}

namespace {

template <class T>
void put_scalar(uint8_t* p, T v) {
  std::memcpy(p, &v, sizeof(T));
}

template <class T>
T get_scalar(const uint8_t* p) {
  T v;
  std::memcpy(&v, p, sizeof(T));
  return v;
}

}  // namespace

MetaArray MetaArray::of_ints(const std::vector<int64_t>& v, MetaType t) {
  KVS_CHECK(meta_type_is_int(t) || t == MetaType::Bool, "of_ints needs an integer type");
  const size_t w = meta_scalar_bytes(t);
  auto buf = std::make_shared<std::vector<uint8_t>>(v.size() * w);  // [n * w] packed
  for (size_t i = 0; i < v.size(); ++i) {
    uint8_t* p = buf->data() + i * w;
    switch (t) {
      case MetaType::Bool:
        put_scalar<uint8_t>(p, v[i] != 0 ? 1 : 0);
        break;
      case MetaType::U8:
      case MetaType::I8:
        put_scalar<uint8_t>(p, static_cast<uint8_t>(v[i]));
        break;
      case MetaType::U16:
      case MetaType::I16:
        put_scalar<uint16_t>(p, static_cast<uint16_t>(v[i]));
        break;
      case MetaType::U32:
      case MetaType::I32:
        put_scalar<uint32_t>(p, static_cast<uint32_t>(v[i]));
        break;
      default:
        put_scalar<uint64_t>(p, static_cast<uint64_t>(v[i]));
        break;
    }
  }
  const uint8_t* data = buf->data();
  return view_scalars(t, v.size(), data, std::move(buf));
}

MetaArray MetaArray::of_floats(const std::vector<double>& v, MetaType t) {
  KVS_CHECK(meta_type_is_float(t), "of_floats needs a float type");
  const size_t w = meta_scalar_bytes(t);
  auto buf = std::make_shared<std::vector<uint8_t>>(v.size() * w);  // [n * w] packed
  for (size_t i = 0; i < v.size(); ++i) {
    if (t == MetaType::F32)
      put_scalar<float>(buf->data() + i * w, static_cast<float>(v[i]));
    else
      put_scalar<double>(buf->data() + i * w, v[i]);
  }
  const uint8_t* data = buf->data();
  return view_scalars(t, v.size(), data, std::move(buf));
}

size_t MetaArray::size() const {
  if (elem_type == MetaType::String) return strings.size();
  if (elem_type == MetaType::Array) return items.size();
  return n_scalars_;
}

int64_t MetaArray::int_at(size_t i) const {
  KVS_CHECK(holds_ints() && i < n_scalars_, "int_at: not an integer array or out of range");
  const uint8_t* p = scalars_ + i * meta_scalar_bytes(elem_type);
  switch (elem_type) {
    case MetaType::Bool:
      return get_scalar<uint8_t>(p) != 0 ? 1 : 0;
    case MetaType::U8:
      return get_scalar<uint8_t>(p);
    case MetaType::I8:
      return get_scalar<int8_t>(p);
    case MetaType::U16:
      return get_scalar<uint16_t>(p);
    case MetaType::I16:
      return get_scalar<int16_t>(p);
    case MetaType::U32:
      return get_scalar<uint32_t>(p);
    case MetaType::I32:
      return get_scalar<int32_t>(p);
    default:
      return get_scalar<int64_t>(p);
  }
}

double MetaArray::float_at(size_t i) const {
  KVS_CHECK(holds_floats() && i < n_scalars_, "float_at: not a float array or out of range");
  const uint8_t* p = scalars_ + i * meta_scalar_bytes(elem_type);
  return elem_type == MetaType::F32 ? get_scalar<float>(p) : get_scalar<double>(p);
}

std::vector<int64_t> MetaArray::ints() const {
  std::vector<int64_t> v;
  if (!holds_ints()) return v;
  v.reserve(n_scalars_);
  for (size_t i = 0; i < n_scalars_; ++i) v.push_back(int_at(i));
  return v;
}

std::vector<double> MetaArray::floats() const {
  std::vector<double> v;
  if (!holds_floats()) return v;
  v.reserve(n_scalars_);
  for (size_t i = 0; i < n_scalars_; ++i) v.push_back(float_at(i));
  return v;
}

namespace {

// u64 values above INT64_MAX are held as their bit pattern; print them unsigned.
std::string int_to_string(int64_t v, MetaType t) {
  if (t == MetaType::U64) return std::to_string(static_cast<uint64_t>(v));
  return std::to_string(v);
}

std::string float_to_string(double v) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.9g", v);
  return buf;
}

// Control characters would break the one-line-per-key layout of `inspect`.
std::string quote(std::string_view s, size_t max_chars) {
  std::string r = "\"";
  size_t n = 0;
  for (char c : s) {
    if (n++ == max_chars) {
      r += "...";
      break;
    }
    switch (c) {
      case '\n':
        r += "\\n";
        break;
      case '\t':
        r += "\\t";
        break;
      case '\r':
        r += "\\r";
        break;
      case '"':
        r += "\\\"";
        break;
      case '\\':
        r += "\\\\";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\x%02x", static_cast<unsigned char>(c));
          r += buf;
        } else {
          r += c;
        }
    }
  }
  return r + "\"";
}

constexpr size_t kMaxDisplayChars = 120;

std::string element_to_string(const MetaArray& a, size_t i, size_t max_items) {
  if (a.elem_type == MetaType::String) return quote(a.strings[i], kMaxDisplayChars);
  if (a.elem_type == MetaType::Array) return a.items[i].to_display(max_items);
  if (a.holds_floats()) return float_to_string(a.float_at(i));
  if (a.elem_type == MetaType::Bool) return a.int_at(i) != 0 ? "true" : "false";
  return int_to_string(a.int_at(i), a.elem_type);
}

}  // namespace

std::string MetaValue::to_display(size_t max_items) const {
  switch (type) {
    case MetaType::String:
      return quote(std::get<std::string>(value), kMaxDisplayChars);
    case MetaType::Bool:
      return std::get<bool>(value) ? "true" : "false";
    case MetaType::F32:
    case MetaType::F64:
      return float_to_string(std::get<double>(value));
    case MetaType::Array: {
      const MetaArray& a = *std::get<std::shared_ptr<const MetaArray>>(value);
      const size_t n = a.size();
      std::string r = "[";
      for (size_t i = 0; i < n && i < max_items; ++i) {
        if (i > 0) r += ", ";
        r += element_to_string(a, i, max_items);
      }
      if (n <= max_items) return r + "]";
      return r + ", ... (" + std::to_string(n) + " items)]";
    }
    default:
      return int_to_string(std::get<int64_t>(value), type);
  }
}

const MetaValue* MetaMap::find(std::string_view key) const {
  auto it = map_.find(key);
  return it == map_.end() ? nullptr : &it->second;
}

void MetaMap::fail(std::string_view key, std::string_view what) const {
  throw Error(source_ + ": metadata key '" + std::string(key) + "' " + std::string(what));
}

namespace {

[[noreturn]] void wrong_type(const MetaMap& m, std::string_view key, const MetaValue& v,
                             std::string_view expected) {
  m.fail(key,
         "has type " + std::string(meta_type_name(v.type)) + ", expected " + std::string(expected));
}

}  // namespace

int64_t MetaMap::get_int(std::string_view key) const {
  const MetaValue* v = find(key);
  if (v == nullptr) fail(key, "missing");
  if (!meta_type_is_int(v->type)) wrong_type(*this, key, *v, "integer");
  const int64_t x = std::get<int64_t>(v->value);
  // A u64 above INT64_MAX would silently turn negative.
  if (v->type == MetaType::U64 && x < 0)
    fail(key, "value " + int_to_string(x, v->type) + " does not fit in int64");
  return x;
}

int64_t MetaMap::get_int(std::string_view key, int64_t def) const {
  return has(key) ? get_int(key) : def;
}

double MetaMap::get_float(std::string_view key) const {
  const MetaValue* v = find(key);
  if (v == nullptr) fail(key, "missing");
  if (meta_type_is_float(v->type)) return std::get<double>(v->value);
  if (meta_type_is_int(v->type)) {
    const int64_t x = std::get<int64_t>(v->value);
    return v->type == MetaType::U64 ? static_cast<double>(static_cast<uint64_t>(x))
                                    : static_cast<double>(x);
  }
  wrong_type(*this, key, *v, "float");
}

double MetaMap::get_float(std::string_view key, double def) const {
  return has(key) ? get_float(key) : def;
}

bool MetaMap::get_bool(std::string_view key, bool def) const {
  const MetaValue* v = find(key);
  if (v == nullptr) return def;
  if (v->type != MetaType::Bool) wrong_type(*this, key, *v, "bool");
  return std::get<bool>(v->value);
}

const std::string& MetaMap::get_string(std::string_view key) const {
  const MetaValue* v = find(key);
  if (v == nullptr) fail(key, "missing");
  if (v->type != MetaType::String) wrong_type(*this, key, *v, "string");
  return std::get<std::string>(v->value);
}

std::string MetaMap::get_string(std::string_view key, std::string_view def) const {
  return has(key) ? get_string(key) : std::string(def);
}

const MetaArray& MetaMap::get_array(std::string_view key) const {
  const MetaArray* a = find_array(key);
  if (a == nullptr) fail(key, "missing");
  return *a;
}

const MetaArray* MetaMap::find_array(std::string_view key) const {
  const MetaValue* v = find(key);
  if (v == nullptr) return nullptr;
  if (v->type != MetaType::Array) wrong_type(*this, key, *v, "array");
  return std::get<std::shared_ptr<const MetaArray>>(v->value).get();
}

}  // namespace kvs
