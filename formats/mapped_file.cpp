#include "formats/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

namespace smolq {

static const std::string kUnknownPath = "<memory>";

const std::string& ByteView::path() const { return path_ ? *path_ : kUnknownPath; }

void ByteView::fail(uint64_t off, const std::string& msg) const {
  throw FormatError(path(), base_ + off, msg);
}

ByteView ByteView::slice(uint64_t off, uint64_t len, const char* what) const {
  if (off > size_ || len > size_ - off) {
    throw FormatError(path(), base_ + (off > size_ ? size_ : off),
                      std::string(what) + " of " + std::to_string(len) + " bytes at " +
                          hex_offset(base_ + off) + " runs past end of data (" +
                          hex_offset(base_ + size_) + ")");
  }
  return ByteView(data_ + off, len, base_ + off, path_);
}

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw IoError(path, "cannot open", errno);
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    int e = errno;
    ::close(fd);
    throw IoError(path, "cannot stat", e);
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw FormatError(path, "not a regular file");
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = static_cast<uint64_t>(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      ::close(fd);
      throw IoError(path, "cannot mmap", e);
    }
    f->data_ = static_cast<const std::byte*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<std::byte*>(data_), size_);
}

void MappedFile::drop_pages(uint64_t off, uint64_t len) const {
  if (!data_ || len == 0) return;
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t start = (off + page - 1) / page * page;
  uint64_t end = (off + len) / page * page;
  if (end > start) madvise(const_cast<std::byte*>(data_) + start, end - start, MADV_DONTNEED);
}

std::string read_text_file(const std::string& path, uint64_t cap) {
  auto f = MappedFile::open(path);
  if (f->size() > cap)
    throw FormatError(path, "file is " + std::to_string(f->size()) + " bytes, over the " +
                                std::to_string(cap) + "-byte limit for this kind of file");
  return std::string(reinterpret_cast<const char*>(f->view().data()), f->size());
}

bool file_exists(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace smolq
