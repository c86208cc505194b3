// SHA-256 (FIPS 180-4). Used where a format fact is defined by a SHA-256 digest, e.g.
// llama.cpp identifies BPE pre-tokenizers by the digest of a probe text's token ids.
#pragma once
#include <string>
#include <string_view>

namespace smolq {

// Lower-case hex digest of `data`.
std::string sha256_hex(std::string_view data);

}  // namespace smolq
