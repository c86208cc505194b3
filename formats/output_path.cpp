#include "formats/output_path.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <mutex>

#include "formats/error.h"

namespace smolq {
namespace {

constexpr int kMaxSymlinks = 40;  // as the kernel's ELOOP limit
constexpr std::string_view kTempTag = ".smolq-tmp-";

std::string dir_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? std::string(".") : path.substr(0, pos == 0 ? 1 : pos);
}
std::string base_of(const std::string& path) {
  auto pos = path.find_last_of('/');
  return pos == std::string::npos ? path : path.substr(pos + 1);
}

std::string kind_name(mode_t m) {
  if (S_ISDIR(m)) return "a directory";
  if (S_ISFIFO(m)) return "a FIFO (named pipe)";
  if (S_ISSOCK(m)) return "a socket";
  if (S_ISCHR(m)) return "a character device";
  if (S_ISBLK(m)) return "a block device";
  return "not a regular file";
}

// `-` and /dev/stdout: the file's bytes go to a duplicate of descriptor 1, and descriptor 1
// itself is pointed at stderr so that summaries printed later cannot mix into the stream.
int stdout_data_fd() {
  static std::mutex mu;
  static int fd = -1;
  std::lock_guard<std::mutex> lock(mu);
  if (fd >= 0) return fd;
  std::fflush(stdout);
  fd = ::fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) throw IoError("-", "cannot use standard output", errno);
  ::dup2(STDERR_FILENO, STDOUT_FILENO);
  return fd;
}

std::optional<int> fd_path_number(const std::string& p) {
  for (std::string_view prefix : {std::string_view("/dev/fd/"), std::string_view("/proc/self/fd/")}) {
    if (p.compare(0, prefix.size(), prefix) != 0) continue;
    int n = -1;
    const char* b = p.data() + prefix.size();
    auto [end, ec] = std::from_chars(b, p.data() + p.size(), n);
    if (ec == std::errc() && end == p.data() + p.size() && end != b) return n;
  }
  return std::nullopt;
}

// A stream destination, or nullopt for a path to treat as a file.
std::optional<OutputTarget> stream_target(const std::string& p) {
  OutputTarget t;
  t.requested = t.path = p;
  t.kind = OutputKind::kStream;
  if (p == "-" || p == "/dev/stdout" || p == "/proc/self/fd/1" || p == "/dev/fd/1") {
    t.stream_fd = stdout_data_fd();
    return t;
  }
  if (p == "/dev/null") {
    t.stream_fd = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (t.stream_fd < 0) throw IoError(p, "cannot open", errno);
    t.owns_fd = true;
    return t;
  }
  int n = -1;
  if (p == "/dev/stderr") n = STDERR_FILENO;
  else if (auto fdn = fd_path_number(p)) n = *fdn;
  else return std::nullopt;
  const int flags = ::fcntl(n, F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY)
    throw UsageError("output '" + p + "': descriptor " + std::to_string(n) + " is not open for writing");
  t.stream_fd = n;
  return t;
}

// Follow symlinks at `p` (the last component only: folders are resolved by the kernel).
std::string follow_links(const std::string& requested) {
  std::string p = requested;
  for (int i = 0; i <= kMaxSymlinks; ++i) {
    struct stat st {};
    if (::lstat(p.c_str(), &st) != 0 || !S_ISLNK(st.st_mode)) return p;
    std::string target(static_cast<size_t>(st.st_size > 0 ? st.st_size : 4096) + 1, '\0');
    const ssize_t n = ::readlink(p.c_str(), target.data(), target.size());
    if (n < 0) throw IoError(p, "cannot read symbolic link", errno);
    target.resize(static_cast<size_t>(n));
    p = (!target.empty() && target[0] == '/') ? target : dir_of(p) + "/" + target;
  }
  throw IoError(requested, "cannot follow symbolic links", ELOOP);
}

}  // namespace

std::string temp_path_for(const std::string& final_path, int attempt) {
  std::string s = dir_of(final_path) + "/." + base_of(final_path) + std::string(kTempTag) + std::to_string(::getpid());
  if (attempt > 0) s += "-" + std::to_string(attempt);
  return s;
}

std::optional<pid_t> temp_file_pid(const std::string& name, const std::string& dest_name) {
  const std::string prefix = "." + dest_name + std::string(kTempTag);
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0) return std::nullopt;
  pid_t pid = 0;
  const char* b = name.data() + prefix.size();
  const char* e = name.data() + name.size();
  auto [end, ec] = std::from_chars(b, e, pid);
  if (ec != std::errc() || end == b || pid <= 0) return std::nullopt;
  if (end != e) {  // "-<attempt>"
    int attempt = 0;
    if (*end != '-') return std::nullopt;
    auto [end2, ec2] = std::from_chars(end + 1, e, attempt);
    if (ec2 != std::errc() || end2 != e || end2 == end + 1) return std::nullopt;
  }
  return pid;
}

OutputTarget resolve_output_path(const std::string& requested) {
  if (requested.empty()) throw UsageError("empty output path");
  if (auto s = stream_target(requested)) return *s;
  OutputTarget t;
  t.requested = requested;
  t.path = follow_links(requested);
  struct stat st {};
  if (::stat(t.path.c_str(), &st) != 0) {
    if (errno != ENOENT) throw IoError(t.path, "cannot check output path", errno);
    if (!requested.empty() && requested.back() == '/')
      throw UsageError("output '" + requested + "' names a folder; give a file name");
    t.kind = OutputKind::kNewFile;
    return t;
  }
  if (!S_ISREG(st.st_mode))
    throw UsageError("output '" + requested + "' is " + kind_name(st.st_mode) +
                     "; smolq writes regular files (or '-' / /dev/stdout for a stream)");
  t.kind = OutputKind::kRegularFile;
  t.mode = st.st_mode & 07777;
  t.uid = st.st_uid;
  t.gid = st.st_gid;
  return t;
}

std::vector<std::string> check_output_path(const std::string& requested) {
  const OutputTarget t = resolve_output_path(requested);
  std::vector<std::string> notes;
  if (t.kind == OutputKind::kStream) {
    if (t.owns_fd) ::close(t.stream_fd);
    return notes;
  }
  const std::string dir = dir_of(t.path), name = base_of(t.path);
  struct stat dst {};
  if (::stat(dir.c_str(), &dst) != 0) throw IoError(dir, "output folder does not exist", errno);
  if (!S_ISDIR(dst.st_mode)) throw IoError(dir, "output folder is not a folder", ENOTDIR);
  // Stale temporaries of this destination left by runs that were killed outright.
  if (DIR* d = ::opendir(dir.c_str())) {
    while (const dirent* e = ::readdir(d)) {
      const std::string entry = e->d_name;
      const auto pid = temp_file_pid(entry, name);
      if (!pid || *pid == ::getpid()) continue;
      if (::kill(*pid, 0) == 0 || errno != ESRCH) {
        notes.push_back("another smolq (pid " + std::to_string(*pid) + ") seems to be writing '" + t.path +
                        "' (temporary file " + dir + "/" + entry + ")");
        continue;
      }
      const std::string stale = dir + "/" + entry;
      if (::unlink(stale.c_str()) == 0)
        notes.push_back("removed stale temporary file " + stale + " (left by an interrupted run, pid " +
                        std::to_string(*pid) + ")");
    }
    ::closedir(d);
  }
  // Prove the folder writable the way the real write will use it.
  const std::string probe = temp_path_for(t.path);
  const int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (errno == EEXIST) return notes;  // ours, still open: writable
    throw IoError(t.path, "cannot write the output here", errno);
  }
  ::close(fd);
  ::unlink(probe.c_str());
  return notes;
}

}  // namespace smolq
