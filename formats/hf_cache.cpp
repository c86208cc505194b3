#include "formats/hf_cache.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <system_error>

#include "formats/error.h"
#include "formats/mapped_file.h"

namespace smolq {
namespace fs = std::filesystem;
namespace {

constexpr const char* kRepoPrefix = "models--";

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : "";
}

bool is_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec);
}

// "models--HuggingFaceTB--SmolLM2-135M-Instruct" -> "HuggingFaceTB/SmolLM2-135M-Instruct"
// (huggingface_hub joins the repo id's parts with "--"; org names cannot hold "--").
std::string repo_id_from_folder(const std::string& folder) {
  if (folder.rfind(kRepoPrefix, 0) != 0) return "";
  std::string rest = folder.substr(std::char_traits<char>::length(kRepoPrefix));
  const size_t sep = rest.find("--");
  if (sep == std::string::npos || sep == 0 || sep + 2 >= rest.size()) return "";
  return rest.substr(0, sep) + "/" + rest.substr(sep + 2);
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

std::vector<std::string> list_dir(const fs::path& p) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(p, ec)) out.push_back(e.path().filename().string());
  std::sort(out.begin(), out.end());
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s.empty() ? "(none)" : s;
}

// The snapshot folder of `revision` (a branch or tag under refs/, a full commit hash, or a
// unique prefix of one of at least 7 characters) in a cache repo folder; "" for refs/main
// when the repo has no refs/main but exactly one snapshot.
fs::path snapshot_of(const fs::path& repo, const std::string& revision) {
  const fs::path snaps = repo / "snapshots";
  const std::vector<std::string> commits = list_dir(snaps);
  const std::string rev = revision.empty() ? "main" : revision;
  const fs::path ref = repo / "refs" / rev;
  if (file_exists(ref.string())) {
    const std::string commit = trim(read_text_file(ref.string(), 4096));
    if (is_dir(snaps / commit)) return snaps / commit;
    throw UsageError(ref.string() + " names commit " + commit + ", which has no folder in " + snaps.string());
  }
  if (is_dir(snaps / rev)) return snaps / rev;
  if (rev.size() >= 7) {
    std::vector<std::string> hits;
    for (const auto& c : commits)
      if (c.rfind(rev, 0) == 0) hits.push_back(c);
    if (hits.size() == 1) return snaps / hits[0];
  }
  if (revision.empty() && commits.size() == 1) return snaps / commits[0];
  throw UsageError("revision '" + rev + "' is not in " + repo.string() + " (refs: " + join(list_dir(repo / "refs")) +
                   "; snapshots: " + join(commits) + ")");
}

}  // namespace

std::vector<std::string> hf_cache_dirs() {
  std::vector<std::string> dirs;
  auto add = [&](const std::string& d) {
    if (!d.empty() && std::find(dirs.begin(), dirs.end(), d) == dirs.end()) dirs.push_back(d);
  };
  add(env("HF_HUB_CACHE"));
  add(env("HUGGINGFACE_HUB_CACHE"));
  if (!env("HF_HOME").empty()) add(env("HF_HOME") + "/hub");
  if (!env("XDG_CACHE_HOME").empty()) add(env("XDG_CACHE_HOME") + "/huggingface/hub");
  if (!env("HOME").empty()) add(env("HOME") + "/.cache/huggingface/hub");
  return dirs;
}

bool looks_like_repo_id(const std::string& ref) {
  const std::string id = ref.substr(0, ref.find('@'));
  const size_t slash = id.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == id.size() || id.find('/', slash + 1) != std::string::npos)
    return false;
  if (id[0] == '.' || id[slash + 1] == '.') return false;  // "./x", "../x", "x/.."
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == '/';
  });
}

std::string ModelRef::display_name() const {
  if (!repo_id.empty()) return repo_id.substr(repo_id.find('/') + 1);
  std::error_code ec;
  fs::path p = fs::weakly_canonical(fs::absolute(path), ec);
  if (ec) p = path;
  std::string name = p.filename().string();
  if (name.empty()) name = p.parent_path().filename().string();
  return name;
}

ModelRef resolve_model_ref(const std::string& typed) {
  ModelRef r;
  r.typed = typed;
  r.path = typed;
  std::error_code ec;
  if (fs::exists(typed, ec)) {
    // Where it sits decides what is known: models--org--name/ or models--org--name/snapshots/<commit>/.
    const fs::path abs = fs::weakly_canonical(fs::absolute(typed), ec);
    const std::string leaf = abs.filename().string();
    if (is_dir(abs) && !(r.repo_id = repo_id_from_folder(leaf)).empty() && is_dir(abs / "snapshots")) {
      const fs::path snap = snapshot_of(abs, "");
      r.path = snap.string();
      r.revision = snap.filename().string();
      return r;
    }
    r.repo_id.clear();
    if (is_dir(abs) && abs.parent_path().filename() == "snapshots") {
      r.repo_id = repo_id_from_folder(abs.parent_path().parent_path().filename().string());
      if (!r.repo_id.empty()) r.revision = leaf;
    }
    return r;
  }
  // Not there and not a repo id: the path as typed; the reader that opens it reports the error.
  if (!looks_like_repo_id(typed)) return r;
  const size_t at = typed.find('@');
  const std::string id = typed.substr(0, at);
  const std::string revision = at == std::string::npos ? "" : typed.substr(at + 1);
  const std::string folder = std::string(kRepoPrefix) + id.substr(0, id.find('/')) + "--" + id.substr(id.find('/') + 1);
  std::string searched;
  for (const auto& dir : hf_cache_dirs()) {
    const fs::path repo = fs::path(dir) / folder;
    searched += (searched.empty() ? "" : ", ") + repo.string();
    if (!is_dir(repo / "snapshots")) continue;
    const fs::path snap = snapshot_of(repo, revision);
    r.path = snap.string();
    r.repo_id = id;
    r.revision = snap.filename().string();
    return r;
  }
  throw UsageError("'" + typed + "' is neither a file nor a folder, and no Hugging Face cache holds " + id +
                   " (searched " + searched + "); smolq reads the cache only, it never downloads — fetch it with `hf download " +
                   id + "` or give the folder");
}

}  // namespace smolq
