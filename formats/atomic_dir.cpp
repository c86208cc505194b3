#include "formats/atomic_dir.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "formats/error.h"
#include "formats/output_path.h"

namespace smolq {
namespace fs = std::filesystem;

namespace {

std::string parent_of(const std::string& p) {
  const fs::path parent = fs::path(p).parent_path();
  return parent.empty() ? "." : parent.string();
}

void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);  // best effort: some filesystems refuse fsync on folders
  ::close(fd);
}

// Staging folders of `dest_name` in `parent` whose process no longer exists.
std::vector<std::string> remove_stale(const std::string& parent, const std::string& dest_name) {
  std::vector<std::string> notes;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(parent, ec)) {
    const auto pid = temp_file_pid(e.path().filename().string(), dest_name);
    if (!pid || *pid == ::getpid()) continue;
    if (::kill(*pid, 0) == 0 || errno != ESRCH) continue;  // alive (or not ours to judge)
    std::error_code rm;
    fs::remove_all(e.path(), rm);
    if (!rm) notes.push_back("removed stale staging folder " + e.path().string());
  }
  return notes;
}

}  // namespace

AtomicDir::AtomicDir(std::string dest) : dest_(std::move(dest)) {
  while (dest_.size() > 1 && dest_.back() == '/') dest_.pop_back();
  struct stat st {};
  if (::lstat(dest_.c_str(), &st) == 0) {
    if (S_ISLNK(st.st_mode)) throw UsageError("'" + dest_ + "' is a symbolic link: give the folder itself");
    if (!S_ISDIR(st.st_mode)) throw UsageError("'" + dest_ + "' exists and is not a folder");
  } else if (errno != ENOENT) {
    throw IoError(dest_, "cannot inspect the output folder", errno);
  }
  const std::string parent = parent_of(dest_);
  const std::string name = fs::path(dest_).filename().string();
  if (name.empty() || name == "." || name == "..") throw UsageError("'" + dest_ + "': name the output folder itself");
  notes_ = remove_stale(parent, name);
  for (int attempt = 0; attempt < 16; ++attempt) {
    staging_ = temp_path_for(parent + "/" + name, attempt);
    if (::mkdir(staging_.c_str(), 0700) == 0) return;
    if (errno != EEXIST) throw IoError(parent, "cannot create a staging folder for '" + name + "'", errno);
  }
  throw IoError(staging_, "cannot create a staging folder", EEXIST);
}

AtomicDir::~AtomicDir() { abandon(); }

void AtomicDir::abandon() {
  if (done_) return;
  done_ = true;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void AtomicDir::commit() {
  if (done_) throw Error("internal: AtomicDir committed twice");
  // The folder gets the mode a new folder would have (0777 minus the umask).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  if (::chmod(staging_.c_str(), 0777 & ~mask) != 0) throw IoError(staging_, "cannot set the folder's mode", errno);
  fsync_dir(staging_);
  struct stat st {};
  const bool exists = ::lstat(dest_.c_str(), &st) == 0;
  if (exists) {
    // Both exist: exchange them in one step; the staging path then holds the old folder.
    if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, dest_.c_str(), RENAME_EXCHANGE) != 0) {
      if (errno != EINVAL && errno != ENOSYS) throw IoError(dest_, "cannot put the new folder in place", errno);
      // A filesystem without RENAME_EXCHANGE: move the old folder aside, then the new one in.
      const std::string aside = staging_ + "-old";
      if (::rename(dest_.c_str(), aside.c_str()) != 0) throw IoError(dest_, "cannot move the old folder aside", errno);
      if (::rename(staging_.c_str(), dest_.c_str()) != 0) {
        const int err = errno;
        ::rename(aside.c_str(), dest_.c_str());
        throw IoError(dest_, "cannot put the new folder in place", err);
      }
      ::rename(aside.c_str(), staging_.c_str());
    }
  } else if (::rename(staging_.c_str(), dest_.c_str()) != 0) {
    throw IoError(dest_, "cannot put the new folder in place", errno);
  }
  fsync_dir(parent_of(dest_));
  done_ = true;
  std::error_code ec;
  fs::remove_all(staging_, ec);  // the old folder, when there was one
}

}  // namespace smolq
