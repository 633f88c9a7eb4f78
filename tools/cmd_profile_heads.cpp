// kvsieve profile-heads: finds retrieval and streaming heads (engine/profile_heads.h) and
// writes a DuoAttention-style head profile for plans with "head_profile" (duo, razor), the
// raw per-head scores as JSON, and a heatmap drawn by tools/plot_heads.py.
#include <fcntl.h>
#include <fmt/format.h>
#include <spawn.h>
#include <spdlog/spdlog.h>
#include <sys/wait.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <tuple>

#include "engine/model_registry.h"
#include "engine/profile_heads.h"
#include "kernels/core/error.h"
#include "models/formats/safetensors_writer.h"
#include "tools/command.h"
#include "tools/common.h"

extern char** environ;

namespace kvs::cli {
namespace {

namespace fs = std::filesystem;

struct ProfileArgs {
  ModelOptions model;
  std::string method = "razor";
  HeadProbeOptions probe;
  std::string normalize = "model";
  std::string text;
  std::string out;
  std::string json;
  std::string plot;
  double fraction = -1.0;
  double threshold = -1.0;
  int top = 10;
  CLI::Option* samples_given = nullptr;  // set once options are added; count() > 0 when given
  CLI::Option* segment_given = nullptr;
  CLI::Option* length_given = nullptr;
  CLI::Option* fraction_given = nullptr;
  CLI::Option* threshold_given = nullptr;
};

fs::path default_text() {
  const char* env = std::getenv("KVSIEVE_SHARED_DATA");
  const fs::path data = env != nullptr ? fs::path(env) : source_dir() / ".." / "shared" / "data";
  return (data / "text" / "botchan.txt").lexically_normal();
}

void make_parent(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  if (!parent.empty()) create_directories_or_throw(parent, path);
}

nlohmann::json rows(const std::vector<double>& v, int n_layer, int n_col) {
  nlohmann::json j = nlohmann::json::array();
  for (int l = 0; l < n_layer; ++l)
    j.push_back(std::vector<double>(v.begin() + static_cast<ptrdiff_t>(l) * n_col,
                                    v.begin() + static_cast<ptrdiff_t>(l + 1) * n_col));
  return j;
}

void write_json(const nlohmann::json& j, const std::string& path) {
  make_parent(path);
  write_file_atomic(path, j.dump(1) + "\n");
}

// Runs argv[0] from PATH (or as a path) and returns its exit status, or -1 when it cannot be
// started. quiet sends its output to /dev/null.
int run_program(const std::vector<std::string>& argv, bool quiet) {
  std::vector<char*> args;  // [argv.size() + 1]
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  if (quiet) {
    posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  } else {
    posix_spawn_file_actions_adddup2(&fa, 2, 1);  // stdout is the product: the script logs
  }
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int status = 0;
  if (waitpid(pid, &status, 0) < 0) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// The first interpreter that can import matplotlib: $KVSIEVE_PYTHON, python3 from PATH, then
// the system one (Debian's python3-matplotlib installs there, a pyenv python3 may not see it).
std::string find_python() {
  std::vector<std::string> candidates;
  if (const char* env = std::getenv("KVSIEVE_PYTHON")) candidates.emplace_back(env);
  candidates.emplace_back("python3");
  candidates.emplace_back("/usr/bin/python3");
  for (const auto& py : candidates)
    if (run_program({py, "-c", "import matplotlib"}, true) == 0) return py;
  return {};
}

void plot(const ProfileArgs& a, const ModelConfig& c, const std::vector<bool>& chosen,
          const HeadProfile& p, const std::string& title) {
  const fs::path script = source_dir() / "tools" / "plot_heads.py";
  if (!fs::exists(script)) {
    std::fprintf(stderr, "kvsieve: no plot: %s not found (the profile is written)\n",
                 script.c_str());
    return;
  }
  const std::string py = find_python();
  if (py.empty()) {
    std::fprintf(stderr,
                 "kvsieve: no plot: python3 with matplotlib not found (apt-get install "
                 "python3-matplotlib); the profile is written\n");
    return;
  }
  std::string heads;
  for (size_t i = 0; i < chosen.size(); ++i)
    if (chosen[i])
      heads += (heads.empty() ? "" : ",") + std::to_string(i / p.n_head_kv) + ":" +
               std::to_string(i % p.n_head_kv);
  std::vector<std::string> argv = {py,        script.string(), a.out,     "-o", a.plot,
                                   "--heads", heads,           "--title", title};
  if (c.sliding_window > 0) {
    std::string global;
    for (int l = 0; l < c.n_layer; ++l)
      if (!c.is_swa(l)) global += (global.empty() ? "" : ",") + std::to_string(l);
    argv.insert(argv.end(), {"--global-layers", global});
  }
  make_parent(a.plot);
  const int rc = run_program(argv, false);
  if (rc != 0)
    std::fprintf(stderr, "kvsieve: no plot: %s exited with status %d (the profile is written)\n",
                 script.c_str(), rc);
  else
    spdlog::info("wrote {}", a.plot);
}

void run_profile(ProfileArgs& a) {
  install_interrupt_handler();
  if (a.method != "razor" && a.method != "retrieval" && a.method != "random")
    throw Error("--method '" + a.method + "' is not one of razor, retrieval, random");
  if (!a.model.cache.empty())
    throw UsageError("--cache: head probes need every key of a full cache, give no plan");
  // 0 stands for "default" inside HeadProbeOptions, so a 0 given on the command line is refused
  // here rather than silently replaced.
  for (const auto& [name, v, given] : {std::tuple{"--samples", a.probe.samples, a.samples_given},
                                       {"--segment", a.probe.segment, a.segment_given},
                                       {"--length", a.probe.length, a.length_given}})
    if (given->count() > 0 && v < 1)
      throw Error(std::string(name) + " must be >= 1, got " + std::to_string(v));
  if (a.probe.repeats < 2)
    throw Error("--repeats must be >= 2 (echo and induction need a copy), got " +
                std::to_string(a.probe.repeats));
  if (a.top < 0) throw Error("--top must be >= 0, got " + std::to_string(a.top));
  for (const auto& [name, v, given] : {std::tuple{"--fraction", a.fraction, a.fraction_given},
                                       {"--threshold", a.threshold, a.threshold_given}})
    if (given->count() > 0 && !(v >= 0.0 && v <= 1.0))
      throw Error(fmt::format("{} must be in [0, 1], got {}", name, v));
  try {
    a.probe.normalize = parse_normalize(a.normalize);
  } catch (const Error& e) {
    throw Error(std::string("--normalize: ") + e.what());
  }
  check_model_options(a.model);
  const double fraction = a.threshold < 0.0 && a.fraction < 0.0 ? 0.25 : a.fraction;

  // Bad input is found before the model loads.
  std::string text;
  fs::path text_path;
  if (a.method == "retrieval") {
    text_path = a.text.empty() ? default_text() : fs::path(a.text);
    text = read_whole_file(text_path.string(), "the haystack text (--text)");
  }
  auto engine = load_engine(a.model);
  const ModelConfig& c = engine->config();
  Progress bar("profile-heads " + a.method);
  const auto progress = [&](int64_t d, int64_t t) { bar.update(d, t); };
  const auto stop = [] { return interrupted(); };
  HeadProbeResult r;
  if (a.method == "razor") {
    r = probe_razor(*engine, session_options(a.model), a.probe, progress, stop);
  } else if (a.method == "retrieval") {
    const Haystack hay(engine->tokenizer(), text, text_path.string());
    r = probe_retrieval(*engine, session_options(a.model), hay, a.probe, progress, stop);
  } else {
    r = probe_random(c, a.probe);
  }
  bar.finish();

  make_parent(a.out);
  save_head_profile(r.profile, a.out);
  // What a plan will see: the values as written (6 significant digits) pick the heads.
  const HeadProfile saved = load_head_profile(a.out);
  // The same rule as the cache manager: sliding-window layers never count as retrieval heads.
  const std::vector<bool> chosen = retrieval_heads(saved, a.threshold, fraction,
                                                   compressible_heads(c.layer_is_swa, c.n_head_kv));
  const int64_t n_chosen = std::count(chosen.begin(), chosen.end(), true);
  spdlog::info("wrote {}: {} layers x {} KV heads ({} method, {:.1f} s)", a.out, saved.n_layer,
               saved.n_head_kv, a.method, r.seconds);

  if (!a.json.empty()) {
    nlohmann::json j;
    j["kvsieve_version"] = KVSIEVE_VERSION;
    j["method"] = r.method;
    j["model"] = {{"path", engine->weights().path()},
                  {"name", c.name},
                  {"arch", c.arch},
                  {"n_layer", c.n_layer},
                  {"n_head", c.n_head},
                  {"n_head_kv", c.n_head_kv},
                  {"head_dim", c.head_dim_k},
                  {"sliding_window", c.sliding_window}};
    j["params"] = r.params;
    j["threads"] = engine->pool().size();
    j["seconds"] = r.seconds;
    j["queries"] = r.queries;
    j["profile_file"] = a.out;
    j["profile"] = rows(saved.values, saved.n_layer, saved.n_head_kv);
    for (const auto& [name, v] : r.per_query_head)
      j["per_query_head"][name] = rows(v, c.n_layer, r.n_head);
    for (const auto& [name, v] : r.per_kv_head)
      j["per_kv_head"][name] = rows(v, c.n_layer, c.n_head_kv);
    nlohmann::json heads = nlohmann::json::array();
    for (size_t i = 0; i < chosen.size(); ++i)
      if (chosen[i]) heads.push_back({i / saved.n_head_kv, i % saved.n_head_kv});
    j["retrieval_heads"] = {
        {"threshold", a.threshold >= 0.0 ? nlohmann::json(a.threshold) : nlohmann::json(nullptr)},
        {"fraction", a.threshold >= 0.0 ? nlohmann::json(nullptr) : nlohmann::json(fraction)},
        {"heads", heads}};
    write_json(j, a.json);
    spdlog::info("wrote {}", a.json);
  }

  const std::vector<RankedHead> ranked = rank_heads(saved);
  char rule[64];
  if (a.threshold >= 0.0)
    std::snprintf(rule, sizeof rule, "threshold %g", a.threshold);
  else
    std::snprintf(rule, sizeof rule, "fraction %g", fraction);
  std::printf("%s heads of %s (%d layers x %d KV heads); %lld retrieval heads by %s\n",
              a.method.c_str(), fs::path(engine->weights().path()).filename().c_str(), c.n_layer,
              c.n_head_kv, static_cast<long long>(n_chosen), rule);
  std::printf("%5s %6s %5s %8s %s\n", "rank", "layer", "head", "value", "retrieval");
  for (size_t i = 0; i < ranked.size() && i < static_cast<size_t>(a.top); ++i) {
    const RankedHead& h = ranked[i];
    const bool is_chosen = chosen[static_cast<size_t>(h.layer) * saved.n_head_kv + h.head];
    std::printf("%5zu %6d %5d %8.4f %s\n", i + 1, h.layer, h.head, h.value,
                is_chosen ? "yes" : "no");
  }
  std::fflush(stdout);

  if (!a.plot.empty()) {
    const std::string title =
        fs::path(engine->weights().path()).stem().string() + ": " + a.method + " profile";
    plot(a, c, chosen, saved, title);
  }
}

void setup_profile_heads(CLI::App& app) {
  static ProfileArgs a;
  add_model_options(app, a.model);
  app.add_option("--method", a.method, "Probe: razor, retrieval or random")->capture_default_str();
  a.samples_given = app.add_option("--samples", a.probe.samples,
                                   "Random sequences (razor, default 4) or prompts (retrieval, "
                                   "default 8)");
  app.add_option("--seed", a.probe.seed, "Seed of the random tokens, prompts or values")
      ->capture_default_str();
  a.segment_given =
      app.add_option("--segment", a.probe.segment,
                     "razor: tokens per random segment (default: fit the context, at most 256)");
  app.add_option("--repeats", a.probe.repeats, "razor: copies of the segment")
      ->capture_default_str();
  a.length_given =
      app.add_option("--length", a.probe.length,
                     "retrieval: context tokens per prompt (default: min(1024, ctx - 128))");
  app.add_option("--text", a.text,
                 "retrieval: haystack text (default: ../shared/data/text/botchan.txt)");
  app.add_option("--normalize", a.normalize,
                 "Scale scores into [0, 1] by the model's maximum or each layer's (model, layer)")
      ->capture_default_str();
  app.add_option("-o,--output", a.out, "Head profile TSV to write (layers x KV heads)")->required();
  app.add_option("--json", a.json, "Also write the raw per-head scores and parameters as JSON");
  app.add_option("--plot", a.plot, "Also draw a PNG heatmap (python3 + matplotlib)");
  auto* fr =
      app.add_option("--fraction", a.fraction,
                     "Retrieval heads: this fraction with the highest values (default 0.25)");
  auto* th = app.add_option("--threshold", a.threshold, "Retrieval heads: values >= T");
  fr->excludes(th);
  a.fraction_given = fr;
  a.threshold_given = th;
  app.add_option("--top", a.top, "Heads listed on stdout")->capture_default_str();
  app.callback([] { run_profile(a); });
}

}  // namespace

// KVS_COMMAND names a command after its identifier, which cannot hold the dash.
static CommandRegistrar kvs_command_registrar_profile_heads(
    "profile-heads", "Find retrieval and streaming heads and write a head profile (TSV)",
    setup_profile_heads);

}  // namespace kvs::cli
