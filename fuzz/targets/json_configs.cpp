// Fuzz targets over the JSON files of a Hugging Face checkpoint: config.json, and
// tokenizer.json / tokenizer_config.json / generation_config.json as both the converter
// (GGUF tokenizer metadata) and the tokenizer itself read them.
#include "text/tokenizer_meta.h"
#include "formats/error.h"
#include "formats/model_config.h"
#include "fuzz/targets/fuzz_support.h"
#include "fuzz/targets/fuzz_targets.h"
#include "text/tokenizer.h"

namespace smolq::fuzz {
namespace {

// Writes the present parts under folder/ with the given names; absent parts are removed so
// that a file from an earlier run cannot leak into this one.
std::string write_parts(const std::string& folder, const std::vector<std::string_view>& parts,
                        const std::vector<bool>& present, std::initializer_list<const char*> names) {
  size_t i = 0;
  for (const char* name : names) {
    if (present[i]) write_scratch(folder + "/" + name, parts[i]);
    else remove_scratch(folder + "/" + name);
    ++i;
  }
  return scratch_dir() + "/" + folder;
}

}  // namespace

int fuzz_hf_config(const uint8_t* data, size_t size) {
  const std::string path = write_scratch("config/config.json", {reinterpret_cast<const char*>(data), size});
  ModelConfig c;
  try {
    c = parse_hf_config(path);
  } catch (const Error&) {
    return 0;
  }
  // What the rest of smolq assumes of an accepted config.
  if (c.n_head == 0 || c.n_head_kv == 0 || c.n_head % c.n_head_kv != 0) fuzz_fail("head counts accepted inconsistent");
  if (c.use_rope.size() != c.n_layer) fuzz_fail("use_rope does not cover every layer");
  if (!(c.rms_eps > 0) || !(c.rope_theta > 0)) fuzz_fail("non-positive (or NaN) epsilon or theta accepted");
  (void)c.n_params();
  GgufMetadata meta;
  write_gguf_hparams(c, meta);
  return 0;
}

int fuzz_tokenizer_json(const uint8_t* data, size_t size) {
  std::vector<bool> present;
  const auto parts = split_parts(data, size, 2, &present);
  const std::string dir = write_parts("tokjson", parts, present, {"tokenizer.json", "tokenizer_config.json"});
  try {
    const Tokenizer tok = Tokenizer::from_hf_json(dir + "/tokenizer.json");
    const std::vector<int32_t> ids = tok.encode("Hello, world! 12345 <|im_start|> caf\xc3\xa9 \xf0\x9f\x9a\x80", true, true);
    for (int32_t id : ids)
      if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) fuzz_fail("encode produced an out-of-range id");
    (void)tok.decode(ids, false);
    (void)tok.decode(ids, true);
  } catch (const Error&) {
  }
  return 0;
}

int fuzz_tokenizer_meta(const uint8_t* data, size_t size) {
  std::vector<bool> present;
  const auto parts = split_parts(data, size, 3, &present);
  const std::string dir =
      write_parts("tokmeta", parts, present, {"tokenizer.json", "tokenizer_config.json", "generation_config.json"});
  // A model config as convert would have parsed it: the vocabulary size bounds token ids.
  ModelConfig cfg;
  cfg.arch = "llama";
  cfg.n_vocab = 1024;
  cfg.bos_id = 1;
  cfg.eos_id = 2;
  try {
    const HfTokenizerInfo info = load_hf_tokenizer(dir, cfg, TokenizerOptions{});
    if (info.tokens.size() != cfg.n_vocab || info.token_types.size() != cfg.n_vocab)
      fuzz_fail("token list not padded to the vocabulary size");
    GgufMetadata meta;
    write_tokenizer_metadata(info, meta);
  } catch (const Error&) {
  }
  return 0;
}

}  // namespace smolq::fuzz
