// The size-vs-KLD plot of `smolq verify`'s report: labels do not collide with each other or
// with the points, and the file-size axis never goes below zero.
#include <doctest/doctest.h>

#include <regex>
#include <string>
#include <vector>

#include "verify/report_writers.h"
#include "verify/sweep.h"

using namespace smolq;

namespace {

struct Rect {
  double x0, y0, x1, y1;
  bool overlaps(const Rect& o) const { return x0 < o.x1 && o.x0 < x1 && y0 < o.y1 && o.y0 < y1; }
};

SweepResult result_of(const std::vector<std::tuple<std::string, double, double>>& rows) {
  SweepResult r;
  for (const auto& [label, mib, kld] : rows) {
    QuantRow q;
    q.label = label;
    q.file_size = static_cast<uint64_t>(mib * 1048576.0);
    q.kld.kld.value = kld;
    r.quants.push_back(q);
  }
  std::vector<double> size, kld;
  for (const auto& q : r.quants) size.push_back(static_cast<double>(q.file_size)), kld.push_back(q.kld.kld.value);
  r.pareto = pareto_front(size, kld);
  return r;
}

// Label boxes as the browser would draw them, estimated generously (7 px per character of 12 px
// sans-serif, bold 7.6 px), and the point circles.
void boxes(const std::string& svg, std::vector<Rect>& labels, std::vector<Rect>& points,
           const std::vector<std::string>& names) {
  const std::regex text(R"re(<text x="([-\d.]+)" y="([-\d.]+)" text-anchor="(start|end|middle)"([^>]*)>([^<]*)</text>)re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), text); it != std::sregex_iterator(); ++it) {
    const std::string s = (*it)[5];
    if (std::find(names.begin(), names.end(), s) == names.end()) continue;
    const double x = std::stod((*it)[1]), y = std::stod((*it)[2]);
    const double w = static_cast<double>(s.size()) * (std::string((*it)[4]).find("bold") != std::string::npos ? 7.6 : 7.0);
    const double x0 = std::string((*it)[3]) == "end" ? x - w : x;
    labels.push_back({x0, y - 10, x0 + w, y + 2});
  }
  const std::regex circle(R"re(<circle cx="([-\d.]+)" cy="([-\d.]+)" r="5")re");
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), circle); it != std::sregex_iterator(); ++it) {
    const double x = std::stod((*it)[1]), y = std::stod((*it)[2]);
    points.push_back({x - 5, y - 5, x + 5, y + 5});
  }
}

}  // namespace

TEST_SUITE("test_report_svg") {
  TEST_CASE("labels of a crowded ladder do not overlap each other or any point") {
    // The real SmolLM2-135M sweep of docs/verify-report.md: Q4_0, IQ4_XS, Q3_K_M and Q2_K sit
    // within 5 MiB and half a decade of KLD of each other.
    const SweepResult r = result_of({{"Q8_0", 138.1, 0.00117},  {"Q6_K", 132.0, 0.00256},
                                     {"Q5_K_M", 106.9, 0.00171}, {"Q4_K_M", 100.6, 0.02659},
                                     {"Q3_K_M", 89.2, 0.07737},  {"Q4_0", 87.6, 0.16085},
                                     {"IQ4_XS", 86.7, 0.09714},  {"Q2_K", 84.1, 0.19827}});
    const std::string svg = report::svg_size_vs_kld(r);
    std::vector<std::string> names;
    for (const auto& q : r.quants) names.push_back(q.label);
    std::vector<Rect> labels, points;
    boxes(svg, labels, points, names);
    REQUIRE(labels.size() == r.quants.size());
    REQUIRE(points.size() == r.quants.size());
    for (size_t i = 0; i < labels.size(); ++i) {
      for (size_t j = i + 1; j < labels.size(); ++j) CHECK_MESSAGE(!labels[i].overlaps(labels[j]), names[i] << " / " << names[j]);
      for (size_t j = 0; j < points.size(); ++j) CHECK_MESSAGE(!labels[i].overlaps(points[j]), names[i] << " over point " << j);
    }
  }

  TEST_CASE("the file-size axis of a tiny model starts at zero, not below") {
    const SweepResult r = result_of({{"Q8_0", 0.9, 0.001}, {"Q4_K_M", 0.5, 0.02}, {"Q2_K", 0.3, 0.2}});
    const std::string svg = report::svg_size_vs_kld(r);
    const std::regex tick(R"re(<text x="[-\d.]+" y="[-\d.]+" text-anchor="middle">(-?[\d.]+)</text>)re");
    int ticks = 0;
    for (auto it = std::sregex_iterator(svg.begin(), svg.end(), tick); it != std::sregex_iterator(); ++it, ++ticks)
      CHECK(std::stod((*it)[1]) >= 0);
    CHECK(ticks >= 2);
  }
}
