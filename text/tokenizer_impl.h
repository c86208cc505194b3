// Internals of smolq::Tokenizer shared by its loaders (tokenizer_load.cpp) and the encoder
// (tokenizer.cpp). Not part of the public API.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "text/tokenizer.h"
#include "text/tokenizer_pretok.h"

namespace smolq::detail {

// Hash map (left id, right id) -> merge rank for the BPE inner loop, where every merge step
// does one or two lookups and cache misses dominate. Open addressing, linear probing, a
// power-of-two table at most half full, and one 8-byte word per slot (8 slots per cache line):
//   bits 63..44 left id | bits 43..24 right id | bits 23..0 rank
// so ids must be below 2^20 and ranks below 2^24 (build() checks). The merged token of a rank
// is looked up in a separate array, only when a merge is applied.
class MergeTable {
 public:
  static constexpr uint32_t kMaxId = (1u << 20) - 1;  // all-ones left id is the empty marker
  static constexpr uint32_t kMaxRank = (1u << 24) - 1;
  // Later duplicates of a pair overwrite earlier ones, as in HF (its HashMap is built in
  // order). Returns false when an id or the number of merges is out of range.
  bool build(const std::vector<std::pair<int32_t, int32_t>>& merges, const std::vector<int32_t>& merged);
  // Rank of the merge of (left, right), or -1.
  int32_t rank(int32_t left, int32_t right) const {
    const uint64_t key = pack(left, right);
    for (size_t i = slot(key);; i = (i + 1) & mask_) {
      const uint64_t e = slots_[i];
      if ((e & ~kRankMask) == key) return static_cast<int32_t>(e & kRankMask);
      if (e == kEmpty) return -1;
    }
  }
  int32_t merged(int32_t rank) const { return merged_[rank]; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};
  static constexpr uint64_t kRankMask = (uint64_t{1} << 24) - 1;
  static uint64_t pack(int32_t a, int32_t b) { return uint64_t(uint32_t(a)) << 44 | uint64_t(uint32_t(b)) << 24; }
  size_t slot(uint64_t key) const { return size_t(((key >> 24) * 0x9E3779B97F4A7C15ull) >> shift_); }
  std::vector<uint64_t> slots_;
  std::vector<int32_t> merged_;  // by rank
  size_t mask_ = 0;
  unsigned shift_ = 64;
};

// Byte trie of added-token contents, answering "longest token starting here".
class TokenTrie {
 public:
  TokenTrie() { root_.fill(-1); }
  void insert(std::string_view key, int32_t value);
  bool empty() const { return nodes_.size() == 1; }
  // Longest key that is a prefix of text[pos, end): {value, length}, or {-1, 0}.
  std::pair<int32_t, size_t> longest_at(std::string_view text, size_t pos) const;
  // Cheap filter: can any key start with byte b?
  bool may_start(uint8_t b) const { return root_[b] >= 0; }

 private:
  struct Node {
    std::vector<std::pair<uint8_t, int32_t>> next;  // (byte, child node), few per node
    int32_t value = -1;
  };
  std::vector<Node> nodes_{Node{}};
  std::array<int32_t, 256> root_;  // children of the root, by byte
};

// One added token (HF `added_tokens` entry; from GGUF: control and user-defined tokens).
struct AddedToken {
  int32_t id = -1;
  std::string content;
  bool special = false;     // skipped when encoding with parse_special = false
  bool lstrip = false;      // the match swallows whitespace on its left
  bool rstrip = false;      // ... and on its right
  bool normalized = false;  // matched in a second pass, after the non-normalized ones
};

}  // namespace smolq::detail

namespace smolq {

struct Tokenizer::Impl {
  // --- filled by a loader ---
  std::string source;  // file named in errors
  detail::PreTokenizerKind pre = detail::PreTokenizerKind::kGpt2;
  bool ignore_merges = false;  // a piece that is itself a vocabulary token skips BPE (Llama 3)
  std::vector<std::string> tokens;  // by id; stored text (byte-level for BPE tokens)
  std::vector<TokenType> types;     // by id
  std::vector<std::pair<std::string, std::string>> merge_texts;  // by rank
  std::vector<detail::AddedToken> added;
  int32_t bos = -1, eos = -1, unk = -1, pad = -1;
  bool add_bos = false, add_eos = false;

  // --- derived by finish() ---
  std::unordered_map<std::string, int32_t> ids;  // stored text -> id (added tokens win)
  std::vector<std::string> token_bytes;          // what each id decodes to
  std::vector<std::pair<int32_t, int32_t>> merges;  // by rank, as ids
  detail::MergeTable merge_table;
  std::array<int32_t, 256> byte_token{};  // id of the one-byte token of each byte
  detail::TokenTrie raw_trie, normalized_trie;  // index into `added`

  // Validates the loaded fields and builds the derived ones; throws FormatError(source).
  void finish();
};

}  // namespace smolq
