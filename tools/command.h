#pragma once
// Subcommands register themselves from their own file:
//   KVS_COMMAND(tokenize, "Tokenize text with a model's tokenizer", setup_tokenize)
// where setup_tokenize(CLI::App& sub) adds options and a callback. Callbacks throw
// kvs::Error for bad input (exit 1) and kvs::UsageError for bad usage (exit 2).
#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace kvs::cli {

struct CommandDef {
  std::string name;
  std::string help;
  std::function<void(CLI::App&)> setup;
};

std::vector<CommandDef>& command_registry();

struct CommandRegistrar {
  CommandRegistrar(std::string name, std::string help, std::function<void(CLI::App&)> setup) {
    command_registry().push_back({std::move(name), std::move(help), std::move(setup)});
  }
};

}  // namespace kvs::cli

#define KVS_COMMAND(name, help, setup) \
  static ::kvs::cli::CommandRegistrar kvs_command_registrar_##name(#name, help, setup)
