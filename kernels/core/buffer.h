#pragma once
// Owned, 64-byte aligned host memory (RAII). Device buffers come with the CUDA backend.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <utility>

#include "kernels/core/error.h"

namespace kvs {

class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t bytes) { resize(bytes); }
  ~Buffer() { std::free(data_); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)), size_(std::exchange(o.size_, 0)) {}
  Buffer& operator=(Buffer&& o) noexcept {
    if (this != &o) {
      std::free(data_);
      data_ = std::exchange(o.data_, nullptr);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }

  // Contents are not preserved.
  void resize(size_t bytes) {
    std::free(data_);
    data_ = nullptr;
    size_ = 0;
    if (bytes == 0) return;
    const size_t rounded = (bytes + 63) & ~size_t{63};
    data_ = std::aligned_alloc(64, rounded);
    KVS_CHECK(data_ != nullptr, "out of memory allocating " + std::to_string(bytes) + " bytes");
    size_ = bytes;
  }

  void* data() { return data_; }
  const void* data() const { return data_; }
  template <class T>
  T* as() {
    return static_cast<T*>(data_);
  }
  template <class T>
  const T* as() const {
    return static_cast<const T*>(data_);
  }
  size_t size() const { return size_; }

 private:
  void* data_ = nullptr;
  size_t size_ = 0;
};

}  // namespace kvs
