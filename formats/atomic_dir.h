// Atomic folder output: a folder of files that appears whole or not at all. The files go into a
// hidden staging folder `.<name>.smolq-tmp-<pid>` beside the destination (same filesystem, so
// hard links and renames work); commit() puts the staging folder in the destination's place.
// An existing destination is swapped out in one step (renameat2 RENAME_EXCHANGE: readers see
// the old folder or the new one, never a mix or nothing) and then deleted. An AtomicDir
// destroyed before commit() (error, exception, SIGINT/SIGTERM through formats/interrupt.h)
// deletes its staging folder and leaves the destination untouched. A SIGKILLed run leaves its
// staging folder; the next AtomicDir for the same destination deletes those whose process is
// gone (as AtomicFile does with its temporary files).
//
// What may be replaced is the caller's policy (smolq release replaces only a folder it wrote
// itself, see release/release.h); AtomicDir refuses a destination that is not a folder.
#pragma once
#include <string>
#include <vector>

namespace smolq {

class AtomicDir {
 public:
  // Creates the staging folder. UsageError when `dest` exists and is not a folder (or is a
  // symbolic link), IoError when the parent folder is missing or not writable.
  explicit AtomicDir(std::string dest);
  ~AtomicDir();
  AtomicDir(const AtomicDir&) = delete;
  AtomicDir& operator=(const AtomicDir&) = delete;

  const std::string& dest() const { return dest_; }
  // The staging folder, and a file in it: write everything here before commit().
  const std::string& staging() const { return staging_; }
  std::string file(const std::string& name) const { return staging_ + "/" + name; }
  // Notes for the user (stale staging folders removed).
  const std::vector<std::string>& notes() const { return notes_; }

  // fsync the staging folder, swap it into place, delete the old folder.
  void commit();
  // Delete the staging folder now (also done by the destructor).
  void abandon();

 private:
  std::string dest_, staging_;
  std::vector<std::string> notes_;
  bool done_ = false;
};

}  // namespace smolq
