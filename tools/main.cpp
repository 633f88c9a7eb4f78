// kvsieve: one binary, subcommands registered from tools/cmd_*.cpp.
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <exception>

#include "kernels/core/error.h"
#include "tools/command.h"

namespace kvs::cli {

std::vector<CommandDef>& command_registry() {
  static std::vector<CommandDef> registry;
  return registry;
}

}  // namespace kvs::cli

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

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  } catch (const kvs::UsageError& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kvsieve: usage error: %s\n", e.what());
    return 2;
  } catch (const kvs::Error& e) {
    std::fflush(stdout);
    std::fprintf(stderr, "kvsieve: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fflush(stdout);
    std::fprintf(stderr, "kvsieve: error: out of memory\n");
    return 1;
  }
  return 0;
}
