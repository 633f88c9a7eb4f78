#pragma once
// Runs the kvsieve binary and captures its exit code, stdout and stderr.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

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

// stderr lines that are not log lines ("[I] ...", "[W] ..."): what a failing command says.
inline std::vector<std::string> error_lines(const std::string& err) {
  std::vector<std::string> lines;
  size_t start = 0;
  while (start < err.size()) {
    size_t end = err.find('\n', start);
    if (end == std::string::npos) end = err.size();
    const std::string line = err.substr(start, end - start);
    if (!line.empty() && line[0] != '[') lines.push_back(line);
    start = end + 1;
  }
  return lines;
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

// The binary running in the background with stdout/stderr in files, for tests that signal it.
class CliProcess {
 public:
  explicit CliProcess(const std::vector<std::string>& args) {
    char tmpl[] = "/tmp/kvs_cli_XXXXXX";
    dir_ = mkdtemp(tmpl);
    out_ = dir_ + "/out";
    err_ = dir_ + "/err";
    std::vector<std::string> all = {KVSIEVE_BIN};
    all.insert(all.end(), args.begin(), args.end());
    pid_ = fork();
    if (pid_ == 0) {
      const int in = open("/dev/null", O_RDONLY);
      const int out = open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int err = open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(in, 0);
      dup2(out, 1);
      dup2(err, 2);
      std::vector<char*> argv;
      for (auto& a : all) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
  }
  ~CliProcess() {
    if (pid_ > 0 && !done_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    std::system(("rm -rf " + shell_quote(dir_)).c_str());
  }
  CliProcess(const CliProcess&) = delete;
  CliProcess& operator=(const CliProcess&) = delete;

  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }
  void signal(int sig) const { kill(pid_, sig); }

  // Polls until ready() holds or the process exits; false on timeout.
  bool wait_for(const std::function<bool()>& ready, double seconds) const {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (ready()) return true;
      siginfo_t info{};
      if (waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
          info.si_pid != 0)
        return ready();  // exited: only what it wrote counts
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return false;
  }

  // Waits for the exit (SIGKILL after `seconds`); code as run_cli reports it, -1 when killed.
  CliResult finish(double seconds) {
    CliResult r;
    int status = 0;
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    pid_t got = 0;
    while ((got = waitpid(pid_, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (got == 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      r.code = -1;
    } else {
      r.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    }
    done_ = true;
    r.out = out();
    r.err = err();
    return r;
  }

 private:
  static std::string slurp(const std::string& p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  }
  std::string dir_, out_, err_;
  pid_t pid_ = -1;
  bool done_ = false;
};

}  // namespace kvs::test
