// The fuzz targets: one function per parser of untrusted bytes, with libFuzzer's signature.
// Each is compiled into a libFuzzer binary (fuzz/libfuzzer_main.cpp, build with SMOLQ_FUZZ=ON)
// and into the library smolq_fuzz_targets that tests/cpp/test_fuzz_regressions.cpp links,
// so the ordinary test build replays every seed and every saved crash through the very same
// function. All return 0 (libFuzzer's convention); failures abort (see fuzz_support.h).
#pragma once
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace smolq::fuzz {

using TargetFn = int (*)(const uint8_t* data, size_t size);

// formats/gguf_reader.cpp: GgufReader::open, then every tensor's data view, the metadata's
// display form, config_from_gguf and Tokenizer::from_gguf on what was read.
int fuzz_gguf(const uint8_t* data, size_t size);
// inspect/gguf_scan.cpp: the tolerant scanner; it must never throw on content.
int fuzz_gguf_scan(const uint8_t* data, size_t size);
// formats/safetensors.cpp: one .safetensors file (header JSON, offsets, dtypes), then
// read_f32 of the first and last elements of every tensor.
int fuzz_safetensors(const uint8_t* data, size_t size);
// formats/safetensors.cpp: model.safetensors.index.json beside two fixed valid shards.
int fuzz_safetensors_index(const uint8_t* data, size_t size);
// formats/model_config.cpp: parse_hf_config (config.json).
int fuzz_hf_config(const uint8_t* data, size_t size);
// text/tokenizer_load.cpp: Tokenizer::from_hf_json on parts tokenizer.json |
// tokenizer_config.json, then an encode/decode of a fixed text.
int fuzz_tokenizer_json(const uint8_t* data, size_t size);
// text/tokenizer_meta.cpp: load_hf_tokenizer + write_tokenizer_metadata on parts
// tokenizer.json | tokenizer_config.json | generation_config.json.
int fuzz_tokenizer_meta(const uint8_t* data, size_t size);
// formats/imatrix.cpp: read_imatrix (GGUF or legacy .dat, chosen by the magic), importance().
int fuzz_imatrix(const uint8_t* data, size_t size);
// text/tokenizer.cpp: encode of arbitrary bytes (valid or invalid UTF-8) with the real
// SmolLM2 tokenizer; checks decode(encode(text)) == text where that must hold.
int fuzz_tokenizer_encode(const uint8_t* data, size_t size);
// inspect/model_check.cpp + formats/finite_scan.cpp: inspect as a gate on GGUF bytes (report,
// loader checks, NaN/Inf scan, --json valid UTF-8), and the scans against a scalar reference.
int fuzz_inspect_gate(const uint8_t* data, size_t size);
// text/chat_template*.cpp: parse and render a chat template (flags byte, then the source).
int fuzz_chat_template(const uint8_t* data, size_t size);
// convert/model_card.cpp + convert/naming.cpp: load_model_metadata, write_general_metadata,
// default_output_name on parts README.md | config.json | generation_config.json | metadata.json.
int fuzz_model_card(const uint8_t* data, size_t size);
// eval/eval_set.cpp: read_eval_set on parts evalset.json | a.txt | chat.txt, and the chat
// turns of the third part.
int fuzz_eval_set(const uint8_t* data, size_t size);

struct Target {
  std::string_view name;  // also the folder name under fuzz/corpus and fuzz/regressions
  TargetFn fn;
};
// Every target, in a fixed order (used by the replay test and the CI script's list).
std::span<const Target> all_targets();

}  // namespace smolq::fuzz
