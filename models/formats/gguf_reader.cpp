#include "models/formats/gguf_reader.h"

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <limits>
#include <unordered_set>

#include "kernels/core/error.h"

namespace kvs {
namespace {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader maps little-endian fields directly");

// Nested arrays are legal in principle; the limit keeps a hostile file from exhausting the
// stack through recursion.
constexpr int kMaxArrayDepth = 8;

// Smallest encodings, used to reject counts that cannot fit in the remaining bytes before
// anything is allocated: key (u64 length + 1 byte) + value type + 1-byte value, and
// name (u64 length + 1 byte) + n_dims + one ne + type + offset.
constexpr uint64_t kMinKvBytes = 8 + 1 + 4 + 1;
constexpr uint64_t kMinTensorInfoBytes = 8 + 1 + 4 + 8 + 4 + 8;

std::string hex32(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%08x", v);
  return buf;
}

// Bounds-checked little-endian cursor over the mapping.
class Cursor {
 public:
  Cursor(const std::string& path, const uint8_t* data, size_t size)
      : path_(path), data_(data), size_(size) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  [[noreturn]] void fail(const std::string& what, size_t at) const {
    throw Error(path_ + ": " + what + " (at offset " + std::to_string(at) + ")");
  }

  void need(uint64_t n, std::string_view what) const {
    if (n > remaining())
      fail("truncated file: need " + std::to_string(n) + " bytes for " + std::string(what) +
               ", only " + std::to_string(remaining()) + " left",
           pos_);
  }

  template <class T>
  T read(std::string_view what) {
    need(sizeof(T), what);
    T v;
    std::memcpy(&v, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return v;
  }

  const uint8_t* here() const { return data_ + pos_; }
  void skip(size_t n, std::string_view what) {
    need(n, what);
    pos_ += n;
  }

  // Checks a string at the cursor and steps over it without copying it.
  void skip_string(std::string_view what) {
    const size_t at = pos_;
    const uint64_t n = read<uint64_t>(what);
    if (n > kGgufMaxStringBytes)
      fail(std::string(what) + ": string length " + std::to_string(n) + " exceeds 1 GiB", at);
    skip(static_cast<size_t>(n), what);
  }

  std::string read_string(std::string_view what) {
    const size_t at = pos_;
    const uint64_t n = read<uint64_t>(what);
    if (n > kGgufMaxStringBytes)
      fail(std::string(what) + ": string length " + std::to_string(n) + " exceeds 1 GiB", at);
    need(n, what);
    std::string s(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(n));
    pos_ += static_cast<size_t>(n);
    return s;
  }

 private:
  const std::string& path_;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

// The smallest encoding of one element, for the array count check.
uint64_t min_element_bytes(MetaType t) {
  if (t == MetaType::String) return 8;     // the length prefix
  if (t == MetaType::Array) return 4 + 8;  // element type + count
  return meta_scalar_bytes(t);
}

bool known_meta_type(int32_t t) {
  return t >= 0 && t <= 12;
}

class Parser {
 public:
  // Arrays of strings and scalars become views into the mapping that `keep` owns.
  Parser(Cursor& c, std::shared_ptr<const void> keep) : c_(c), keep_(std::move(keep)) {}

  MetaValue read_value(MetaType type, const std::string& ctx, int depth) {
    switch (type) {
      case MetaType::U8:
        return MetaValue::of_int(c_.read<uint8_t>(ctx), type);
      case MetaType::I8:
        return MetaValue::of_int(c_.read<int8_t>(ctx), type);
      case MetaType::U16:
        return MetaValue::of_int(c_.read<uint16_t>(ctx), type);
      case MetaType::I16:
        return MetaValue::of_int(c_.read<int16_t>(ctx), type);
      case MetaType::U32:
        return MetaValue::of_int(c_.read<uint32_t>(ctx), type);
      case MetaType::I32:
        return MetaValue::of_int(c_.read<int32_t>(ctx), type);
      case MetaType::U64:
        return MetaValue::of_int(static_cast<int64_t>(c_.read<uint64_t>(ctx)), type);
      case MetaType::I64:
        return MetaValue::of_int(c_.read<int64_t>(ctx), type);
      case MetaType::F32:
        return MetaValue::of_float(c_.read<float>(ctx), type);
      case MetaType::F64:
        return MetaValue::of_float(c_.read<double>(ctx), type);
      case MetaType::Bool:
        return MetaValue::of_bool(c_.read<uint8_t>(ctx) != 0);
      case MetaType::String:
        return MetaValue::of_string(c_.read_string(ctx));
      case MetaType::Array:
        return MetaValue::of_array(read_array(ctx, depth));
    }
    KVS_CHECK(false, "unhandled meta type");
  }

  MetaArray read_array(const std::string& ctx, int depth) {
    const size_t at = c_.pos();
    if (depth >= kMaxArrayDepth)
      c_.fail(ctx + ": arrays nested deeper than " + std::to_string(kMaxArrayDepth), at);
    const int32_t et = c_.read<int32_t>(ctx);
    if (!known_meta_type(et))
      c_.fail(ctx + ": unknown array element type " + std::to_string(et), at);
    const uint64_t count = c_.read<uint64_t>(ctx);
    const MetaType elem = static_cast<MetaType>(et);
    // Reject before allocating: the count must fit both gguf.cpp's cap and the bytes left.
    if (count > kGgufMaxArrayItems || count > c_.remaining() / min_element_bytes(elem))
      c_.fail(ctx + ": array count " + std::to_string(count) +
                  " exceeds the limit or the remaining file bytes",
              at + 4);
    const size_t n = static_cast<size_t>(count);
    if (elem == MetaType::String) {
      const uint8_t* base = c_.here();
      const size_t start = c_.pos();
      std::vector<uint32_t> offsets(n);  // [n]: entry i's length field, relative to base
      for (size_t i = 0; i < n; ++i) {
        const size_t rel = c_.pos() - start;
        if (rel > std::numeric_limits<uint32_t>::max())
          c_.fail(ctx + ": string array larger than 4 GiB", at);
        offsets[i] = static_cast<uint32_t>(rel);
        c_.skip_string(ctx);
      }
      return MetaArray::of_strings(StringList::view(base, std::move(offsets), keep_));
    }
    if (elem == MetaType::Array) {
      std::vector<MetaValue> items;
      items.reserve(n);
      for (size_t i = 0; i < n; ++i)
        items.push_back(MetaValue::of_array(read_array(ctx, depth + 1)));
      return MetaArray::of_items(std::move(items));
    }
    const uint8_t* data = c_.here();
    c_.skip(n * meta_scalar_bytes(elem), ctx);
    return MetaArray::view_scalars(elem, n, data, keep_);
  }

 private:
  Cursor& c_;
  std::shared_ptr<const void> keep_;
};

uint64_t align_up(uint64_t x, uint64_t a) {
  return (x + a - 1) / a * a;
}

}  // namespace

GgufSource::GgufSource(const std::string& path) : WeightSource(path) {
  file_ = std::make_shared<const MappedFile>(path);
  const MappedFile& f = *file_;
  Cursor c(path, f.data(), f.size());

  if (f.size() < 4) c.fail("not a GGUF file: only " + std::to_string(f.size()) + " bytes", 0);
  const uint32_t magic = c.read<uint32_t>("magic");
  if (magic == __builtin_bswap32(kGgufMagic))
    c.fail("big-endian GGUF files are not supported (byte-swapped magic)", 0);
  if (magic != kGgufMagic) c.fail("not a GGUF file (magic " + hex32(magic) + ")", 0);

  version_ = c.read<uint32_t>("header version");
  // gguf-py writes the magic little-endian even in big-endian files; the version then reads
  // as 0x0N000000 (llama.cpp's test: the low 16 bits are zero).
  if (version_ != 0 && (version_ & 0xFFFFu) == 0)
    c.fail("big-endian GGUF files are not supported (version field " + hex32(version_) + ")", 4);
  if (version_ == 1) c.fail("GGUF version 1 is not supported (only v2 and v3)", 4);
  if (version_ < 2 || version_ > 3)
    c.fail("unsupported GGUF version " + std::to_string(version_) + " (only v2 and v3)", 4);

  const int64_t n_tensors = c.read<int64_t>("header n_tensors");
  const int64_t n_kv = c.read<int64_t>("header n_kv");
  if (n_tensors < 0 || static_cast<uint64_t>(n_tensors) > c.remaining() / kMinTensorInfoBytes)
    c.fail(
        "header n_tensors " + std::to_string(n_tensors) + " is negative or cannot fit in the file",
        8);
  if (n_kv < 0 || static_cast<uint64_t>(n_kv) > c.remaining() / kMinKvBytes)
    c.fail("header n_kv " + std::to_string(n_kv) + " is negative or cannot fit in the file", 16);

  Parser parser(c, file_);
  for (int64_t i = 0; i < n_kv; ++i) {
    const size_t at = c.pos();
    std::string key = c.read_string("metadata key #" + std::to_string(i));
    if (key.empty()) c.fail("metadata key #" + std::to_string(i) + " is empty", at);
    if (meta_.has(key)) c.fail("duplicate metadata key '" + key + "'", at);
    const size_t type_at = c.pos();
    const int32_t type = c.read<int32_t>("metadata key '" + key + "' type");
    if (!known_meta_type(type))
      c.fail("metadata key '" + key + "' has unknown value type " + std::to_string(type), type_at);
    MetaValue v = parser.read_value(static_cast<MetaType>(type), "metadata key '" + key + "'", 0);
    meta_.set(std::move(key), std::move(v));
  }

  if (const MetaValue* a = meta_.find("general.alignment")) {
    if (a->type != MetaType::U32)
      throw Error(path + ": metadata key 'general.alignment' has type " +
                  std::string(meta_type_name(a->type)) + ", expected u32");
    const auto al = static_cast<uint32_t>(std::get<int64_t>(a->value));
    if (al == 0 || !std::has_single_bit(al))
      throw Error(path + ": metadata key 'general.alignment' = " + std::to_string(al) +
                  " is not a nonzero power of two");
    alignment_ = al;
  }

  // Tensor infos: validated here; data ranges are checked once the data offset is known.
  // The count is only bounded by the file size here, and a TensorInfo is larger than its
  // smallest encoding: reserve modestly and let real entries grow the vectors.
  const auto expected_tensors = static_cast<size_t>(std::min<int64_t>(n_tensors, 4096));
  tensors_.reserve(expected_tensors);
  std::vector<uint64_t> rel_offsets;
  std::vector<size_t> info_offsets;
  rel_offsets.reserve(expected_tensors);
  info_offsets.reserve(expected_tensors);
  for (int64_t i = 0; i < n_tensors; ++i) {
    const size_t at = c.pos();
    TensorInfo t;
    t.name = c.read_string("tensor #" + std::to_string(i) + " name");
    const std::string what = "tensor '" + t.name + "'";
    if (t.name.empty()) c.fail("tensor #" + std::to_string(i) + " has an empty name", at);
    if (t.name.size() > kGgufMaxNameBytes)
      c.fail(what + ": name is " + std::to_string(t.name.size()) + " bytes, limit " +
                 std::to_string(kGgufMaxNameBytes),
             at);
    if (find_tensor(t.name) != nullptr) c.fail("duplicate " + what, at);
    const size_t dims_at = c.pos();
    const uint32_t n_dims = c.read<uint32_t>(what);
    if (n_dims < 1 || n_dims > 4)
      c.fail(what + ": n_dims " + std::to_string(n_dims) + " is not in 1..4", dims_at);
    t.n_dims = static_cast<int>(n_dims);
    int64_t nel = 1;
    for (uint32_t d = 0; d < n_dims; ++d) {
      const size_t ne_at = c.pos();
      const int64_t ne = c.read<int64_t>(what);
      if (ne < 0)
        c.fail(what + ": ne[" + std::to_string(d) + "] = " + std::to_string(ne) + " is negative",
               ne_at);
      if (ne != 0 && nel > std::numeric_limits<int64_t>::max() / ne)
        c.fail(what + ": element count overflows int64", ne_at);
      nel *= ne;
      t.ne[d] = ne;
    }
    const size_t type_at = c.pos();
    const uint32_t type_id = c.read<uint32_t>(what);
    const std::optional<DType> dt = dtype_from_id(type_id);
    if (!dt) c.fail(what + ": unknown ggml type id " + std::to_string(type_id), type_at);
    if (!dtype_is_weight_type(*dt))
      c.fail(what + ": type " + std::string(dtype_name(*dt)) + " (id " + std::to_string(type_id) +
                 ") is not a supported weight type",
             type_at);
    t.dtype = *dt;
    const DTypeTraits& tr = dtype_traits(*dt);
    if (t.ne[0] % tr.block_size != 0)
      c.fail(what + ": ne[0] = " + std::to_string(t.ne[0]) + " is not a multiple of the " +
                 std::string(tr.name) + " block size " + std::to_string(tr.block_size),
             dims_at);
    // nbytes = blocks * block_bytes, overflow-checked against the file size below.
    const uint64_t blocks = static_cast<uint64_t>(nel / tr.block_size);
    if (blocks > std::numeric_limits<uint64_t>::max() / tr.block_bytes)
      c.fail(what + ": byte size overflows", dims_at);
    const uint64_t nbytes = blocks * tr.block_bytes;
    if (nbytes > f.size())
      c.fail(what + ": " + std::to_string(nbytes) + " bytes of data exceed the file size " +
                 std::to_string(f.size()),
             dims_at);
    t.nbytes = static_cast<size_t>(nbytes);
    const size_t off_at = c.pos();
    const uint64_t off = c.read<uint64_t>(what);
    if (off % alignment_ != 0)
      c.fail(what + ": data offset " + std::to_string(off) +
                 " is not a multiple of the alignment " + std::to_string(alignment_),
             off_at);
    t.file = path;
    rel_offsets.push_back(off);
    info_offsets.push_back(off_at);
    add_tensor(std::move(t));
  }

  data_offset_ = align_up(c.pos(), alignment_);
  if (n_tensors > 0 && data_offset_ > f.size())
    c.fail("tensor data section starts at " + std::to_string(data_offset_) +
               " beyond the end of the file (" + std::to_string(f.size()) + " bytes)",
           c.pos());
  for (size_t i = 0; i < tensors_.size(); ++i) {
    TensorInfo& t = tensors_[i];
    const uint64_t avail = f.size() - data_offset_;
    // Subtraction form: offset + nbytes could overflow.
    if (rel_offsets[i] > avail || t.nbytes > avail - rel_offsets[i])
      c.fail("tensor '" + t.name + "': data [" + std::to_string(rel_offsets[i]) + ", +" +
                 std::to_string(t.nbytes) + ") relative to " + std::to_string(data_offset_) +
                 " lies outside the file (" + std::to_string(f.size()) + " bytes)",
             info_offsets[i]);
    t.file_offset = data_offset_ + rel_offsets[i];
    t.data = f.data() + t.file_offset;
  }
}

std::unique_ptr<WeightSource> open_gguf(const std::string& path) {
  return std::make_unique<GgufSource>(path);
}

}  // namespace kvs
