// Model references as users type them, resolved to a folder or file on this machine —
// offline only, smolq never downloads:
//
//   ./SmolLM2-135M-Instruct              a folder or file: used as it is
//   ~/.cache/huggingface/hub/models--HuggingFaceTB--SmolLM2-135M-Instruct
//                                        a cache repo folder: its snapshot for refs/main
//   .../models--org--name/snapshots/<commit>
//                                        a cache snapshot folder: used as it is, and the repo
//                                        id and commit are known from where it sits
//   HuggingFaceTB/SmolLM2-135M-Instruct[@revision]
//                                        a repo id: looked up in the Hugging Face cache
//
// The cache layout is huggingface_hub's: <cache>/models--<org>--<name>/ holds blobs/<hash>
// (file contents), snapshots/<commit>/<file> (symlinks into blobs/) and refs/<branch or tag>
// (a file holding the commit hash). The cache folder is the first of $HF_HUB_CACHE,
// $HUGGINGFACE_HUB_CACHE, $HF_HOME/hub, $XDG_CACHE_HOME/huggingface/hub and
// ~/.cache/huggingface/hub that holds the repo.
#pragma once
#include <string>
#include <vector>

namespace smolq {

struct ModelRef {
  std::string typed;     // the reference as given
  std::string path;      // the folder or file to read
  std::string repo_id;   // "HuggingFaceTB/SmolLM2-135M-Instruct" when known, else ""
  std::string revision;  // the snapshot's commit hash when the path is a cache snapshot
  bool from_cache() const { return !repo_id.empty(); }
  // The repo's model name ("SmolLM2-135M-Instruct"), else the path's last component with
  // "." and ".." resolved to the real folder name.
  std::string display_name() const;
};

// Throws UsageError naming the folders searched when a repo id is in no cache, and listing
// the revisions a repo has when the asked one is not among them. A path that does not exist
// and is no repo id is returned as typed (the reader that opens it names the error).
ModelRef resolve_model_ref(const std::string& ref);

// The cache folders searched for a repo id, in order (existing or not, without duplicates).
std::vector<std::string> hf_cache_dirs();

// "org/name" (optionally "@revision") made only of the characters a Hub repo id may hold.
bool looks_like_repo_id(const std::string& ref);

}  // namespace smolq
