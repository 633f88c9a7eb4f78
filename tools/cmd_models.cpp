// `kvsieve models` lists the model registry; `kvsieve pull NAME` downloads a model.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "engine/model_registry.h"
#include "tools/command.h"

namespace kvs::cli {
namespace {

void list_models(bool as_json) {
  const auto registry = load_model_registry();
  if (as_json) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& e : registry) {
      out.push_back({{"name", e.name},
                     {"description", e.description},
                     {"format", e.format},
                     {"source", e.downloadable() ? "pypi" : "path"},
                     {"present", e.present()},
                     {"path", e.location().string()},
                     {"sha256", e.sha256}});
    }
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  size_t width = 4;
  for (const auto& e : registry) width = std::max(width, e.name.size());
  const int w = static_cast<int>(width);
  std::printf("%-*s  %-7s  %s\n", w, "NAME", "STATUS", "PATH");
  for (const auto& e : registry)
    std::printf("%-*s  %-7s  %s\n", w, e.name.c_str(), e.present() ? "present" : "absent",
                e.location().string().c_str());
  for (const auto& e : registry)
    if (!e.present() && e.downloadable()) {
      std::fprintf(stderr, "fetch a model with: kvsieve pull NAME\n");
      break;
    }
}

void setup_models(CLI::App& sub) {
  auto as_json = std::make_shared<bool>(false);
  sub.add_flag("--json", *as_json, "Print the registry as JSON");
  sub.callback([as_json] { list_models(*as_json); });
}

void setup_pull(CLI::App& sub) {
  auto name = std::make_shared<std::string>();
  auto force = std::make_shared<bool>(false);
  sub.add_option("name", *name, "Registry name (see `kvsieve models`)")->required();
  sub.add_flag("--force", *force, "Download again even if the model is present");
  sub.callback([name, force] {
    // stdout gets only the path, for scripts: MODEL=$(kvsieve pull smollm2)
    const auto path = pull_model(*name, *force);
    std::printf("%s\n", path.string().c_str());
  });
}

}  // namespace
}  // namespace kvs::cli

KVS_COMMAND(models, "List the registered models and whether they are downloaded",
            kvs::cli::setup_models);
KVS_COMMAND(pull, "Download a registered model into the model cache", kvs::cli::setup_pull);
