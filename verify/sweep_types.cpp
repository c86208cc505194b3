#include "verify/sweep_types.h"

#include <unistd.h>

#include <sstream>

#include "formats/error.h"

namespace smolq {

std::vector<SweepQuantSpec> parse_sweep_types(const std::string& list, bool have_imatrix) {
  std::vector<SweepQuantSpec> v;
  if (list == "all") {
    for (FileType t : sweep_all_types(have_imatrix)) v.push_back({std::string(file_type_info(t).name), t, "", true});
    return v;
  }
  const std::string suffix = kTargetSuffix;
  std::stringstream ss(list);
  for (std::string name; std::getline(ss, name, ',');) {
    if (name.empty()) continue;
    // "Q4_K_M@target": measured mixed precision at the size of the Q4_K_M file.
    const bool at_target = name.size() > suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
    if (at_target) name.resize(name.size() - suffix.size());
    const FileType t = parse_file_type(name);
    const FileTypeInfo& info = file_type_info(t);
    if (t == FileType::kAllF32 || t == FileType::kF16 || t == FileType::kBF16)
      throw UsageError(std::string(info.name) + " is not a quantization; the baseline is the full-precision model");
    if (info.requires_imatrix && !have_imatrix)
      throw UsageError(std::string(info.name) + " needs an importance matrix: add --imatrix auto (or a file)");
    v.push_back({std::string(info.name) + (at_target ? suffix : ""), t, "", false, at_target});
  }
  return v;
}

uint64_t default_sweep_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) / 2 : 0;
}

}  // namespace smolq
