#include "formats/error.h"

#include <cstring>
#include <cstdio>

namespace smolq {

std::string hex_offset(uint64_t off) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(off));
  return buf;
}

static std::string format_error_text(const std::string& path, uint64_t offset,
                                     const std::string& message) {
  std::string s = path;
  if (offset != FormatError::kNoOffset) s += " @" + hex_offset(offset);
  s += ": " + message;
  return s;
}

FormatError::FormatError(std::string path, uint64_t offset, const std::string& message)
    : Error(format_error_text(path, offset, message)),
      path_(std::move(path)),
      offset_(offset),
      message_(message) {}

IoError::IoError(const std::string& path, const std::string& what, int err)
    : Error(path + ": " + what + ": " + std::strerror(err)) {}

}  // namespace smolq
