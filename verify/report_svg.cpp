// The plots of report.html as hand-written SVG: every coordinate is computed here, text uses
// the browser's default sans-serif font, and nothing is loaded from anywhere. Each plot is a
// fixed-size viewBox that scales with the page (width 100%).
#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include "verify/report_writers.h"
#include "text/unicode.h"

namespace smolq::report {

std::string xml_escape(const std::string& raw) {
  const std::string s = unicode::is_valid_utf8(raw) ? raw : unicode::replace_invalid_utf8(raw);
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      case '\'': o += "&#39;"; break;
      default:
        // Control characters other than tab and newline are not allowed in XML text.
        if (static_cast<unsigned char>(c) >= 0x20 || c == '\n' || c == '\t') o += c;
    }
  }
  return o;
}

namespace {

// Colours (also used by the page's CSS): blue for Pareto points, orange for the
// recommendation and the budget, grey for the rest.
constexpr const char* kBlue = "#2b6cb0";
constexpr const char* kOrange = "#dd6b20";
constexpr const char* kGrey = "#718096";
constexpr const char* kAxis = "#4a5568";
constexpr const char* kGrid = "#e2e8f0";

struct Frame {  // plot area inside the SVG: [x0, x1] x [y0, y1] (y grows downwards)
  double width, height, x0, x1, y0, y1;
};

std::string svg_open(const Frame& f, const std::string& label) {
  return fmt("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 %.0f %.0f\" width=\"100%%\" role=\"img\" aria-label=\"",
             f.width, f.height) + xml_escape(label) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
}

std::string text(double x, double y, const std::string& s, const char* anchor = "middle", const char* extra = "") {
  return fmt("<text x=\"%.1f\" y=\"%.1f\" text-anchor=\"%s\"%s>", x, y, anchor, extra) + xml_escape(s) + "</text>\n";
}

std::string line(double x1, double y1, double x2, double y2, const char* stroke, const char* extra = "") {
  return fmt("<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"%s\"%s/>\n", x1, y1, x2, y2, stroke, extra);
}

// "Nice" tick step (1, 2 or 5 x 10^k) for about `n` intervals over `span`.
double nice_step(double span, int n) {
  const double raw = span / std::max(1, n);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

std::string tick_label(double v, double step) {
  const int decimals = step >= 1 ? 0 : static_cast<int>(std::ceil(-std::log10(step) - 1e-9));
  return fmt("%.*f", decimals, v);
}

// A YlOrRd-like sequential scale: t in [0, 1] -> light yellow ... dark red.
std::string heat_colour(double t) {
  static constexpr double kStops[5][3] = {{255, 255, 204}, {254, 217, 118}, {253, 141, 60}, {227, 26, 28}, {128, 0, 38}};
  t = std::clamp(t, 0.0, 1.0) * 4;
  const int i = std::min(3, static_cast<int>(t));
  const double f = t - i;
  int rgb[3];
  for (int k = 0; k < 3; ++k) rgb[k] = static_cast<int>(std::lround(kStops[i][k] + f * (kStops[i + 1][k] - kStops[i][k])));
  return fmt("#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
}

// Places point labels so they overlap neither each other nor the points. Text boxes are
// estimated (12 px sans-serif: ~7 px per character, bold ~7.6): close enough to keep labels
// apart, which is all this is for. Points are labelled in order; each label takes the first
// of eight positions beside its point (right, then left; level, above, below; then further)
// that collides with nothing placed so far and stays inside the plot, else the position of
// least overlap.
struct Box {
  double x0, y0, x1, y1;
  double overlap(const Box& o) const {
    const double w = std::min(x1, o.x1) - std::max(x0, o.x0), h = std::min(y1, o.y1) - std::max(y0, o.y0);
    return w > 0 && h > 0 ? w * h : 0.0;
  }
};
struct PlacedLabel {
  double x, y;         // text anchor position (baseline)
  const char* anchor;  // "start" or "end"
};
std::vector<PlacedLabel> place_labels(const Frame& f, const std::vector<std::pair<double, double>>& pts,
                                      const std::vector<std::string>& labels, const std::vector<bool>& bold,
                                      const std::vector<double>& radius) {
  constexpr double kH = 12;  // text height
  std::vector<Box> taken;
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto [x, y] = pts[i];
    taken.push_back({x - radius[i], y - radius[i], x + radius[i], y + radius[i]});
  }
  std::vector<PlacedLabel> out;
  for (size_t i = 0; i < pts.size(); ++i) {
    const auto [px, py] = pts[i];
    const double w = static_cast<double>(labels[i].size()) * (bold[i] ? 7.6 : 7.0);
    // Where the box goes: beside the point on the right or the left (clear of its radius),
    // its vertical centre `dy` text heights below the point's centre.
    struct Cand { double dy; bool right; };
    static constexpr Cand kCands[] = {{0, true},   {-1, true},  {1, true},  {0, false},
                                      {-1, false}, {1, false},  {-2, true}, {2, true}};
    const double u = radius[i] + 2;
    double best_cost = 1e300;
    PlacedLabel best{};
    Box best_box{};
    for (const Cand& c : kCands) {
      const double bx0 = c.right ? px + u : px - u - w;
      const double by0 = py + c.dy * kH - kH / 2;
      const Box b{bx0, by0, bx0 + w, by0 + kH};
      double cost = 0;
      for (const Box& t : taken) cost += t.overlap(b);
      // leaving the plot area is worse than a small overlap, but allowed as a last resort
      if (b.x0 < f.x0 || b.x1 > f.width || b.y0 < 0 || b.y1 > f.y1) cost += 4 * w * kH;
      if (cost < best_cost) {
        best_cost = cost;
        best = {c.right ? b.x0 : b.x1, b.y1 - 2, c.right ? "start" : "end"};
        best_box = b;
      }
      if (cost == 0) break;
    }
    taken.push_back(best_box);
    out.push_back(best);
  }
  return out;
}

}  // namespace

std::string svg_size_vs_kld(const SweepResult& r) {
  const Frame f{580, 400, 72, 560, 20, 340};
  std::string s = svg_open(f, "file size against mean KL divergence");
  if (r.quants.empty()) return s + "</svg>\n";
  // KLD on a log scale: the ladder spans several decades. Zero (identical logits) is drawn at
  // the bottom edge.
  double kmin = 1e9, kmax = 0, smin = 1e300, smax = 0;
  for (const auto& q : r.quants) {
    const double k = q.kld.kld.value;
    if (k > 0) kmin = std::min(kmin, k), kmax = std::max(kmax, k);
    smin = std::min(smin, q.file_size / 1048576.0);
    smax = std::max(smax, q.file_size / 1048576.0);
  }
  if (kmax == 0) kmin = 1e-6, kmax = 1e-5;
  if (r.kld_budget > 0) kmin = std::min(kmin, r.kld_budget), kmax = std::max(kmax, r.kld_budget);
  const double ly0 = std::floor(std::log10(kmin)), ly1 = std::max(ly0 + 1, std::ceil(std::log10(kmax)));
  const double pad = std::max(1.0, (smax - smin) * 0.08);
  const double step = nice_step(smax - smin + 2 * pad, 6);
  // File sizes are never negative: a tiny model's padding must not put the axis below zero.
  const double sx0 = std::max(0.0, std::floor((smin - pad) / step) * step), sx1 = std::ceil((smax + pad) / step) * step;
  auto X = [&](double mib) { return f.x0 + (mib - sx0) / (sx1 - sx0) * (f.x1 - f.x0); };
  auto Y = [&](double kld) {
    const double l = kld > 0 ? std::log10(kld) : ly0;
    return f.y1 - (std::clamp(l, ly0, ly1) - ly0) / (ly1 - ly0) * (f.y1 - f.y0);
  };
  // grid and axes
  for (double l = ly0; l <= ly1 + 1e-9; l += 1) {
    s += line(f.x0, Y(std::pow(10, l)), f.x1, Y(std::pow(10, l)), kGrid);
    s += text(f.x0 - 6, Y(std::pow(10, l)) + 4, l >= 0 ? fmt("%.0f", std::pow(10, l)) : l >= -5 ? fmt("%.*f", static_cast<int>(-l), std::pow(10, l)) : fmt("1e%.0f", l), "end");
    for (int m = 2; m <= 9 && l < ly1; ++m)  // minor ticks at 2..9 x 10^l
      s += line(f.x0 - 3, Y(m * std::pow(10, l)), f.x0, Y(m * std::pow(10, l)), kAxis);
  }
  for (double v = sx0; v <= sx1 + step * 1e-6; v += step) {
    s += line(X(v), f.y0, X(v), f.y1, kGrid);
    s += text(X(v), f.y1 + 16, tick_label(v, step));
  }
  s += line(f.x0, f.y1, f.x1, f.y1, kAxis) + line(f.x0, f.y0, f.x0, f.y1, kAxis);
  s += text((f.x0 + f.x1) / 2, f.y1 + 36, "file size (MiB)");
  s += text(16, (f.y0 + f.y1) / 2, "mean KLD (nats, log scale)", "middle",
            fmt(" transform=\"rotate(-90 16 %.1f)\"", (f.y0 + f.y1) / 2).c_str());
  // budget
  if (r.kld_budget > 0) {
    s += line(f.x0, Y(r.kld_budget), f.x1, Y(r.kld_budget), kOrange, " stroke-dasharray=\"6 4\"");
    s += text(f.x1 - 4, Y(r.kld_budget) - 5, fmt("KLD budget %g", r.kld_budget), "end", fmt(" fill=\"%s\"", kOrange).c_str());
  }
  // Pareto front
  std::string pts;
  for (size_t i : r.pareto) pts += fmt("%.1f,%.1f ", X(r.quants[i].file_size / 1048576.0), Y(r.quants[i].kld.kld.value));
  s += fmt("<polyline points=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"1.5\" stroke-dasharray=\"3 3\"/>\n", pts.c_str(), kBlue);
  // points first, then their labels placed around them without collisions
  std::vector<std::pair<double, double>> at;
  std::vector<std::string> names;
  std::vector<bool> bold;
  std::vector<double> radius;  // clearance around each point: its circle, or the recommendation ring
  for (size_t i = 0; i < r.quants.size(); ++i) {
    const QuantRow& q = r.quants[i];
    const double x = X(q.file_size / 1048576.0), y = Y(q.kld.kld.value);
    const bool front = on_pareto(r, i);
    if (is_recommended(r, i))
      s += fmt("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"10\" fill=\"none\" stroke=\"%s\" stroke-width=\"2.5\"/>\n", x, y, kOrange);
    s += fmt("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" fill=\"%s\" stroke=\"%s\" stroke-width=\"1.5\"><title>", x, y,
             front ? kBlue : "#ffffff", front ? kBlue : kGrey) +
         xml_escape(q.label + fmt(": %s, %.2f bpw, mean KLD %.5f", mib(q.file_size).c_str(), q.bpw, q.kld.kld.value)) +
         "</title></circle>\n";
    at.emplace_back(x, y);
    names.push_back(q.label);
    bold.push_back(front);
    radius.push_back(is_recommended(r, i) ? 12.5 : 6.5);
  }
  const auto placed = place_labels(f, at, names, bold, radius);
  for (size_t i = 0; i < placed.size(); ++i)
    s += text(placed[i].x, placed[i].y, names[i], placed[i].anchor, bold[i] ? " font-weight=\"bold\"" : "");
  return s + "</svg>\n";
}

std::string svg_ppl(const SweepResult& r) {
  const size_t n = r.quants.size() + 1;  // the baseline first
  const Frame f{580, 400, 72, 560, 20, 320};
  std::string s = svg_open(f, "perplexity of each quant");
  std::vector<std::pair<std::string, MeanUnc>> v{{"baseline", {r.base_ppl, r.base_ppl_unc}}};
  for (const auto& q : r.quants) v.push_back({q.label, q.kld.ppl_q});
  double lo = 1e300, hi = 0;
  for (const auto& [name, m] : v) lo = std::min(lo, m.value - m.unc), hi = std::max(hi, m.value + m.unc);
  const double step = nice_step(std::max(hi - lo, 1e-6), 5);
  const double y0v = std::floor(lo / step) * step, y1v = std::ceil(hi / step) * step + step;  // room for labels
  auto Y = [&](double p) { return f.y1 - (p - y0v) / (y1v - y0v) * (f.y1 - f.y0); };
  const double slot = (f.x1 - f.x0) / static_cast<double>(n);
  auto X = [&](size_t i) { return f.x0 + slot * (static_cast<double>(i) + 0.5); };
  for (double p = y0v; p <= y1v + step * 1e-6; p += step) {
    s += line(f.x0, Y(p), f.x1, Y(p), kGrid);
    s += text(f.x0 - 6, Y(p) + 4, tick_label(p, step), "end");
  }
  s += line(f.x0, f.y1, f.x1, f.y1, kAxis) + line(f.x0, f.y0, f.x0, f.y1, kAxis);
  s += text(16, (f.y0 + f.y1) / 2, "perplexity (axis not from zero)", "middle",
            fmt(" transform=\"rotate(-90 16 %.1f)\"", (f.y0 + f.y1) / 2).c_str());
  s += line(f.x0, Y(r.base_ppl), f.x1, Y(r.base_ppl), kGrey, " stroke-dasharray=\"6 4\"");
  for (size_t i = 0; i < n; ++i) {
    const auto& [name, m] = v[i];
    const double x = X(i);
    const bool rec = i > 0 && is_recommended(r, i - 1);
    const char* colour = i == 0 ? kGrey : rec ? kOrange : kBlue;
    s += line(x, Y(m.value - m.unc), x, Y(m.value + m.unc), "#1a202c", " stroke-width=\"1.5\"");
    s += line(x - 5, Y(m.value + m.unc), x + 5, Y(m.value + m.unc), "#1a202c");
    s += line(x - 5, Y(m.value - m.unc), x + 5, Y(m.value - m.unc), "#1a202c");
    // A dot with whiskers, not a bar: the axis does not start at zero.
    s += fmt("<circle cx=\"%.1f\" cy=\"%.1f\" r=\"6\" fill=\"%s\"><title>", x, Y(m.value), colour) +
         xml_escape(name + fmt(": PPL %.4f ± %.4f", m.value, m.unc)) + "</title></circle>\n";
    if (i > 0) s += text(x, Y(m.value + m.unc) - 5, fmt("%+.1f%%", delta_ppl_percent(r.quants[i - 1])), "middle", " font-size=\"10\"");
    s += text(x, f.y1 + 14, name, "end", fmt(" transform=\"rotate(-40 %.1f %.1f)\"", x, f.y1 + 14).c_str());
  }
  return s + "</svg>\n";
}

std::string svg_layer_heatmap(const SweepResult& r) {
  // Columns: token_embd, blk.0 ... blk.N-1, and output when it is a separate tensor.
  std::vector<std::string> cols{"embd"};
  for (int il = 0; il < r.n_layers; ++il) cols.push_back(std::to_string(il));
  if (!r.tied_output) cols.push_back("out");
  auto value = [&](const QuantRow& q, size_t c) {
    if (c == 0) return q.embd_rel;
    if (!r.tied_output && c == cols.size() - 1) return q.output_rel;
    return c - 1 < q.layer_rel.size() ? q.layer_rel[c - 1] : 0.0;
  };
  const double left = 90, top = 28, row_h = 24, legend_h = 58;
  const double width = 1160, cell_w = (width - left - 10) / static_cast<double>(cols.size());
  const Frame f{width, top + row_h * static_cast<double>(r.quants.size()) + legend_h, left, width - 10, top, 0};
  std::string s = svg_open(f, "relative weight error per layer and quant");
  double lmin = 1e300, lmax = -1e300;
  for (const auto& q : r.quants)
    for (size_t c = 0; c < cols.size(); ++c)
      if (value(q, c) > 0) lmin = std::min(lmin, std::log10(value(q, c))), lmax = std::max(lmax, std::log10(value(q, c)));
  if (lmin > lmax) lmin = -3, lmax = -1;
  if (lmax - lmin < 1e-6) lmax = lmin + 1;
  auto t_of = [&](double v) { return v > 0 ? (std::log10(v) - lmin) / (lmax - lmin) : 0.0; };
  for (size_t c = 0; c < cols.size(); ++c)
    s += text(left + cell_w * (static_cast<double>(c) + 0.5), top - 8, cols[c], "middle", " font-size=\"10\"");
  for (size_t i = 0; i < r.quants.size(); ++i) {
    const QuantRow& q = r.quants[i];
    const double y = top + row_h * static_cast<double>(i);
    s += text(left - 8, y + row_h / 2 + 4, q.label, "end");
    for (size_t c = 0; c < cols.size(); ++c) {
      const double v = value(q, c);
      s += fmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#ffffff\" stroke-width=\"1\"><title>",
               left + cell_w * static_cast<double>(c), y, cell_w, row_h, heat_colour(t_of(v)).c_str()) +
           xml_escape(q.label + " " + (c == 0 ? std::string("token_embd") : cols[c] == "out" ? std::string("output") : "blk." + cols[c]) +
                      fmt(": %.3f%% relative error", 100.0 * v)) +
           "</title></rect>\n";
    }
  }
  // Legend: a gradient bar with ticks at round percentages.
  const double ly = top + row_h * static_cast<double>(r.quants.size()) + 18, lx0 = left, lx1 = left + 360;
  s += "<defs><linearGradient id=\"heat\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">";
  for (int k = 0; k <= 8; ++k) s += fmt("<stop offset=\"%.3f\" stop-color=\"%s\"/>", k / 8.0, heat_colour(k / 8.0).c_str());
  s += "</linearGradient></defs>\n";
  s += fmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"12\" fill=\"url(#heat)\"/>\n", lx0, ly, lx1 - lx0);
  for (double l = std::ceil(lmin); l <= std::floor(lmax) + 1e-9; l += 1) {
    for (double m : {1.0, 2.0, 5.0}) {
      const double lv = l + std::log10(m);
      if (lv < lmin || lv > lmax) continue;
      const double x = lx0 + (lv - lmin) / (lmax - lmin) * (lx1 - lx0);
      const double pct = 100.0 * std::pow(10.0, lv);
      s += line(x, ly + 12, x, ly + 16, kAxis);
      s += text(x, ly + 28, pct >= 1 ? fmt("%.0f%%", pct) : pct >= 0.1 ? fmt("%.1f%%", pct) : fmt("%.2f%%", pct), "middle", " font-size=\"10\"");
    }
  }
  s += text(lx1 + 10, ly + 10, "relative RMS error of the weights (importance-weighted where available), log scale", "start", " font-size=\"11\"");
  return s + "</svg>\n";
}

std::string svg_category_heatmap(const SweepResult& r) {
  // Rows: quants (largest file first); columns: categories. Colour: log10 of the mean KLD over
  // every cell; text: the mean KLD and the same-top-1 share.
  const double left = 90, top = 28, row_h = 34, legend_h = 20;
  const double width = 1160, cell_w = (width - left - 10) / static_cast<double>(std::max<size_t>(1, r.categories.size()));
  const Frame f{width, top + row_h * static_cast<double>(r.quants.size()) + legend_h, left, width - 10, top, 0};
  std::string s = svg_open(f, "mean KLD per category and quant");
  double lmin = 1e300, lmax = -1e300;
  for (const auto& q : r.quants)
    for (const auto& k : q.category_kld)
      if (k.kld.value > 0) lmin = std::min(lmin, std::log10(k.kld.value)), lmax = std::max(lmax, std::log10(k.kld.value));
  if (lmin > lmax) lmin = -3, lmax = -1;
  if (lmax - lmin < 1e-6) lmax = lmin + 1;
  for (size_t c = 0; c < r.categories.size(); ++c)
    s += text(left + cell_w * (static_cast<double>(c) + 0.5), top - 8, r.categories[c].name);
  for (size_t i = 0; i < r.quants.size(); ++i) {
    const QuantRow& q = r.quants[i];
    const double y = top + row_h * static_cast<double>(i);
    s += text(left - 8, y + row_h / 2 + 4, q.label, "end");
    for (size_t c = 0; c < r.categories.size() && c < q.category_kld.size(); ++c) {
      const double v = q.category_kld[c].kld.value;
      const double t = v > 0 ? (std::log10(v) - lmin) / (lmax - lmin) : 0.0;
      const double x = left + cell_w * static_cast<double>(c);
      s += fmt("<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\" stroke=\"#ffffff\" stroke-width=\"1\"><title>",
               x, y, cell_w, row_h, heat_colour(t).c_str()) +
           xml_escape(q.label + " on " + r.categories[c].name + fmt(": mean KLD %.5f, same top-1 %.2f%%", v, 100.0 * q.category_kld[c].same_top.value)) +
           "</title></rect>\n";
      const char* ink = t > 0.6 ? " fill=\"#ffffff\"" : "";
      s += text(x + cell_w / 2, y + row_h / 2 - 1, fmt("%.4f", v), "middle", ink);
      s += text(x + cell_w / 2, y + row_h / 2 + 12, fmt("%.1f%%", 100.0 * q.category_kld[c].same_top.value), "middle",
                t > 0.6 ? " font-size=\"10\" fill=\"#ffffff\"" : " font-size=\"10\"");
    }
  }
  s += text(left, top + row_h * static_cast<double>(r.quants.size()) + 15,
            fmt("colour: log10 mean KLD from %.4f (light) to %.4f (dark); second line: same top-1", std::pow(10.0, lmin), std::pow(10.0, lmax)),
            "start", " font-size=\"11\"");
  return s + "</svg>\n";
}

}  // namespace smolq::report
