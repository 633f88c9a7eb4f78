#pragma once
// Errors: kvs::Error for untrusted input (files, configs, CLI values, prompts),
// KVS_CHECK for internal invariants (a failure is a bug in kvsieve).
#include <stdexcept>
#include <string>

namespace kvs {

// Bad input: the CLI prints what() on one line and exits 1.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bad command-line usage: the CLI exits 2.
class UsageError : public Error {
 public:
  using Error::Error;
};

[[noreturn]] void check_failed(const char* expr, const char* file, int line,
                               const std::string& msg);

}  // namespace kvs

#define KVS_CHECK(cond, ...)                                                               \
  do {                                                                                     \
    if (!(cond)) ::kvs::check_failed(#cond, __FILE__, __LINE__, std::string{__VA_ARGS__}); \
  } while (0)
