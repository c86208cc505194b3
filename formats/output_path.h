// Where smolq's output files may go, decided once for every command (docs/architecture.md,
// "Errors, interruption, output files"):
//
//  - a new path, or an existing regular file: written atomically (AtomicFile: a temporary file
//    `.<name>.smolq-tmp-<pid>` in the same folder, renamed over the destination on success).
//    A replaced file keeps its permission bits, and its owner and group when we run as root.
//  - a symbolic link: followed (a chain of at most 40 links); the file it points to is
//    replaced as above and the link itself stays a link.
//  - `-`, /dev/stdout, /dev/stderr, /dev/fd/N, /proc/self/fd/N and /dev/null: streams written
//    directly, not atomically (a failed run may leave a partial stream). For `-` and /dev/stdout
//    everything smolq would print on stdout goes to stderr instead, so the stream carries only
//    the file's bytes.
//  - any other non-regular destination (directory, FIFO, socket, device): refused with one
//    UsageError before any work starts; nothing is created or replaced.
//
// check_output_path() applies this policy and proves the folder writable by creating and
// removing the temporary file, so a command calls it before minutes of quantizing. It also
// finds temporary files a killed run (SIGKILL, the OOM killer) left for the same destination:
// those of processes that no longer exist are removed, and a note says so.
#pragma once
#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

namespace smolq {

enum class OutputKind {
  kNewFile,       // nothing there yet
  kRegularFile,   // an existing regular file, replaced
  kStream,        // written directly (see the list above)
};

struct OutputTarget {
  std::string requested;  // the path as given
  std::string path;       // the file written: `requested`, or where its symlinks lead
  OutputKind kind = OutputKind::kNewFile;
  int stream_fd = -1;     // kStream: the descriptor to write to
  bool owns_fd = false;   // kStream: stream_fd was opened for this target (close it when done)
  // kRegularFile: what the replacement keeps.
  mode_t mode = 0;
  uid_t uid = 0;
  gid_t gid = 0;
};

// Apply the policy to `path` (no side effects apart from the stdout redirection of `-` /
// /dev/stdout). Throws UsageError for a refused destination, IoError when a symlink cannot
// be followed.
OutputTarget resolve_output_path(const std::string& path);

// resolve_output_path(), then prove the file can be created there; removes stale temporary
// files of dead processes for the same destination. Returns notes for the user (one line
// each, e.g. "removed stale temporary file ..."). Throws UsageError / IoError.
std::vector<std::string> check_output_path(const std::string& path);

// The temporary file name AtomicFile uses for `final_path` (a path already resolved):
// `<folder>/.<name>.smolq-tmp-<pid>`; `attempt` > 0 appends `-<attempt>`.
std::string temp_path_for(const std::string& final_path, int attempt = 0);

// Whether `name` (a file name, no folder) is an AtomicFile temporary for `dest_name`, and the
// process id it carries.
std::optional<pid_t> temp_file_pid(const std::string& name, const std::string& dest_name);

}  // namespace smolq
