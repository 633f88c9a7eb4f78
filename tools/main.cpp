// kvsieve: one binary, subcommands registered from tools/cmd_*.cpp.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <string>

#include "kernels/core/error.h"
#include "tools/command.h"
#include "tools/common.h"

namespace kvs::cli {

std::vector<CommandDef>& command_registry() {
  static std::vector<CommandDef> registry;
  return registry;
}

}  // namespace kvs::cli

namespace {

// One line on stderr whatever the message holds: a library's multi-line text stays one line.
void print_error(const char* kind, const std::string& msg) {
  std::string line = msg;
  std::replace(line.begin(), line.end(), '\n', ' ');
  std::fflush(stdout);
  std::fprintf(stderr, "kvsieve: %s: %s\n", kind, line.c_str());
}

// The subcommand the arguments were meant for, for the "--help" hint.
std::string parsed_command(const CLI::App& app) {
  for (const CLI::App* sub : app.get_subcommands([](const CLI::App*) { return true; }))
    if (sub->parsed()) return std::string("kvsieve ") + sub->get_name();
  return "kvsieve";
}

// The first argument after the global flags must be a command; for anything else CLI11 would
// only say that a subcommand is required.
bool unknown_command(int argc, char** argv) {
  int i = 1;
  for (; i < argc; ++i) {
    const std::string a = argv[i];
    if (a != "-v" && a != "--verbose" && a != "-q" && a != "--quiet") break;
  }
  if (i >= argc) return false;
  const std::string word = argv[i];
  if (word == "-h" || word == "--help" || word == "--version") return false;
  std::string names;
  for (const auto& c : kvs::cli::command_registry()) {
    if (c.name == word) return false;
    names += (names.empty() ? "" : ", ") + c.name;
  }
  if (word.size() > 1 && word[0] == '-')
    print_error("usage error", "unknown option '" + word + "' (see 'kvsieve --help')");
  else
    print_error("usage error", "unknown command '" + word + "' (commands: " + names + ")");
  return true;
}

// Exit codes: 0 success, 1 bad input (files, models, plans, option values out of range or
// not among the known names), 2 bad usage (the command line cannot be understood: unknown
// command or option, a missing or conflicting option, a word where a number goes), 130
// interrupted (main).
int run(CLI::App& app, int argc, char** argv) {
  if (unknown_command(argc, argv)) return 2;
  try {
    app.parse(argc, argv);
    return 0;
  } catch (const CLI::Success& e) {
    return app.exit(e);  // --help, --version: printed on stdout
  } catch (const CLI::ValidationError& e) {
    print_error("error", e.what());  // a value CLI11 checked against its allowed set
    return 1;
  } catch (const CLI::ParseError& e) {
    print_error("usage error",
                std::string(e.what()) + " (see '" + parsed_command(app) + " --help')");
    return 2;
  } catch (const kvs::UsageError& e) {
    print_error("usage error", e.what());
    return 2;
  } catch (const kvs::Error& e) {
    print_error("error", e.what());
    return 1;
  } catch (const std::filesystem::filesystem_error& e) {
    // Paths come from the user: a directory that cannot be made or read is bad input.
    std::string msg = e.path1().string();
    msg += msg.empty() ? "" : ": ";
    msg += e.code().message();
    print_error("error", msg);
    return 1;
  } catch (const std::bad_alloc&) {
    print_error("error", "out of memory");
    return 1;
  } catch (const std::exception& e) {
    // Every known input error is a kvs::Error; reaching here is a kvsieve bug, reported as such
    // rather than as an abort.
    print_error("internal error", e.what());
    return 1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto logger = spdlog::stderr_color_mt("kvsieve");
  spdlog::set_default_logger(logger);
  spdlog::set_pattern("%^[%L]%$ %v");
  spdlog::set_level(spdlog::level::info);

  CLI::App app{"kvsieve: LLM inference with per-head KV cache policies"};
  app.set_version_flag("--version", std::string("kvsieve ") + KVSIEVE_VERSION);
  app.require_subcommand(1);
  bool verbose = false, quiet = false;
  app.add_flag("-v,--verbose", verbose, "Debug logging on stderr");
  app.add_flag("-q,--quiet", quiet, "Only errors on stderr");
  app.parse_complete_callback([&] {
    if (verbose) spdlog::set_level(spdlog::level::debug);
    if (quiet) spdlog::set_level(spdlog::level::err);
  });

  auto& cmds = kvs::cli::command_registry();
  std::sort(cmds.begin(), cmds.end(), [](const auto& a, const auto& b) { return a.name < b.name; });
  for (auto& c : cmds) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    c.setup(*sub);
  }

  int rc = run(app, argc, argv);
  std::fflush(stdout);
  // Ctrl-C: the command stopped early and said so (statistics so far, complete outputs only);
  // 130 (128 + SIGINT) tells a script the work is unfinished, as a second Ctrl-C would.
  if (kvs::cli::interrupted() && rc != 2) rc = 130;
  return rc;
}
