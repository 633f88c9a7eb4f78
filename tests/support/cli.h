#pragma once
// Runs the kvsieve binary and captures its exit code, stdout and stderr.
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace kvs::test {

struct CliResult {
  int code = -1;
  std::string out;
  std::string err;
};

inline std::string shell_quote(const std::string& s) {
  std::string r = "'";
  for (char c : s) {
    if (c == '\'')
      r += "'\\''";
    else
      r += c;
  }
  return r + "'";
}

// args are passed verbatim (each is shell-quoted); stdin_text is fed to standard input.
inline CliResult run_cli(const std::vector<std::string>& args, const std::string& stdin_text = "") {
  char tmpl[] = "/tmp/kvs_cli_XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string in = dir + "/in", out = dir + "/out", err = dir + "/err";
  { std::ofstream(in) << stdin_text; }
  std::string cmd = shell_quote(KVSIEVE_BIN);
  for (const auto& a : args) {
    cmd += ' ';
    cmd += shell_quote(a);
  }
  cmd += " <" + in + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  CliResult r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  auto slurp = [](const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  r.out = slurp(out);
  r.err = slurp(err);
  std::system(("rm -rf " + shell_quote(dir)).c_str());
  return r;
}

}  // namespace kvs::test
