#pragma once
// An immutable list of byte strings in GGUF's array layout (u64 length, then the bytes),
// either owned or a view into a mapped file that it keeps alive. A vocabulary is held once:
// the GGUF metadata, the vocabulary spec and the tokenizer share one list, and a GGUF
// file's token texts are never copied (Gemma 3's 262144 tokens cost 1 MiB of offsets, not
// 8 MiB of std::string).
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace kvs {

class StringList {
 public:
  StringList() = default;
  explicit StringList(const std::vector<std::string>& items);
  StringList(std::initializer_list<std::string_view> items);

  // A view of `offsets.size()` entries at `base + offsets[i]` (each a u64 length, then the
  // bytes); `keep` owns that memory. The caller has checked every entry against the buffer.
  static StringList view(const uint8_t* base, std::vector<uint32_t> offsets,
                         std::shared_ptr<const void> keep);

  size_t size() const { return impl_ ? impl_->offsets.size() : 0; }
  bool empty() const { return size() == 0; }
  std::string_view operator[](size_t i) const;
  std::vector<std::string> to_vector() const;
  // Bytes this list owns beyond a mapping it views (offsets, and the strings when owned).
  size_t owned_bytes() const;

  class Iterator {
   public:
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::string_view;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = std::string_view;
    Iterator() = default;
    Iterator(const StringList* list, size_t i) : list_(list), i_(i) {}
    std::string_view operator*() const { return (*list_)[i_]; }
    Iterator& operator++() {
      ++i_;
      return *this;
    }
    Iterator operator++(int) {
      Iterator t = *this;
      ++i_;
      return t;
    }
    bool operator==(const Iterator& o) const { return i_ == o.i_; }

   private:
    const StringList* list_ = nullptr;
    size_t i_ = 0;
  };
  Iterator begin() const { return {this, 0}; }
  Iterator end() const { return {this, size()}; }

  friend bool operator==(const StringList& a, const StringList& b);

 private:
  struct Impl {
    const uint8_t* base = nullptr;
    std::vector<uint32_t> offsets;  // [n]: entry i's length field, relative to base
    std::shared_ptr<const void> keep;
    bool owned = false;
  };
  static StringList build(size_t n, const std::string_view* items);

  std::shared_ptr<const Impl> impl_;
};

}  // namespace kvs
