// The option vocabulary's argv pre-pass (cli/options.h: canonical_args) and parse_args'
// errors. The whole table, command by command, is tests/python/test_cli_options.py.
#include <doctest/doctest.h>

#include "cli/options.h"
#include "formats/error.h"

using namespace smolq;
using namespace smolq::cli;

TEST_SUITE("test_cli_vocab") {
  TEST_CASE("llama.cpp's multi-letter short options become long ones, in one place") {
    using V = std::vector<std::string>;
    CHECK(canonical_args("estimate", V{"m", "-ub", "256", "-ctk", "q8_0", "-ctv=q4_0", "-fa", "on", "-np", "2"}) ==
          V{"m", "--ubatch-size", "256", "--cache-type-k", "q8_0", "--cache-type-v=q4_0", "--flash-attn", "on",
            "--parallel", "2"});
    // Per-command meaning of an old spelling: estimate's --batch was the micro-batch.
    CHECK(canonical_args("estimate", V{"--batch", "64"}) == V{"--ubatch-size", "64"});
    CHECK(canonical_args("perplexity", V{"--batch=64", "--ctx", "128"}) == V{"--batch-size=64", "--ctx-size", "128"});
    CHECK(canonical_args("verify", V{"--out", "d"}) == V{"--output", "d"});
    CHECK(canonical_args("convert", V{"--outfile", "x.gguf"}) == V{"--output", "x.gguf"});
    CHECK(canonical_args("quantize", V{"--outfile", "x.gguf"}) == V{"--outfile", "x.gguf"});  // convert only
    // Values and everything after "--" are left alone; prefixes are not aliases.
    CHECK(canonical_args("verify", V{"--", "-ub", "--ctx"}) == V{"--", "-ub", "--ctx"});
    CHECK(canonical_args("verify", V{"--ctxx", "-ubx"}) == V{"--ctxx", "-ubx"});
  }

  TEST_CASE("parse_args: unknown options name the nearest; no prefix guessing") {
    po::options_description opts("t");
    int threads = 0;
    opts.add_options()(kOptThreads, po::value<int>(&threads))(kOptCtxSize, po::value<int>())("model", po::value<std::string>());
    po::positional_options_description pos;
    pos.add("model", 1);
    try {
      parse_args("perplexity", {"m", "--thread", "2"}, "u", opts, pos);
      FAIL("--thread must be rejected");
    } catch (const UsageError& e) {
      CHECK(std::string(e.what()) == "unknown option '--thread' (did you mean '--threads'?)");
    }
    po::options_description opts2("t");
    opts2.add_options()(kOptCtxSize, po::value<int>());
    CHECK_THROWS_AS(parse_args("perplexity", {"--ctx-s", "5"}, "u", opts2, pos), UsageError);  // no guessing
    po::options_description opts3("t");
    opts3.add_options()(kOptCtxSize, po::value<int>());
    const ParsedArgs p = parse_args("perplexity", {"--ctx", "5"}, "u", opts3, pos);  // the alias
    CHECK(p.vm["ctx-size"].as<int>() == 5);
  }
}
