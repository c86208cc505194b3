// Read-only memory-mapped files and bounds-checked views into them.
// Every reader in smolq takes its bytes through ByteView: an out-of-range slice throws a
// FormatError naming the file and offset instead of reading past the mapping.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string>

#include "formats/error.h"

namespace smolq {

// A contiguous, bounds-checked window of a file's bytes. Cheap to copy. `base` is the
// absolute file offset of data[0], kept so errors point at real file offsets.
class ByteView {
 public:
  ByteView() = default;
  ByteView(const std::byte* data, uint64_t size, uint64_t base, const std::string* path)
      : data_(data), size_(size), base_(base), path_(path) {}

  uint64_t size() const { return size_; }
  uint64_t file_offset() const { return base_; }
  const std::byte* data() const { return data_; }
  const std::string& path() const;
  std::span<const std::byte> span() const { return {data_, static_cast<size_t>(size_)}; }

  // Sub-view [off, off+len); throws FormatError (with `what`) when out of range.
  ByteView slice(uint64_t off, uint64_t len, const char* what = "slice") const;
  // Raw little-endian scalar at `off` (the hosts we support are little-endian).
  template <class T>
  T read(uint64_t off, const char* what = "value") const {
    ByteView v = slice(off, sizeof(T), what);
    T t;
    std::memcpy(&t, v.data_, sizeof(T));
    return t;
  }
  [[noreturn]] void fail(uint64_t off, const std::string& msg) const;

 private:
  const std::byte* data_ = nullptr;
  uint64_t size_ = 0;
  uint64_t base_ = 0;
  const std::string* path_ = nullptr;
};

// A whole file mapped read-only. Non-copyable; views must not outlive it.
class MappedFile {
 public:
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  uint64_t size() const { return size_; }
  ByteView view() const { return ByteView(data_, size_, 0, &path_); }
  // Hint the kernel that [off, off+len) is no longer needed (keeps RSS low while streaming).
  void drop_pages(uint64_t off, uint64_t len) const;

 private:
  MappedFile() = default;
  std::string path_;
  const std::byte* data_ = nullptr;
  uint64_t size_ = 0;
};

// Read a whole (small) file into a string, e.g. JSON configs; `cap` guards absurd sizes.
std::string read_text_file(const std::string& path, uint64_t cap = 512ull << 20);
bool file_exists(const std::string& path);

}  // namespace smolq
