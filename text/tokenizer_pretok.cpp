// Hand-written scanners for the pre-tokenizer regexes of byte-level BPE tokenizers.
//
// Hugging Face `tokenizers` runs these patterns with Oniguruma (leftmost-first alternation,
// greedy quantifiers with backtracking). Each scanner below reproduces, at every position, the
// first alternative that matches and the length it would match; the comments show which
// alternative each branch is. No std::regex: it has no \p{..} classes and is far too slow.
//
//   GPT-2:   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   Llama 3: (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
//            ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//
// Both patterns can match every character, so consecutive matches tile the text (HF's Split
// with behavior "isolated" then yields exactly the matches).
#include "text/tokenizer_pretok.h"

#include "formats/error.h"
#include "text/unicode.h"

namespace smolq::detail {
namespace {

using unicode::kLetter;
using unicode::kNumber;
using unicode::kNumeric;
using unicode::kWhitespace;

// [^\s\p{L}\p{N}]: a character with none of these flags ("other": punctuation, symbols,
// marks, controls, unassigned, ill-formed bytes).
constexpr uint8_t kLetterNumberSpace = kLetter | kNumber | kWhitespace;

// One decoded character: byte offset, code point (kInvalidCp for an ill-formed byte), flags.
struct Ch {
  uint32_t off;
  uint32_t cp;
  uint8_t flags;
};

// Decodes the whole text once; a sentinel at the end holds off = text.size() so that the end
// offset of a match ending at character k is always chars[k].off.
void decode(std::string_view text, std::vector<Ch>& chars) {
  chars.clear();
  chars.reserve(text.size() + 1);
  const char* p = text.data();
  const char* end = p + text.size();
  while (p < end) {
    const auto b = static_cast<uint8_t>(*p);
    const auto off = static_cast<uint32_t>(p - text.data());
    if (b < 0x80) {  // ASCII fast path
      chars.push_back({off, b, unicode::detail::kLatin1Flags[b]});
      ++p;
      continue;
    }
    const unicode::Utf8Char c = unicode::decode_utf8(p, end);
    const uint8_t flags = c.cp == unicode::kInvalidCp ? 0 : unicode::char_flags(c.cp);
    chars.push_back({off, c.cp, flags});
    p += c.len;
  }
  chars.push_back({static_cast<uint32_t>(text.size()), 0, 0});
}

// First index >= i in [i, e) whose flags lack every bit of `mask`.
inline size_t run_end(const Ch* c, size_t i, size_t e, uint8_t mask) {
  while (i < e && (c[i].flags & mask)) ++i;
  return i;
}
// First index >= i in [i, e) that is not "other".
inline size_t other_run_end(const Ch* c, size_t i, size_t e) {
  while (i < e && !(c[i].flags & kLetterNumberSpace)) ++i;
  return i;
}

// End of the whitespace alternatives `\s+(?!\S)|\s+` for a whitespace run [i, k) inside a
// range ending at e: the whole run when it reaches e (end of input satisfies (?!\S)) or is a
// single character; otherwise all but its last character, which is left to prefix the next
// word (" ?\p{L}+" etc.).
inline size_t whitespace_match_end(size_t i, size_t k, size_t e) {
  return (k == e || k - i == 1) ? k : k - 1;
}

// GPT-2 pattern over characters [b, e).
void scan_gpt2(const Ch* c, size_t b, size_t e, std::vector<uint32_t>& ends) {
  size_t i = b;
  while (i < e) {
    const uint32_t cp = c[i].cp;
    size_t k = i;
    if (cp == '\'' && i + 1 < e) {  // 's|'t|'re|'ve|'m|'ll|'d (case-sensitive)
      const uint32_t c1 = c[i + 1].cp;
      const uint32_t c2 = i + 2 < e ? c[i + 2].cp : 0;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        k = i + 2;
      } else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
        k = i + 3;
      }
    }
    if (k == i) {
      // ` ?X+` for X in L, N, other: an optional leading space, then the class of the next
      // character decides. A space followed by whitespace (or nothing) is whitespace.
      const size_t j = (cp == ' ' && i + 1 < e) ? i + 1 : i;
      const uint8_t f = c[j].flags;
      if (f & kLetter) {
        k = run_end(c, j, e, kLetter);
      } else if (f & kNumber) {
        k = run_end(c, j, e, kNumber);
      } else if (!(f & kLetterNumberSpace)) {
        k = other_run_end(c, j, e);
      } else {  // \s+(?!\S)|\s+ ; here c[i] is whitespace
        k = whitespace_match_end(i, run_end(c, i, e, kWhitespace), e);
      }
    }
    ends.push_back(c[k].off);
    i = k;
  }
}

// Simple case folding of the letters in the Llama-3 contractions: ASCII, plus U+017F LATIN
// SMALL LETTER LONG S, which folds to 's' (CaseFolding.txt) and so matches (?i:'s).
inline uint32_t fold_contraction_letter(uint32_t cp) {
  if (cp >= 'A' && cp <= 'Z') return cp + ('a' - 'A');
  if (cp == 0x17F) return 's';
  return cp;
}

inline bool is_cr_lf(uint32_t cp) { return cp == '\r' || cp == '\n'; }

// Llama-3 pattern over characters [b, e).
void scan_llama3(const Ch* c, size_t b, size_t e, std::vector<uint32_t>& ends) {
  size_t i = b;
  while (i < e) {
    const uint32_t cp = c[i].cp;
    const uint8_t f = c[i].flags;
    size_t k = i;
    if (cp == '\'' && i + 1 < e) {  // (?i:'s|'t|'re|'ve|'m|'ll|'d)
      const uint32_t c1 = fold_contraction_letter(c[i + 1].cp);
      const uint32_t c2 = i + 2 < e ? fold_contraction_letter(c[i + 2].cp) : 0;
      if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd') {
        k = i + 2;
      } else if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l')) {
        k = i + 3;
      }
    }
    if (k != i) {
      // contraction matched
    } else if (f & kLetter) {  // [^\r\n\p{L}\p{N}]?\p{L}+ without the prefix
      k = run_end(c, i, e, kLetter);
    } else if (!is_cr_lf(cp) && !(f & (kLetter | kNumber)) && i + 1 < e && (c[i + 1].flags & kLetter)) {
      k = run_end(c, i + 1, e, kLetter);  // ... with a one-character prefix (space, tab, '(', ...)
    } else if (f & kNumber) {  // \p{N}{1,3}
      k = i + 1;
      while (k < e && k - i < 3 && (c[k].flags & kNumber)) ++k;
    } else if (!(f & kLetterNumberSpace) ||
               (cp == ' ' && i + 1 < e && !(c[i + 1].flags & kLetterNumberSpace))) {
      // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
      k = other_run_end(c, cp == ' ' ? i + 1 : i, e);
      while (k < e && is_cr_lf(c[k].cp)) ++k;
    } else {  // c[i] is whitespace
      const size_t run = run_end(c, i, e, kWhitespace);
      // \s*[\r\n]+ : greedy \s* backs off to the last CR or LF of the run.
      size_t last_crlf = run;
      for (size_t m = run; m > i; --m) {
        if (is_cr_lf(c[m - 1].cp)) {
          last_crlf = m - 1;
          break;
        }
      }
      k = last_crlf < run ? last_crlf + 1 : whitespace_match_end(i, run, e);
    }
    ends.push_back(c[k].off);
    i = k;
  }
}

}  // namespace

void pre_tokenize(PreTokenizerKind kind, std::string_view text, std::vector<uint32_t>& ends) {
  if (text.empty()) return;
  // Offsets are 32-bit (half the memory of the per-character buffer below).
  if (text.size() > UINT32_MAX) throw Error("pre-tokenizer: text over 4 GiB in one piece of input");
  std::vector<Ch> chars;
  decode(text, chars);
  const Ch* c = chars.data();
  const size_t n = chars.size() - 1;  // without the sentinel
  switch (kind) {
    case PreTokenizerKind::kGpt2:
      scan_gpt2(c, 0, n, ends);
      break;
    case PreTokenizerKind::kLlama3:
      scan_llama3(c, 0, n, ends);
      break;
    case PreTokenizerKind::kSmolLM: {
      // Digits(individual_digits=true) first: every numeric character is a piece of its own,
      // and the GPT-2 pattern runs separately on each stretch between them (so its lookahead
      // (?!\S) sees the end of the stretch as end of input).
      size_t start = 0;
      for (size_t i = 0; i < n; ++i) {
        if (!(c[i].flags & kNumeric)) continue;
        if (start < i) scan_gpt2(c, start, i, ends);
        ends.push_back(c[i + 1].off);
        start = i + 1;
      }
      if (start < n) scan_gpt2(c, start, n, ends);
      break;
    }
  }
}

}  // namespace smolq::detail
