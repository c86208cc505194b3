// Shared plumbing of the fuzz targets (see fuzz/README.md).
//
// smolq's parsers take paths and mmap them, exactly as a user's file reaches them, so each
// target writes the fuzzer's bytes to files in a private scratch folder and calls the real
// entry point: the code under test is the code users run, not a span-based twin.
//
// Expected outcome of a malformed input: a smolq::Error (FormatError, IoError...). Anything
// else is a finding: a crash or sanitizer report, a hang, an allocation beyond libFuzzer's
// -malloc_limit_mb, or an exception that is not a smolq::Error (std::bad_alloc included: the
// readers' caps must reject absurd sizes before allocating). Targets therefore catch
// smolq::Error and nothing else, and call fuzz_fail() when a checked invariant breaks.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace smolq::fuzz {

// A per-process scratch folder (created on first use under $SMOLQ_FUZZ_TMP, /dev/shm or
// /tmp, removed at exit). Files are rewritten by each run.
const std::string& scratch_dir();

// Writes `bytes` to scratch_dir()/name (name may hold one folder: "index/a.json") and returns
// the full path. Targets use distinct names, so one process can run them all.
std::string write_scratch(const std::string& name, std::string_view bytes);
// Removes scratch_dir()/name if it exists (a part that is absent in this input).
void remove_scratch(const std::string& name);

// Inputs made of several files are the files' bytes joined by kPartSeparator (it is in the
// targets' dictionaries, so the fuzzer can make and move it). Always returns `n` parts;
// missing ones are empty and `present` (if given) says which were in the input.
inline constexpr std::string_view kPartSeparator = "\n#@smolq-part@#\n";
std::vector<std::string_view> split_parts(const uint8_t* data, size_t size, size_t n,
                                          std::vector<bool>* present = nullptr);

// An invariant that must hold for every input was broken: print `what` and abort (libFuzzer
// reports it as a crash and saves the input; the replay test dies with the message).
[[noreturn]] void fuzz_fail(const std::string& what);

// Folder of real assets (../shared/assets) and of the source tree, for targets that load a
// fixed real tokenizer. Set at compile time (SMOLQ_SOURCE_DIR / SMOLQ_SHARED_DIR).
std::string shared_assets_dir();
std::string source_dir();

}  // namespace smolq::fuzz
