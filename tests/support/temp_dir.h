#pragma once
// A fresh directory under /tmp for one test, removed with everything in it when the test ends.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace kvs::test {

class TempDir {
 public:
  explicit TempDir(const std::string& prefix = "kvs_test") {
    std::string tmpl = "/tmp/" + prefix + "_XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string operator/(const std::string& name) const { return path_ + "/" + name; }

  // Writes `text` (binary, replacing any old content) to `name` inside the directory.
  void write(const std::string& name, const std::string& text) const {
    std::ofstream f(*this / name, std::ios::binary);
    if (!(f << text)) throw std::runtime_error("cannot write " + *this / name);
  }

 private:
  std::string path_;
};

}  // namespace kvs::test
