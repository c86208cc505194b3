// smolq_tokenize_tool: test helper that runs smolq::Tokenizer over many inputs at once.
//
//   smolq_tokenize_tool (--hf tokenizer.json [--config tokenizer_config.json] | --gguf file.gguf)
//                       [--mode ids|pieces|decode|classes|info] [--add-special] [--no-parse-special]
//                       [--skip-special]
//
// stdin holds records, each a 4-byte little-endian length then that many bytes (so records may
// contain any byte, newlines and NULs included). One output line per record:
//   ids     token ids, space-separated
//   pieces  the pre-tokenizer pieces, each as lowercase hex, space-separated
//   decode  the record is space-separated ids; prints the decoded bytes as hex
//   classes the character-class flags (text/unicode.h) of each code point of the record
//   info    (no stdin) pre-tokenizer name, vocabulary size, merges and special ids
#include <cstdio>
#include <cstring>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/gguf.h"
#include "text/tokenizer.h"
#include "text/unicode.h"

namespace {

std::string hex(std::string_view s) {
  static const char* kDigits = "0123456789abcdef";
  std::string out;
  out.reserve(s.size() * 2);
  for (char c : s) {
    out.push_back(kDigits[static_cast<uint8_t>(c) >> 4]);
    out.push_back(kDigits[static_cast<uint8_t>(c) & 15]);
  }
  return out;
}

std::vector<std::string> read_records(const std::string& in) {
  std::vector<std::string> records;
  size_t pos = 0;
  while (pos < in.size()) {
    if (in.size() - pos < 4) throw smolq::UsageError("truncated record length on stdin");
    uint32_t len;
    std::memcpy(&len, in.data() + pos, 4);
    pos += 4;
    if (in.size() - pos < len) throw smolq::UsageError("truncated record on stdin");
    records.emplace_back(in.substr(pos, len));
    pos += len;
  }
  return records;
}

int run(int argc, char** argv) {
  std::string hf, config, gguf, mode = "ids";
  bool add_special = false, parse_special = true, skip_special = false;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw smolq::UsageError(a + " needs a value");
      return argv[++i];
    };
    if (a == "--hf") hf = value();
    else if (a == "--config") config = value();
    else if (a == "--gguf") gguf = value();
    else if (a == "--mode") mode = value();
    else if (a == "--add-special") add_special = true;
    else if (a == "--no-parse-special") parse_special = false;
    else if (a == "--skip-special") skip_special = true;
    else throw smolq::UsageError("unknown option " + a);
  }
  if (hf.empty() == gguf.empty()) throw smolq::UsageError("give exactly one of --hf or --gguf");
  std::unique_ptr<smolq::GgufReader> reader;
  const smolq::Tokenizer tok = hf.empty()
      ? smolq::Tokenizer::from_gguf((reader = smolq::GgufReader::open(gguf))->metadata(), gguf)
      : smolq::Tokenizer::from_hf_json(hf, config);

  if (mode == "info") {
    std::printf("pre %s\nvocab %zu\nmerges %zu\nbos %d\neos %d\nunk %d\npad %d\nadd_bos %d\nadd_eos %d\n",
                std::string(tok.pre_name()).c_str(), tok.vocab_size(), tok.n_merges(), tok.bos_id(),
                tok.eos_id(), tok.unk_id(), tok.pad_id(), int(tok.add_bos()), int(tok.add_eos()));
    return 0;
  }
  std::ios::sync_with_stdio(false);
  const std::string in((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  std::string out;
  for (const std::string& rec : read_records(in)) {
    if (mode == "ids") {
      bool first = true;
      for (int32_t id : tok.encode(rec, add_special, parse_special)) {
        if (!first) out.push_back(' ');
        out += std::to_string(id);
        first = false;
      }
    } else if (mode == "pieces") {
      bool first = true;
      for (std::string_view p : tok.pre_tokenize(rec)) {
        if (!first) out.push_back(' ');
        out += hex(p);
        first = false;
      }
    } else if (mode == "decode") {
      std::istringstream ss(rec);
      std::vector<int32_t> ids;
      for (int32_t id; ss >> id;) ids.push_back(id);
      out += hex(tok.decode(ids, skip_special));
    } else if (mode == "classes") {
      for (size_t p = 0; p < rec.size();) {
        const auto c = smolq::unicode::decode_utf8(rec.data() + p, rec.data() + rec.size());
        if (p) out.push_back(' ');
        out += std::to_string(c.cp == smolq::unicode::kInvalidCp ? -1 : int(smolq::unicode::char_flags(c.cp)));
        p += c.len;
      }
    } else {
      throw smolq::UsageError("unknown mode " + mode);
    }
    out.push_back('\n');
  }
  std::fwrite(out.data(), 1, out.size(), stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(argc, argv);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "smolq_tokenize_tool: %s\n", e.what());
    return 1;
  }
}
