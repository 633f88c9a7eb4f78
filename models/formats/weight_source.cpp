#include "models/formats/weight_source.h"

#include <filesystem>

#include "kernels/core/error.h"
#include "models/formats/gguf_reader.h"
#include "models/formats/safetensors_model.h"

namespace kvs {

const TensorInfo* WeightSource::find_tensor(std::string_view name) const {
  auto it = index_.find(std::string(name));
  return it == index_.end() ? nullptr : &tensors_[it->second];
}

const TensorInfo& WeightSource::tensor(std::string_view name) const {
  const TensorInfo* t = find_tensor(name);
  if (t == nullptr) throw Error(path_ + ": missing required tensor '" + std::string(name) + "'");
  return *t;
}

size_t WeightSource::total_bytes() const {
  size_t n = 0;
  for (const auto& t : tensors_) n += t.nbytes;
  return n;
}

void WeightSource::add_tensor(TensorInfo info) {
  if (index_.count(info.name) != 0)
    throw Error(path_ + ": duplicate tensor name '" + info.name + "'");
  index_.emplace(info.name, tensors_.size());
  tensors_.push_back(std::move(info));
}

std::unique_ptr<WeightSource> open_weights(const std::string& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(path, ec);
  if (ec || !fs::exists(st)) throw Error(path + ": no such file or directory");
  if (fs::is_directory(st)) return open_safetensors_model(path);
  if (fs::path(path).extension() == ".safetensors") return open_safetensors_model(path);
  return open_gguf(path);
}

}  // namespace kvs
