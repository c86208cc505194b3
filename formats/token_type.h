// Token kinds as GGUF numbers them (`tokenizer.ggml.token_type`, llama.cpp's llama_token_type).
// Shared by the converter (which writes them) and the tokenizer (which reads them).
#pragma once
#include <cstdint>

namespace smolq {

enum class TokenType : int32_t {
  kNormal = 1,       // a BPE token (byte-level text)
  kUnknown = 2,
  kControl = 3,      // special added token (<|im_start|>, ...): matched only when parse_special
  kUserDefined = 4,  // non-special added token: always matched, never split
  kUnused = 5,       // hole in the id space ("[PADn]")
  kByte = 6,         // <0xNN> byte-fallback token (SentencePiece-style; not in byte-level BPE)
};

}  // namespace smolq
