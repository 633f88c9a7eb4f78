#pragma once
// Options and helpers shared by the commands that run a model (generate, chat, ...).
#include <CLI/CLI.hpp>
#include <atomic>
#include <filesystem>
#include <memory>
#include <string>

#include "engine/engine.h"
#include "engine/generate.h"
#include "engine/session.h"

namespace kvs::cli {

struct ModelOptions {
  std::string model;  // path or registry name
  int threads = 0;
  int ctx = 0;
  int batch = 256;
  std::string attention = "flash";
  std::string device = "auto";  // cpu, cuda or auto
  std::string cache;            // cache plan: a JSON file or a shipped plan name (configs/cache)
};

struct SamplingOptions {
  float temp = 0.8f;
  int top_k = 40;
  float top_p = 0.95f;
  float min_p = 0.05f;
  float repeat_penalty = 1.0f;
  int repeat_last_n = 64;
  int64_t seed = -1;              // -1: random
  SamplingParams params() const;  // validated: kvs::Error naming the option
};

void add_model_options(CLI::App& app, ModelOptions& o);
void add_sampling_options(CLI::App& app, SamplingOptions& o);

// Range checks of the shared options (kvs::Error), done before anything loads.
void check_model_options(const ModelOptions& o);
std::unique_ptr<Engine> load_engine(const ModelOptions& o);
SessionOptions session_options(const ModelOptions& o);

// Reads -p / -f / --stdin text verbatim; exactly one must be given (UsageError otherwise).
std::string read_prompt(const std::string& prompt, const std::string& file, bool use_stdin,
                        bool required);

// The whole file; kvs::Error "PATH: cannot open <what>" when it cannot be read.
std::string read_whole_file(const std::string& path, const std::string& what);

// Creates dir and its parents; kvs::Error "DIR: cannot create the directory for WHAT: reason".
void create_directories_or_throw(const std::filesystem::path& dir, const std::string& what);

// Ctrl-C handling: the first SIGINT sets the flag (work stops cleanly), a second one exits.
void install_interrupt_handler();
bool interrupted();

// Progress bar on stderr, shown only when stderr is a terminal.
class Progress {
 public:
  explicit Progress(std::string label);
  void update(int64_t done, int64_t total);
  void finish();

 private:
  std::string label_;
  bool tty_;
  bool shown_ = false;
  double start_;
};

}  // namespace kvs::cli
