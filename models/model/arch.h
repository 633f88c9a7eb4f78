#pragma once
// Architecture registry. An architecture is a set of flags over the shared decoder blocks
// plus a hook that reads its hyper-parameters; each one registers from its own file in
// models/archs/ under its GGUF `general.architecture` name.
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "models/model/config.h"

namespace kvs {

class MetaMap;

struct ArchDef {
  std::string name;
  // Fills the architecture-specific parts of cfg after the common keys were read.
  std::function<void(const MetaMap& meta, ModelConfig& cfg)> configure;
};

void register_arch(ArchDef def);
// Throws kvs::Error naming the architecture and listing the supported ones.
const ArchDef& find_arch(std::string_view name, const std::string& source);
std::vector<std::string> arch_names();

struct ArchRegistrar {
  explicit ArchRegistrar(ArchDef def) { register_arch(std::move(def)); }
};

// Reads the common `<arch>.*` keys, runs the architecture's hook and checks consistency.
// Throws kvs::Error naming the source file and the key.
ModelConfig read_model_config(const MetaMap& meta);

}  // namespace kvs
