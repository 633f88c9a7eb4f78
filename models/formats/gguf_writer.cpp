#include "models/formats/gguf_writer.h"

#include <sys/stat.h>
#include <unistd.h>

#include <bit>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "kernels/core/error.h"
#include "models/formats/gguf_reader.h"

namespace kvs {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is written little-endian");

class Bytes {
 public:
  template <class T>
  void put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    s_.append(b, sizeof(T));
  }
  void put_string(std::string_view s) {
    put<uint64_t>(s.size());
    s_ += s;
  }
  void put_value(const MetaValue& v) {
    switch (v.type) {
      case MetaType::String:
        put_string(std::get<std::string>(v.value));
        return;
      case MetaType::Bool:
        put<uint8_t>(std::get<bool>(v.value) ? 1 : 0);
        return;
      case MetaType::F32:
        put<float>(static_cast<float>(std::get<double>(v.value)));
        return;
      case MetaType::F64:
        put<double>(std::get<double>(v.value));
        return;
      case MetaType::Array:
        put_array(*std::get<std::shared_ptr<const MetaArray>>(v.value));
        return;
      default:
        put_int(std::get<int64_t>(v.value), v.type);
    }
  }
  // Truncates to the element width, as a cast would: callers pick the width.
  void put_int(int64_t x, MetaType t) {
    switch (t) {
      case MetaType::U8:
        put<uint8_t>(static_cast<uint8_t>(x));
        return;
      case MetaType::I8:
        put<int8_t>(static_cast<int8_t>(x));
        return;
      case MetaType::Bool:
        put<uint8_t>(x != 0 ? 1 : 0);
        return;
      case MetaType::U16:
        put<uint16_t>(static_cast<uint16_t>(x));
        return;
      case MetaType::I16:
        put<int16_t>(static_cast<int16_t>(x));
        return;
      case MetaType::U32:
        put<uint32_t>(static_cast<uint32_t>(x));
        return;
      case MetaType::I32:
        put<int32_t>(static_cast<int32_t>(x));
        return;
      case MetaType::U64:
        put<uint64_t>(static_cast<uint64_t>(x));
        return;
      case MetaType::I64:
        put<int64_t>(x);
        return;
      default:
        KVS_CHECK(false, "not an integer meta type");
    }
  }
  void put_array(const MetaArray& a) {
    put<int32_t>(static_cast<int32_t>(a.elem_type));
    put<uint64_t>(a.size());
    if (a.elem_type == MetaType::String) {
      for (const auto& s : a.strings) put_string(s);
    } else if (a.elem_type == MetaType::Array) {
      for (const auto& v : a.items) {
        KVS_CHECK(v.type == MetaType::Array, "nested array item is not an array");
        put_array(*std::get<std::shared_ptr<const MetaArray>>(v.value));
      }
    } else if (a.elem_type == MetaType::F32) {
      for (size_t i = 0; i < a.size(); ++i) put<float>(static_cast<float>(a.float_at(i)));
    } else if (a.elem_type == MetaType::F64) {
      for (size_t i = 0; i < a.size(); ++i) put<double>(a.float_at(i));
    } else {
      for (size_t i = 0; i < a.size(); ++i) put_int(a.int_at(i), a.elem_type);
    }
  }
  void pad_to(uint64_t alignment) {
    while (s_.size() % alignment != 0) s_.push_back('\0');
  }
  const std::string& str() const { return s_; }

 private:
  std::string s_;
};

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  KVS_CHECK(alignment != 0 && std::has_single_bit(alignment), "alignment must be a power of two");
}

void GgufWriter::add_strings(std::string key, std::vector<std::string> v) {
  add(std::move(key), MetaValue::of_array(MetaArray::of_strings(StringList(v))));
}

void GgufWriter::add_ints(std::string key, std::vector<int64_t> v, MetaType elem) {
  KVS_CHECK(meta_type_is_int(elem) || elem == MetaType::Bool, "add_ints needs an integer type");
  add(std::move(key), MetaValue::of_array(MetaArray::of_ints(v, elem)));
}

void GgufWriter::add_floats(std::string key, std::vector<double> v, MetaType elem) {
  KVS_CHECK(meta_type_is_float(elem), "add_floats needs a float type");
  add(std::move(key), MetaValue::of_array(MetaArray::of_floats(v, elem)));
}

void GgufWriter::add_tensor(std::string name, DType type, std::vector<int64_t> ne, const void* data,
                            size_t nbytes) {
  KVS_CHECK(!ne.empty() && ne.size() <= 4, "tensor needs 1..4 dims");
  const DTypeTraits& tr = dtype_traits(type);
  KVS_CHECK(ne[0] % tr.block_size == 0, "ne[0] must be a multiple of the block size");
  int64_t rows = 1;
  for (size_t d = 1; d < ne.size(); ++d) rows *= ne[d];
  KVS_CHECK(nbytes == row_bytes(type, ne[0]) * static_cast<size_t>(rows),
            "tensor '" + name + "': nbytes does not match its shape and type");
  tensors_.push_back({std::move(name), type, std::move(ne), data, nbytes});
}

void GgufWriter::write(const std::string& path) const {
  Bytes h;
  bool has_alignment_key = false;
  for (const auto& [k, v] : kv_) has_alignment_key |= (k == "general.alignment");
  const bool add_alignment = alignment_ != kGgufDefaultAlignment && !has_alignment_key;

  h.put<uint32_t>(kGgufMagic);
  h.put<uint32_t>(3);
  h.put<int64_t>(static_cast<int64_t>(tensors_.size()));
  h.put<int64_t>(static_cast<int64_t>(kv_.size() + (add_alignment ? 1 : 0)));
  if (add_alignment) {
    h.put_string("general.alignment");
    h.put<int32_t>(static_cast<int32_t>(MetaType::U32));
    h.put<uint32_t>(alignment_);
  }
  for (const auto& [k, v] : kv_) {
    h.put_string(k);
    h.put<int32_t>(static_cast<int32_t>(v.type));
    h.put_value(v);
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    h.put_string(t.name);
    h.put<uint32_t>(static_cast<uint32_t>(t.ne.size()));
    for (int64_t n : t.ne) h.put<int64_t>(n);
    h.put<uint32_t>(static_cast<uint32_t>(t.type));
    h.put<uint64_t>(offset);
    offset += (t.nbytes + alignment_ - 1) / alignment_ * alignment_;
  }
  if (!tensors_.empty()) h.pad_to(alignment_);

  // Same directory as the target so the rename stays on one file system.
  std::string tmpl = path + ".tmp.XXXXXX";
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw Error(path + ": cannot create temporary file: " + std::strerror(errno));
  // mkstemp creates 0600; a model file should be readable like any other.
  ::fchmod(fd, 0644);
  FILE* fp = ::fdopen(fd, "wb");
  if (fp == nullptr) {
    ::close(fd);
    ::unlink(tmpl.c_str());
    throw Error(path + ": cannot open temporary file: " + std::strerror(errno));
  }
  bool ok = std::fwrite(h.str().data(), 1, h.str().size(), fp) == h.str().size();
  static const char zeros[256] = {};
  for (const auto& t : tensors_) {
    if (!ok) break;
    ok = t.nbytes == 0 || std::fwrite(t.data, 1, t.nbytes, fp) == t.nbytes;
    size_t pad = (alignment_ - t.nbytes % alignment_) % alignment_;
    while (ok && pad > 0) {
      const size_t n = pad < sizeof(zeros) ? pad : sizeof(zeros);
      ok = std::fwrite(zeros, 1, n, fp) == n;
      pad -= n;
    }
  }
  ok = std::fflush(fp) == 0 && ok;
  ok = ::fsync(::fileno(fp)) == 0 && ok;
  const int err = errno;
  ok = std::fclose(fp) == 0 && ok;
  if (ok && std::rename(tmpl.c_str(), path.c_str()) == 0) return;
  const int e = ok ? errno : err;
  ::unlink(tmpl.c_str());
  throw Error(path + ": cannot write GGUF file: " + std::strerror(e));
}

}  // namespace kvs
