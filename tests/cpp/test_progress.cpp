// The progress bar's text: throughput that stays informative when slow, and truncation to the
// terminal width that never splits a UTF-8 sequence.
#include <doctest/doctest.h>

#include <string>

#include "cli/progress.h"

using smolq::cli::ProgressBar;

TEST_SUITE("test_progress") {
  TEST_CASE("rates: units per second, or seconds per unit when slow") {
    CHECK(ProgressBar::format_rate(123.4, "tensor") == "123 tensor/s");
    CHECK(ProgressBar::format_rate(2.46, "chunk") == "2.5 chunk/s");
    CHECK(ProgressBar::format_rate(0.04, "chunk") == "25.0 s/chunk");
    CHECK(ProgressBar::format_rate(0.0, "chunk") == "? chunk/s");
  }

  TEST_CASE("durations") {
    CHECK(ProgressBar::format_duration(42.4) == "42s");
    CHECK(ProgressBar::format_duration(187) == "3m07s");
    CHECK(ProgressBar::format_duration(3720) == "1h02m");
  }

  TEST_CASE("truncation counts code points and keeps sequences whole") {
    std::string s = "abc";
    ProgressBar::truncate_cells(s, 5);
    CHECK(s == "abc");
    s = "abcdef";
    ProgressBar::truncate_cells(s, 4);
    CHECK(s == "abcd");
    // "Δp é…" : Δ (2 bytes), é (2 bytes), … (3 bytes)
    s = "\xCE\x94p \xC3\xA9\xE2\x80\xA6x";
    ProgressBar::truncate_cells(s, 5);
    CHECK(s == "\xCE\x94p \xC3\xA9\xE2\x80\xA6");
    ProgressBar::truncate_cells(s, 4);
    CHECK(s == "\xCE\x94p \xC3\xA9");
    ProgressBar::truncate_cells(s, 1);
    CHECK(s == "\xCE\x94");
    ProgressBar::truncate_cells(s, 0);
    CHECK(s.empty());
  }
}
