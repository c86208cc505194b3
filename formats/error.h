// One error policy for all of smolq (see docs/architecture.md):
//  - malformed input (files, options) throws an Error subclass carrying enough context
//    (file path, byte offset, tensor name) for a single clear line;
//  - programmer errors are asserts;
//  - only cli/main.cpp catches, prints one line and returns a non-zero exit code.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace smolq {

// Base of every error smolq reports to its user.
class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

// Malformed or unsupported file content: `path @0xOFFSET: message`.
class FormatError : public Error {
 public:
  static constexpr uint64_t kNoOffset = UINT64_MAX;
  FormatError(std::string path, uint64_t offset, const std::string& message);
  FormatError(std::string path, const std::string& message)
      : FormatError(std::move(path), kNoOffset, message) {}
  const std::string& path() const { return path_; }
  uint64_t offset() const { return offset_; }
  const std::string& message() const { return message_; }

 private:
  std::string path_;
  uint64_t offset_;
  std::string message_;
};

// Operating-system level failure (open, write, rename...) with errno text.
class IoError : public Error {
 public:
  IoError(const std::string& path, const std::string& what, int err);
};

// Wrong or conflicting user options.
class UsageError : public Error {
 public:
  explicit UsageError(const std::string& msg) : Error(msg) {}
};

// The user interrupted us (SIGINT/SIGTERM); carries the signal number.
class Interrupted : public Error {
 public:
  explicit Interrupted(int sig) : Error("interrupted"), signal_(sig) {}
  int signal() const { return signal_; }

 private:
  int signal_;
};

std::string hex_offset(uint64_t off);

}  // namespace smolq
