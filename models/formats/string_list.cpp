#include "models/formats/string_list.h"

#include <cstring>
#include <limits>

#include "kernels/core/error.h"

namespace kvs {

StringList StringList::build(size_t n, const std::string_view* items) {
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) total += sizeof(uint64_t) + items[i].size();
  if (total > std::numeric_limits<uint32_t>::max())
    throw Error("string list of " + std::to_string(total) + " bytes exceeds the 4 GiB limit");
  auto blob = std::make_shared<std::vector<uint8_t>>(total);  // [total]: GGUF layout
  auto impl = std::make_shared<Impl>();
  impl->offsets.resize(n);
  size_t at = 0;
  for (size_t i = 0; i < n; ++i) {
    impl->offsets[i] = static_cast<uint32_t>(at);
    const uint64_t len = items[i].size();
    std::memcpy(blob->data() + at, &len, sizeof(len));
    if (len != 0) std::memcpy(blob->data() + at + sizeof(len), items[i].data(), len);
    at += sizeof(len) + len;
  }
  impl->base = blob->data();
  impl->keep = std::move(blob);
  impl->owned = true;
  StringList l;
  l.impl_ = std::move(impl);
  return l;
}

StringList::StringList(const std::vector<std::string>& items) {
  std::vector<std::string_view> views(items.begin(), items.end());
  *this = build(views.size(), views.data());
}

StringList::StringList(std::initializer_list<std::string_view> items) {
  *this = build(items.size(), items.begin());
}

StringList StringList::view(const uint8_t* base, std::vector<uint32_t> offsets,
                            std::shared_ptr<const void> keep) {
  auto impl = std::make_shared<Impl>();
  impl->base = base;
  impl->offsets = std::move(offsets);
  impl->keep = std::move(keep);
  StringList l;
  l.impl_ = std::move(impl);
  return l;
}

std::string_view StringList::operator[](size_t i) const {
  KVS_CHECK(i < size(), "string list index out of range");
  const uint8_t* p = impl_->base + impl_->offsets[i];
  uint64_t len;
  std::memcpy(&len, p, sizeof(len));
  return {reinterpret_cast<const char*>(p + sizeof(len)), static_cast<size_t>(len)};
}

std::vector<std::string> StringList::to_vector() const {
  std::vector<std::string> out;
  out.reserve(size());
  for (std::string_view s : *this) out.emplace_back(s);
  return out;
}

size_t StringList::owned_bytes() const {
  if (!impl_) return 0;
  size_t n = impl_->offsets.capacity() * sizeof(uint32_t);
  if (impl_->owned) n += static_cast<const std::vector<uint8_t>*>(impl_->keep.get())->capacity();
  return n;
}

bool operator==(const StringList& a, const StringList& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (a[i] != b[i]) return false;
  return true;
}

}  // namespace kvs
