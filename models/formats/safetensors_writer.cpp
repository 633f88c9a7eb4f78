#include "models/formats/safetensors_writer.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "kernels/core/error.h"
#include "models/formats/safetensors_file.h"

namespace kvs {

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  // The temporary file sits in the target directory so that rename() stays atomic.
  std::string tmpl = path_ + ".tmp-XXXXXX";
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0) throw Error(path_ + ": cannot create a temporary file: " + std::strerror(errno));
  tmp_ = tmpl;
  // mkstemp creates 0600; output files should be as readable as any other model file.
  ::fchmod(fd, 0644);
  f_ = ::fdopen(fd, "wb");
  if (f_ == nullptr) {
    const int e = errno;
    ::close(fd);
    ::unlink(tmp_.c_str());
    throw Error(path_ + ": cannot open a temporary file: " + std::strerror(e));
  }
  std::setvbuf(f_, nullptr, _IOFBF, 1 << 20);
}

AtomicFile::~AtomicFile() {
  if (f_ != nullptr) std::fclose(f_);
  if (!committed_ && !tmp_.empty()) ::unlink(tmp_.c_str());
}

void AtomicFile::write(const void* data, size_t n) {
  KVS_CHECK(f_ != nullptr && !committed_, "write after commit");
  if (n != 0 && std::fwrite(data, 1, n, f_) != n)
    throw Error(path_ + ": write failed: " + std::strerror(errno));
  written_ += n;
}

void AtomicFile::commit() {
  KVS_CHECK(f_ != nullptr && !committed_, "double commit");
  const bool ok = std::fflush(f_) == 0 && ::fsync(::fileno(f_)) == 0;
  const int e = errno;
  const bool closed = std::fclose(f_) == 0;
  f_ = nullptr;
  if (!ok || !closed) throw Error(path_ + ": write failed: " + std::strerror(e));
  if (::rename(tmp_.c_str(), path_.c_str()) != 0)
    throw Error(path_ + ": cannot rename the temporary file into place: " + std::strerror(errno));
  committed_ = true;
}

void write_file_atomic(const std::string& path, std::string_view content) {
  AtomicFile f(path);
  f.write(content);
  f.commit();
}

void SafetensorsWriter::add(Entry e) {
  for (const auto& t : tensors_)
    if (t.name == e.name) throw Error("safetensors writer: duplicate tensor '" + e.name + "'");
  if (e.name == "__metadata__") throw Error("safetensors writer: reserved tensor name");
  const auto bits = safetensors_dtype_bits(e.dtype);
  if (!bits) throw Error("safetensors writer: unknown dtype '" + e.dtype + "'");
  uint64_t numel = 1;
  for (int64_t d : e.shape) {
    if (d < 0 || __builtin_mul_overflow(numel, static_cast<uint64_t>(d), &numel))
      throw Error("safetensors writer: bad shape for tensor '" + e.name + "'");
  }
  uint64_t nbits = 0;
  if (__builtin_mul_overflow(numel, uint64_t{*bits}, &nbits) || nbits % 8 != 0)
    throw Error("safetensors writer: bad shape for tensor '" + e.name + "'");
  e.nbytes = nbits / 8;
  tensors_.push_back(std::move(e));
}

void SafetensorsWriter::add_tensor(std::string name, std::string dtype, std::vector<int64_t> shape,
                                   Fill fill) {
  add(Entry{std::move(name), std::move(dtype), std::move(shape), 0, std::move(fill)});
}

void SafetensorsWriter::add_tensor(std::string name, std::string dtype, std::vector<int64_t> shape,
                                   const void* data) {
  Entry e{std::move(name), std::move(dtype), std::move(shape), 0, {}};
  add(std::move(e));
  Entry& added = tensors_.back();
  const uint64_t n = added.nbytes;
  added.fill = [data, n](AtomicFile& out) { out.write(data, n); };
}

void SafetensorsWriter::add_tensor(std::string name, DType dtype, std::vector<int64_t> shape,
                                   const void* data) {
  add_tensor(std::move(name), std::string(safetensors_dtype_name(dtype)), std::move(shape), data);
}

uint64_t SafetensorsWriter::write(const std::string& path) const {
  nlohmann::ordered_json h = nlohmann::ordered_json::object();
  if (!metadata_.empty()) {
    auto& m = h["__metadata__"];
    for (const auto& [k, v] : metadata_) m[k] = v;
  }
  uint64_t offset = 0;
  for (const auto& t : tensors_) {
    auto& e = h[t.name];
    e["dtype"] = t.dtype;
    e["shape"] = t.shape;
    e["data_offsets"] = {offset, offset + t.nbytes};
    offset += t.nbytes;
  }
  std::string header = h.dump();
  // Padding with spaces keeps the JSON valid and puts the buffer on an 8-byte boundary.
  header.append((8 - header.size() % 8) % 8, ' ');
  if (header.size() > kSafetensorsMaxHeader)
    throw Error(path + ": safetensors header would exceed " +
                std::to_string(kSafetensorsMaxHeader) + " bytes");

  AtomicFile out(path);
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(header.size() >> (8 * i));
  out.write(len, 8);
  out.write(header);
  for (const auto& t : tensors_) {
    const uint64_t before = out.bytes_written();
    t.fill(out);
    const uint64_t got = out.bytes_written() - before;
    KVS_CHECK(got == t.nbytes, "tensor '" + t.name + "' produced " + std::to_string(got) +
                                   " bytes, expected " + std::to_string(t.nbytes));
  }
  const uint64_t total = out.bytes_written();
  out.commit();
  return total;
}

}  // namespace kvs
