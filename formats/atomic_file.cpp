#include "formats/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "formats/error.h"
#include "formats/output_path.h"

namespace smolq {
namespace {

constexpr size_t kBufBytes = 4u << 20;

// A small fixed table of open temporary paths, readable from a signal handler.
constexpr int kMaxPending = 16;
constexpr size_t kMaxPath = 4096;
struct PendingSlot {
  std::atomic<bool> claimed{false};  // owned by a writer
  std::atomic<bool> used{false};     // path is complete: the signal handler may unlink it
  char path[kMaxPath];
};
std::array<PendingSlot, kMaxPending> g_pending;

int register_pending(const std::string& p) {
  if (p.size() + 1 > kMaxPath) return -1;
  for (int i = 0; i < kMaxPending; ++i) {
    bool expected = false;
    if (!g_pending[i].claimed.compare_exchange_strong(expected, true)) continue;
    std::memcpy(g_pending[i].path, p.c_str(), p.size() + 1);
    g_pending[i].used.store(true);
    return i;
  }
  return -1;
}
void unregister_pending(const std::string& p) {
  for (auto& s : g_pending)
    if (s.used.load() && p == s.path) {
      s.used.store(false);
      s.claimed.store(false);
    }
}

}  // namespace

void unlink_pending_temp_files_signal_safe() {
  for (auto& s : g_pending)
    if (s.used.load()) ::unlink(s.path);
}

// New files get 0666 minus the umask, as any tool creating a file would.
static mode_t new_file_mode() {
  static const mode_t mode = [] {
    const mode_t mask = ::umask(0);
    ::umask(mask);
    return static_cast<mode_t>(0666 & ~mask);
  }();
  return mode;
}

AtomicFile::AtomicFile(std::string dest) : dest_(std::move(dest)) {
  const OutputTarget t = resolve_output_path(dest_);
  if (t.kind == OutputKind::kStream) {
    stream_ = true;
    fd_ = t.stream_fd;
    owns_fd_ = t.owns_fd;
    tmp_ = dest_;
    buf_.reserve(kBufBytes);
    return;
  }
  final_ = t.path;
  final_mode_ = t.kind == OutputKind::kRegularFile ? t.mode : new_file_mode();
  keep_owner_ = t.kind == OutputKind::kRegularFile && ::geteuid() == 0;
  uid_ = t.uid;
  gid_ = t.gid;
  // Private (0600) while partial; the final mode is set at commit.
  for (int attempt = 0; attempt < 16 && fd_ < 0; ++attempt) {
    tmp_ = temp_path_for(final_, attempt);
    fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd_ < 0 && errno != EEXIST) throw IoError(final_, "cannot create the output file", errno);
  }
  if (fd_ < 0) throw IoError(tmp_, "cannot create temporary output file", EEXIST);
  register_pending(tmp_);
  buf_.reserve(kBufBytes);
}

AtomicFile::~AtomicFile() { abandon(); }

void AtomicFile::abandon() {
  if (done_) return;
  done_ = true;
  if (stream_) {
    // A stream cannot be taken back; what was written stays written.
    if (owns_fd_) ::close(fd_);
    fd_ = -1;
    return;
  }
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  ::unlink(tmp_.c_str());
  unregister_pending(tmp_);
}

void AtomicFile::write(const void* data, size_t n) {
  const char* p = static_cast<const char*>(data);
  written_ += n;
  if (buf_.size() + n <= kBufBytes) {
    buf_.insert(buf_.end(), p, p + n);
    return;
  }
  flush();
  if (n >= kBufBytes) {
    while (n > 0) {
      ssize_t w = ::write(fd_, p, n);
      if (w < 0) {
        if (errno == EINTR) continue;
        throw IoError(tmp_, "write failed", errno);
      }
      p += w;
      n -= static_cast<size_t>(w);
    }
  } else {
    buf_.insert(buf_.end(), p, p + n);
  }
}

void AtomicFile::write_at(uint64_t offset, const void* data, size_t n) {
  if (stream_ || done_) throw Error("internal: positioned write to '" + dest_ + "', a stream or a closed file");
  const char* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::pwrite(fd_, p, n, static_cast<off_t>(offset));
    if (w < 0) {
      if (errno == EINTR) continue;
      throw IoError(tmp_, "write failed", errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
    offset += static_cast<uint64_t>(w);
  }
}

void AtomicFile::skip(uint64_t n) {
  if (stream_ || done_) throw Error("internal: seek in '" + dest_ + "', a stream or a closed file");
  flush();
  if (::lseek(fd_, static_cast<off_t>(n), SEEK_CUR) < 0) throw IoError(tmp_, "seek failed", errno);
  written_ += n;
}

void AtomicFile::flush() {
  const char* p = buf_.data();
  size_t n = buf_.size();
  while (n > 0) {
    ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      throw IoError(tmp_, "write failed", errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  buf_.clear();
}

void AtomicFile::commit() {
  flush();
  if (stream_) {
    // fsync is meaningless on pipes and terminals (EINVAL); a regular file behind the
    // descriptor is still synced.
    if (::fsync(fd_) != 0 && errno != EINVAL && errno != EROFS) throw IoError(dest_, "fsync failed", errno);
    if (owns_fd_ && ::close(fd_) != 0) {
      fd_ = -1;
      throw IoError(dest_, "close failed", errno);
    }
    fd_ = -1;
    done_ = true;
    return;
  }
  if (keep_owner_ && ::fchown(fd_, uid_, gid_) != 0) throw IoError(tmp_, "cannot keep the owner of the file", errno);
  if (::fchmod(fd_, final_mode_) != 0) throw IoError(tmp_, "cannot set the file mode", errno);
  if (::fsync(fd_) != 0) throw IoError(tmp_, "fsync failed", errno);
  if (::close(fd_) != 0) {
    fd_ = -1;
    throw IoError(tmp_, "close failed", errno);
  }
  fd_ = -1;
  if (::rename(tmp_.c_str(), final_.c_str()) != 0) throw IoError(final_, "cannot rename output into place", errno);
  unregister_pending(tmp_);
  done_ = true;
}

void write_file_atomic(const std::string& dest, std::string_view content) {
  AtomicFile f(dest);
  f.write(content);
  f.commit();
}

}  // namespace smolq
