// Atomic file output: bytes go to a hidden temporary file `.<name>.smolq-tmp-<pid>` in the
// destination folder and are renamed over the destination only by commit(). An AtomicFile
// destroyed before commit() (error, exception, interruption) removes its temporary file: no
// half-written output. The destination follows formats/output_path.h's policy: symlinks are
// written through, a replaced file keeps its mode (and owner as root), streams such as `-`
// are written directly, other non-regular destinations are refused.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace smolq {

class AtomicFile {
 public:
  explicit AtomicFile(std::string dest);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  uint64_t bytes_written() const { return written_; }  // the sequential position
  // Random access, for a writer that gets some parts long before the ones ahead of them
  // (GgufWriter::place_tensor). Regular-file destinations only: seekable() is false for a
  // stream such as `-`, and the two calls below throw there. write_at writes n bytes at
  // `offset` without moving the sequential position; skip moves that position n bytes forward
  // (over bytes written by write_at: the skipped range is never written by write()).
  bool seekable() const { return !stream_; }
  void write_at(uint64_t offset, const void* data, size_t n);
  void skip(uint64_t n);
  const std::string& dest() const { return dest_; }
  // Flush, fsync and rename into place.
  void commit();
  // Delete the temporary file now (also done by the destructor).
  void abandon();

 private:
  void flush();
  std::string dest_, tmp_;
  std::string final_;        // where commit() renames to: dest_ with its symlinks followed
  bool stream_ = false;      // writing straight to a stream descriptor (no temp, no rename)
  bool owns_fd_ = true;      // false for a shared stream (stdout's duplicate, stderr, /dev/fd/N)
  mode_t final_mode_ = 0;    // permission bits of the committed file
  bool keep_owner_ = false;  // root replacing a file: give it back its owner and group
  uid_t uid_ = 0;
  gid_t gid_ = 0;
  int fd_ = -1;
  uint64_t written_ = 0;
  std::vector<char> buf_;
  bool done_ = false;
};

// Convenience: atomically replace `dest` with `content`.
void write_file_atomic(const std::string& dest, std::string_view content);

// Temporary files created by AtomicFile that are still open; the interrupt handler unlinks
// them before the process dies (see formats/interrupt.h).
void unlink_pending_temp_files_signal_safe();

}  // namespace smolq
