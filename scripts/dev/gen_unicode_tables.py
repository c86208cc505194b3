#!/usr/bin/env python3
"""Generate text/unicode_tables.cpp: the per-code-point character classes the tokenizer's
pre-tokenizer scanners need.

    python3 scripts/dev/gen_unicode_tables.py -o text/unicode_tables.cpp

Classes (bit flags, see text/unicode.h):
  kLetter     regex \\p{L}   general category L* (Lu Ll Lt Lm Lo)
  kNumber     regex \\p{N}   general category N* (Nd Nl No)
  kWhitespace regex \\s      the Unicode White_Space property
  kNumeric    Rust char::is_numeric (Nd Nl No), used by HF's Digits pre-tokenizer

Sources:
  1. Python's `unicodedata` for the general categories (its Unicode version is written into the
     generated file; Python 3.11 ships Unicode 14.0.0).
  2. White_Space from PropList.txt, transcribed below (unchanged since Unicode 6.3).
  3. Characters assigned after that Unicode version. Hugging Face `tokenizers` classifies
     text with newer tables than Python 3.11 has: its regexes run on Oniguruma (tokenizers 0.23:
     Unicode 16.0) and its Digits pre-tokenizer on Rust's std (Unicode 17.0 in that build). No
     newer UnicodeData.txt is available offline, so when the `tokenizers` package is importable
     (default; --no-reference to skip) the script asks it how it classifies every code point and
     takes over its answer ONLY for code points that are unassigned (Cn) in Python's Unicode
     version. If it disagrees about any assigned character, the script stops: that would mean
     the two sources are not versions of the same data. The parity test
     (tests/python/test_tokenizer_parity.py) sweeps every code point through both tokenizers, so
     a table generated with --no-reference fails there, listing the characters.
"""
import argparse
import sys
import unicodedata

FLAG_LETTER, FLAG_NUMBER, FLAG_WHITESPACE, FLAG_NUMERIC = 1, 2, 4, 8
MAX_CP = 0x10FFFF

# PropList.txt, property White_Space (stable since Unicode 6.3, when U+180E left it).
WHITE_SPACE = [(0x0009, 0x000D), (0x0020, 0x0020), (0x0085, 0x0085), (0x00A0, 0x00A0),
               (0x1680, 0x1680), (0x2000, 0x200A), (0x2028, 0x2029), (0x202F, 0x202F),
               (0x205F, 0x205F), (0x3000, 0x3000)]


def is_surrogate(cp):
    return 0xD800 <= cp <= 0xDFFF


def base_flags():
    flags = bytearray(MAX_CP + 1)
    for cp in range(MAX_CP + 1):
        cat = unicodedata.category(chr(cp))
        if cat[0] == "L":
            flags[cp] |= FLAG_LETTER
        elif cat[0] == "N":
            flags[cp] |= FLAG_NUMBER | FLAG_NUMERIC
    for lo, hi in WHITE_SPACE:
        for cp in range(lo, hi + 1):
            flags[cp] |= FLAG_WHITESPACE
    return flags


def reference_flags():
    """Classes as HF tokenizers sees them, probed through its own pre-tokenizers."""
    import tokenizers
    from tokenizers import Regex, pre_tokenizers

    cps = [cp for cp in range(MAX_CP + 1) if not is_surrogate(cp)]
    text = "".join(chr(cp) for cp in cps)
    flags = bytearray(MAX_CP + 1)

    def regex_members(pattern, flag):
        # Split(removed) drops every character the pattern matches; the offsets of what is kept
        # (in characters) tell us which ones those were.
        kept = bytearray(len(cps))
        for _, (a, b) in pre_tokenizers.Split(Regex(pattern), "removed").pre_tokenize_str(text):
            kept[a:b] = b"\x01" * (b - a)
        for i, cp in enumerate(cps):
            if not kept[i]:
                flags[cp] |= flag

    regex_members(r"\p{L}", FLAG_LETTER)
    regex_members(r"\p{N}", FLAG_NUMBER)
    regex_members(r"\s", FLAG_WHITESPACE)
    # Digits(individual_digits) isolates each numeric character: with "a" between all code
    # points, a numeric one comes back as a one-character piece at an even offset.
    spaced = "a".join(chr(cp) for cp in cps)
    for piece, (a, b) in pre_tokenizers.Digits(individual_digits=True).pre_tokenize_str(spaced):
        if b - a == 1 and a % 2 == 0 and piece != "a":
            flags[cps[a // 2]] |= FLAG_NUMERIC
    return flags, tokenizers.__version__


def ranges_of(flags):
    out, start = [], None
    for cp in range(MAX_CP + 2):
        f = flags[cp] if cp <= MAX_CP else -1
        if start is not None and f != flags[start]:
            if flags[start]:
                out.append((start, cp - 1, flags[start]))
            start = None
        if start is None and cp <= MAX_CP:
            start = cp
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-o", "--output", default="-")
    ap.add_argument("--no-reference", action="store_true",
                    help="use Python's unicodedata only (no newer assignments from tokenizers)")
    args = ap.parse_args()

    flags = base_flags()
    provenance = [f"general categories: Python {sys.version.split()[0]} unicodedata, "
                  f"Unicode {unicodedata.unidata_version}",
                  "White_Space: PropList.txt (unchanged since Unicode 6.3)"]
    if not args.no_reference:
        ref, version = reference_flags()
        delta = 0
        for cp in range(MAX_CP + 1):
            if is_surrogate(cp) or ref[cp] == flags[cp]:
                continue
            if unicodedata.category(chr(cp)) != "Cn":
                sys.exit(f"tokenizers {version} disagrees on assigned U+{cp:04X} "
                         f"({unicodedata.name(chr(cp), '?')}): {ref[cp]} vs {flags[cp]}")
            flags[cp] = ref[cp]
            delta += 1
        provenance.append(f"{delta} code points unassigned in Unicode {unicodedata.unidata_version} "
                          f"take the classes HF tokenizers {version} gives them (newer Unicode: "
                          "Oniguruma's tables for the regex classes, Rust std's for kNumeric)")

    ranges = ranges_of(flags)
    lines = ["// GENERATED by scripts/dev/gen_unicode_tables.py -- do not edit by hand.",
             "//",
             "// Character classes of every code point, as the pre-tokenizer scanners need them.",
             "// Data sources:"]
    lines += [f"//   - {p}" for p in provenance]
    lines += ["//",
              "// Flags: 1 = kLetter (\\p{L}), 2 = kNumber (\\p{N}), 4 = kWhitespace (\\s, White_Space),",
              "//        8 = kNumeric (Rust char::is_numeric, HF's Digits pre-tokenizer).",
              "// Code points not listed have no flag (marks, punctuation, symbols, controls, unassigned).",
              '#include "text/unicode.h"',
              "",
              "namespace smolq::unicode::detail {",
              "",
              f'const char* const kUnicodeTablesSource = "{"; ".join(provenance)}";',
              "",
              "// Flags of U+0000..U+00FF, for the common case without a search.",
              "const uint8_t kLatin1Flags[256] = {"]
    for row in range(0, 256, 32):
        lines.append("    " + ",".join(str(flags[cp]) for cp in range(row, row + 32)) + ",")
    lines += ["};", "",
              "// Maximal runs of code points with the same non-zero flags, sorted by first code point.",
              f"const CharRange kCharRanges[{len(ranges)}] = {{"]
    per_line = 4
    for i in range(0, len(ranges), per_line):
        chunk = ranges[i:i + per_line]
        lines.append("    " + " ".join(f"{{0x{a:05X}, 0x{b:05X}, {f}}}," for a, b, f in chunk))
    lines += ["};",
              f"const size_t kNumCharRanges = {len(ranges)};",
              "",
              "}  // namespace smolq::unicode::detail",
              ""]
    text = "\n".join(lines)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)


if __name__ == "__main__":
    main()
