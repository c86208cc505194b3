// Byte-level BPE encoding and decoding (see tokenizer.h for the algorithm and its contract).
#include "text/tokenizer.h"

#include <algorithm>
#include <cstdio>
#include <functional>
#include <unordered_map>

#include "formats/error.h"
#include "text/tokenizer_impl.h"
#include "text/unicode.h"

namespace smolq {
namespace detail {

bool MergeTable::build(const std::vector<std::pair<int32_t, int32_t>>& merges,
                       const std::vector<int32_t>& merged) {
  if (merges.size() > kMaxRank) return false;
  size_t cap = 16;
  while (cap < merges.size() * 2) cap *= 2;
  slots_.assign(cap, kEmpty);
  mask_ = cap - 1;
  shift_ = 64;
  for (size_t c = cap; c > 1; c >>= 1) --shift_;  // top log2(cap) bits of the hash pick the slot
  merged_ = merged;
  for (size_t r = 0; r < merges.size(); ++r) {
    const auto [a, b] = merges[r];
    if (a < 0 || b < 0 || uint32_t(a) >= kMaxId || uint32_t(b) > kMaxId) return false;
    const uint64_t key = pack(a, b);
    size_t i = slot(key);
    while (slots_[i] != kEmpty && (slots_[i] & ~kRankMask) != key) i = (i + 1) & mask_;
    slots_[i] = key | r;
  }
  return true;
}

void TokenTrie::insert(std::string_view key, int32_t value) {
  if (key.empty()) return;
  int32_t node = 0;
  for (size_t i = 0; i < key.size(); ++i) {
    const auto b = static_cast<uint8_t>(key[i]);
    int32_t child = -1;
    if (node == 0) {
      child = root_[b];
    } else {
      for (const auto& [byte, n] : nodes_[node].next)
        if (byte == b) child = n;
    }
    if (child < 0) {
      child = static_cast<int32_t>(nodes_.size());
      nodes_.emplace_back();
      if (node == 0) root_[b] = child;
      else nodes_[node].next.emplace_back(b, child);
    }
    node = child;
  }
  if (nodes_[node].value < 0) nodes_[node].value = value;  // first of duplicate contents wins
}

std::pair<int32_t, size_t> TokenTrie::longest_at(std::string_view text, size_t pos) const {
  std::pair<int32_t, size_t> best{-1, 0};
  int32_t node = root_[static_cast<uint8_t>(text[pos])];
  size_t i = pos + 1;
  while (node >= 0) {
    if (nodes_[node].value >= 0) best = {nodes_[node].value, i - pos};
    if (i == text.size()) break;
    const auto b = static_cast<uint8_t>(text[i++]);
    int32_t child = -1;
    for (const auto& [byte, n] : nodes_[node].next)
      if (byte == b) child = n;
    node = child;
  }
  return best;
}

}  // namespace detail

namespace {

using detail::AddedToken;
using detail::TokenTrie;

// Reusable buffers for one encode() call.
struct Scratch {
  std::vector<uint32_t> ends;   // pre-tokenizer piece ends
  std::vector<int32_t> sym;     // BPE symbols (token ids), -1 once merged into the left one
  std::vector<int32_t> next;    // linked list over surviving symbols (-1: none)
  std::vector<int32_t> prev;
  std::vector<uint64_t> heap;   // candidate merges: rank << 32 | left position (min-heap)
  std::string byte_level;       // the piece in byte-level text (ignore_merges lookup)
  // Memo of pieces already encoded in this call: piece -> (first, count) in memo_ids. Natural
  // text repeats its words, so on long inputs most pieces skip BPE. Keys point into the text
  // being encoded, which outlives the call's Scratch.
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> memo;
  std::vector<int32_t> memo_ids;
  bool use_memo = false;
};

// Inputs at least this long use the memo; for short ones building it costs more than it saves.
constexpr size_t kMemoMinText = 4096;
// Longer pieces are rare and seldom repeat: not memoised.
constexpr size_t kMemoMaxPiece = 64;

// BPE over one pre-tokenizer piece: start from one token per byte and repeatedly apply the
// lowest-ranked merge present, the leftmost one when the same pair occurs twice. A heap holds
// candidate merges; entries made stale by earlier merges are skipped when popped (the pair at
// that position no longer has that rank). Same order as HF's Word::merge_all.
void bpe_piece(const Tokenizer::Impl& t, std::string_view piece, Scratch& s, std::vector<int32_t>& out) {
  const size_t n = piece.size();
  if (n == 1) {
    if (const int32_t id = t.byte_token[static_cast<uint8_t>(piece[0])]; id >= 0) out.push_back(id);
    return;
  }
  if (t.ignore_merges) {
    s.byte_level = unicode::bytes_to_byte_level(piece);
    auto it = t.ids.find(s.byte_level);
    if (it != t.ids.end() && t.types[it->second] == Tokenizer::TokenType::kNormal) {
      out.push_back(it->second);
      return;
    }
  }
  // Initial symbols: one per byte, leaving out bytes without a token (as HF does).
  s.sym.clear();
  for (char c : piece)
    if (const int32_t id = t.byte_token[static_cast<uint8_t>(c)]; id >= 0) s.sym.push_back(id);
  const size_t m = s.sym.size();
  if (m == 0) return;
  s.next.resize(m);
  s.prev.resize(m);
  s.heap.clear();
  for (size_t i = 0; i < m; ++i) {
    s.next[i] = i + 1 < m ? static_cast<int32_t>(i + 1) : -1;
    s.prev[i] = static_cast<int32_t>(i) - 1;
  }
  auto push = [&](int32_t left) {
    const int32_t right = s.next[left];
    if (right < 0) return;
    if (const int32_t rank = t.merge_table.rank(s.sym[left], s.sym[right]); rank >= 0) {
      s.heap.push_back(uint64_t(uint32_t(rank)) << 32 | uint32_t(left));
      std::push_heap(s.heap.begin(), s.heap.end(), std::greater<>());
    }
  };
  for (size_t i = 0; i + 1 < m; ++i) push(static_cast<int32_t>(i));
  while (!s.heap.empty()) {
    std::pop_heap(s.heap.begin(), s.heap.end(), std::greater<>());
    const uint64_t top = s.heap.back();
    s.heap.pop_back();
    const auto rank = static_cast<int32_t>(top >> 32);
    const auto left = static_cast<int32_t>(top & 0xFFFFFFFFu);
    const int32_t right = s.next[left];
    if (s.sym[left] < 0 || right < 0) continue;
    if (t.merge_table.rank(s.sym[left], s.sym[right]) != rank) continue;  // stale: a side changed
    s.sym[left] = t.merge_table.merged(rank);
    s.sym[right] = -1;
    s.next[left] = s.next[right];
    if (s.next[left] >= 0) s.prev[s.next[left]] = left;
    if (s.prev[left] >= 0) push(s.prev[left]);
    push(left);
  }
  for (int32_t i = 0; i >= 0; i = s.next[i]) out.push_back(s.sym[i]);
}

// Pre-tokenizes one stretch of text (no added tokens in it) and BPE-encodes each piece.
void encode_plain(const Tokenizer::Impl& t, std::string_view text, Scratch& s, std::vector<int32_t>& out) {
  s.ends.clear();
  detail::pre_tokenize(t.pre, text, s.ends);
  uint32_t start = 0;
  for (uint32_t end : s.ends) {
    const std::string_view piece = text.substr(start, end - start);
    start = end;
    if (!s.use_memo || piece.size() < 2 || piece.size() > kMemoMaxPiece) {
      bpe_piece(t, piece, s, out);
      continue;
    }
    if (auto it = s.memo.find(piece); it != s.memo.end()) {
      const auto [first, count] = it->second;
      out.insert(out.end(), s.memo_ids.begin() + first, s.memo_ids.begin() + first + count);
      continue;
    }
    const size_t before = out.size();
    bpe_piece(t, piece, s, out);
    s.memo.emplace(piece, std::make_pair(static_cast<uint32_t>(s.memo_ids.size()),
                                         static_cast<uint32_t>(out.size() - before)));
    s.memo_ids.insert(s.memo_ids.end(), out.begin() + before, out.end());
  }
}

bool is_space_at(std::string_view text, size_t pos, size_t* len) {
  const unicode::Utf8Char c = unicode::decode_utf8(text.data() + pos, text.data() + text.size());
  *len = c.len;
  return c.cp != unicode::kInvalidCp && (unicode::char_flags(c.cp) & unicode::kWhitespace);
}

// Start of the run of whitespace that ends at `to`, looking no further left than `from`.
size_t whitespace_run_start(std::string_view text, size_t from, size_t to) {
  size_t run = to;
  for (size_t p = from, len = 0; p < to; p += len) {
    if (is_space_at(text, p, &len)) {
      if (run == to) run = p;
    } else {
      run = to;
    }
  }
  return run;
}

// End of the run of whitespace that starts at `from`.
size_t whitespace_run_end(std::string_view text, size_t from) {
  size_t len = 0;
  while (from < text.size() && is_space_at(text, from, &len)) from += len;
  return from;
}

// Cuts the added tokens of `trie` out of `text`, appending their ids to `out` and passing the
// stretches between them to `gap`, in order. Matching follows HF's AddedVocabulary: scan for
// the leftmost position where a token starts, take the longest token there, continue after
// it. A special token skipped because parse_special is false is still consumed (HF's
// `continue`), so no shorter token is looked for inside it.
void split_on_added(const Tokenizer::Impl& t, const TokenTrie& trie, std::string_view text,
                    bool parse_special, std::vector<int32_t>& out,
                    const std::function<void(std::string_view)>& gap) {
  if (trie.empty()) {
    gap(text);
    return;
  }
  size_t pos = 0, gap_start = 0;
  while (pos < text.size()) {
    if (!trie.may_start(static_cast<uint8_t>(text[pos]))) {
      ++pos;
      continue;
    }
    const auto [index, len] = trie.longest_at(text, pos);
    if (index < 0) {
      ++pos;
      continue;
    }
    const AddedToken& tok = t.added[index];
    if (tok.special && !parse_special) {
      pos += len;
      continue;
    }
    size_t start = pos, stop = pos + len;
    if (tok.lstrip) start = whitespace_run_start(text, gap_start, start);
    if (tok.rstrip) stop = whitespace_run_end(text, stop);
    if (gap_start < start) gap(text.substr(gap_start, start - gap_start));
    out.push_back(tok.id);
    pos = gap_start = stop;
  }
  if (gap_start < text.size()) gap(text.substr(gap_start));
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special, bool parse_special) const {
  const Impl& t = *impl_;
  // Ill-formed UTF-8 is first replaced by U+FFFD, as Python's decode(errors="replace") would
  // before handing text to HF; everything below then sees valid UTF-8.
  std::string replaced;
  if (!unicode::is_valid_utf8(text)) {
    replaced = unicode::replace_invalid_utf8(text);
    text = replaced;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_special && t.add_bos) out.push_back(t.bos);
  Scratch s;
  s.use_memo = text.size() >= kMemoMinText;
  // Pass 1: tokens matched on the raw text; pass 2: `normalized` tokens, in what is left (with
  // no normalizer, which is all we accept, both passes see the same characters).
  auto plain = [&](std::string_view g) { encode_plain(t, g, s, out); };
  auto second = [&](std::string_view g) { split_on_added(t, t.normalized_trie, g, parse_special, out, plain); };
  split_on_added(t, t.raw_trie, text, parse_special, out, second);
  if (add_special && t.add_eos) out.push_back(t.eos);
  return out;
}

std::string Tokenizer::decode(std::span<const int32_t> ids, bool skip_special) const {
  const Impl& t = *impl_;
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || static_cast<size_t>(id) >= t.tokens.size())
      throw Error("decode: token id " + std::to_string(id) + " is outside the vocabulary (" +
                  std::to_string(t.tokens.size()) + " tokens)");
    if (skip_special && t.types[id] == TokenType::kControl) continue;
    out += t.token_bytes[id];
  }
  return out;
}

std::vector<std::string_view> Tokenizer::pre_tokenize(std::string_view text) const {
  std::vector<uint32_t> ends;
  detail::pre_tokenize(impl_->pre, text, ends);
  std::vector<std::string_view> pieces;
  uint32_t start = 0;
  for (uint32_t end : ends) {
    pieces.push_back(text.substr(start, end - start));
    start = end;
  }
  return pieces;
}

std::string_view Tokenizer::pre_name() const {
  switch (impl_->pre) {
    case detail::PreTokenizerKind::kSmolLM: return "smollm";
    case detail::PreTokenizerKind::kLlama3: return "llama-bpe";
    case detail::PreTokenizerKind::kGpt2: return "gpt-2";
  }
  return "?";
}

int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
int32_t Tokenizer::unk_id() const { return impl_->unk; }
int32_t Tokenizer::pad_id() const { return impl_->pad; }
bool Tokenizer::add_bos() const { return impl_->add_bos; }
bool Tokenizer::add_eos() const { return impl_->add_eos; }
size_t Tokenizer::vocab_size() const { return impl_->tokens.size(); }
size_t Tokenizer::n_merges() const { return impl_->merges.size(); }

const std::string& Tokenizer::token_text(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= impl_->tokens.size())
    throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  return impl_->tokens[id];
}

Tokenizer::TokenType Tokenizer::token_type(int32_t id) const {
  token_text(id);  // range check
  return impl_->types[id];
}

std::optional<int32_t> Tokenizer::token_id(std::string_view text) const {
  auto it = impl_->ids.find(std::string(text));
  if (it == impl_->ids.end()) return std::nullopt;
  return it->second;
}

// ---------------------------------------------------------------------------------------------
// Validation and derived tables, shared by both loaders.

void Tokenizer::Impl::finish() {
  auto fail = [&](const std::string& msg) { throw FormatError(source, msg); };
  if (tokens.empty()) fail("tokenizer has an empty vocabulary");
  if (types.size() != tokens.size())
    fail("token_type has " + std::to_string(types.size()) + " entries for " + std::to_string(tokens.size()) + " tokens");
  if (tokens.size() > size_t(INT32_MAX)) fail("vocabulary too large");
  const auto n = static_cast<int32_t>(tokens.size());
  auto check_id = [&](int32_t id, const char* what) {
    if (id < -1 || id >= n) fail(std::string(what) + " id " + std::to_string(id) + " is outside the vocabulary");
  };
  check_id(bos, "bos");
  check_id(eos, "eos");
  check_id(unk, "unk");
  check_id(pad, "pad");
  if (add_bos && bos < 0) fail("BOS is to be added but the tokenizer has no bos token");
  if (add_eos && eos < 0) fail("EOS is to be added but the tokenizer has no eos token");

  // Stored text -> id. On duplicate texts a BPE (normal) token wins over the others, since the
  // BPE lookups below need the model's own token.
  ids.clear();
  ids.reserve(tokens.size());
  for (int32_t id = 0; id < n; ++id) {
    auto [it, inserted] = ids.emplace(tokens[id], id);
    if (!inserted && types[it->second] != TokenType::kNormal && types[id] == TokenType::kNormal) it->second = id;
  }
  auto lookup = [&](const std::string& text) -> int32_t {
    auto it = ids.find(text);
    return it == ids.end() ? -1 : it->second;
  };

  // One-byte tokens. A vocabulary may lack some (SmolLM2 has none for 0x04, 0xC0, 0xF5.., bytes
  // that valid UTF-8 never or hardly contains): HF's BPE then silently drops those bytes, and
  // so do we (-1). Printable ASCII must be there, or this is no byte-level vocabulary at all.
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(ch, unicode::byte_to_char(static_cast<uint8_t>(b)));
    byte_token[b] = lookup(ch);
    if (byte_token[b] < 0 && b >= '!' && b <= '~')
      fail("vocabulary has no token for '" + ch + "': not a byte-level BPE vocabulary");
  }

  merges.clear();
  merges.reserve(merge_texts.size());
  std::vector<int32_t> merged;
  merged.reserve(merge_texts.size());
  for (size_t r = 0; r < merge_texts.size(); ++r) {
    const auto& [a, b] = merge_texts[r];
    const int32_t ia = lookup(a), ib = lookup(b), im = lookup(a + b);
    if (ia < 0 || ib < 0 || im < 0)
      fail("merge #" + std::to_string(r) + " '" + a + " " + b + "' uses or makes a token missing from the vocabulary");
    merges.emplace_back(ia, ib);
    merged.push_back(im);
  }
  if (!merge_table.build(merges, merged))
    fail("too many tokens or merges for the merge table (ids below 2^20, ranks below 2^24)");

  // What each token decodes to: HF's ByteLevel decoder maps every character of a token back
  // to its byte; a token with any character outside the byte-level alphabet (e.g. an added
  // token containing a plain space) is emitted as its own UTF-8 text instead.
  token_bytes.assign(tokens.size(), std::string());
  for (int32_t id = 0; id < n; ++id) {
    const std::string& text = tokens[id];
    std::string bytes;
    bool all_mapped = true;
    const char* p = text.data();
    const char* end = p + text.size();
    while (p < end && all_mapped) {
      const unicode::Utf8Char c = unicode::decode_utf8(p, end);
      const int byte = c.cp == unicode::kInvalidCp ? -1 : unicode::char_to_byte(c.cp);
      if (byte < 0) all_mapped = false;
      else bytes.push_back(static_cast<char>(byte));
      p += c.len;
    }
    token_bytes[id] = all_mapped ? std::move(bytes) : text;
  }

  raw_trie = TokenTrie();
  normalized_trie = TokenTrie();
  for (size_t i = 0; i < added.size(); ++i) {
    const AddedToken& a = added[i];
    check_id(a.id, "added token");
    if (a.id < 0) fail("added token '" + a.content + "' has no id");
    if (a.content.empty()) continue;  // HF ignores empty added tokens
    (a.normalized ? normalized_trie : raw_trie).insert(a.content, static_cast<int32_t>(i));
    // An added token's own text maps to its id (HF's token_to_id looks there first).
    ids[a.content] = a.id;
  }
}

}  // namespace smolq
