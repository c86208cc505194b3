// Access to ../shared/golden/quant-vectors.gguf (see its README): the ggml-made reference
// vectors every block-format test compares against.
#pragma once
#include <cmath>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "formats/gguf.h"

namespace smolq::test {

inline std::string golden_path() { return std::string(SMOLQ_SHARED_DIR) + "/golden/quant-vectors.gguf"; }

struct GoldenStats {
  double rmse = 0, wrmse = 0, maxabs = 0;
  std::vector<double> rmse_by_group, wrmse_by_group, maxabs_by_group;  // 8 groups a..h
};

class Golden {
 public:
  static const Golden& get() {
    static const Golden g;
    return g;
  }
  static constexpr int kRows = 64, kCols = 512, kGroups = 8, kRowsPerGroup = 8;
  const std::vector<float>& input() const { return input_; }     // 64 x 512, row-major
  const std::vector<float>& imatrix() const { return imatrix_; } // 512
  const GgufReader& file() const { return *r_; }
  // "q.Q4_K.imat" etc.; nullptr when absent.
  const GgufTensorInfo* tensor(const std::string& name) const { return r_->find_tensor(name); }
  std::vector<std::byte> bytes(const std::string& name) const {
    ByteView v = r_->tensor_data(r_->tensor(name));
    return std::vector<std::byte>(v.data(), v.data() + v.size());
  }
  std::vector<float> floats(const std::string& name) const {
    ByteView v = r_->tensor_data(r_->tensor(name));
    std::vector<float> out(v.size() / 4);
    std::memcpy(out.data(), v.data(), v.size());
    return out;
  }
  // Statistics ggml's output reached, for tensor name `t` (e.g. "q.Q4_K.imat").
  GoldenStats stats(const std::string& t) const {
    GoldenStats s;
    const auto& m = r_->metadata();
    s.rmse = m.get_f64("golden." + t + ".rmse");
    s.wrmse = m.get_f64("golden." + t + ".wrmse");
    s.maxabs = m.get_f64("golden." + t + ".maxabs");
    auto arr = [&](const std::string& k) {
      std::vector<double> v;
      for (const auto& it : m.find("golden." + t + "." + k)->as_array().items) v.push_back(it.as_f64());
      return v;
    };
    s.rmse_by_group = arr("rmse_by_group");
    s.wrmse_by_group = arr("wrmse_by_group");
    s.maxabs_by_group = arr("maxabs_by_group");
    return s;
  }

 private:
  Golden() : r_(GgufReader::open(golden_path())) {
    input_ = floats("input");
    imatrix_ = floats("imatrix");
  }
  std::unique_ptr<GgufReader> r_;
  std::vector<float> input_, imatrix_;
};

// The golden README's definitions, computed for a decoded matrix `dq` against `input`.
inline GoldenStats measure(const std::vector<float>& dq) {
  const auto& g = Golden::get();
  const auto& x = g.input();
  const auto& w = g.imatrix();
  GoldenStats s;
  double se = 0, wse = 0, wsum = 0;
  s.rmse_by_group.assign(8, 0);
  s.wrmse_by_group.assign(8, 0);
  s.maxabs_by_group.assign(8, 0);
  for (int grp = 0; grp < 8; ++grp) {
    double gse = 0, gwse = 0, gw = 0, gmax = 0;
    for (int r = grp * 8; r < grp * 8 + 8; ++r)
      for (int c = 0; c < Golden::kCols; ++c) {
        double d = static_cast<double>(dq[r * Golden::kCols + c]) - x[r * Golden::kCols + c];
        gse += d * d;
        gwse += w[c] * d * d;
        gw += w[c];
        gmax = std::max(gmax, std::fabs(d));
      }
    s.rmse_by_group[grp] = std::sqrt(gse / (8.0 * Golden::kCols));
    s.wrmse_by_group[grp] = std::sqrt(gwse / gw);
    s.maxabs_by_group[grp] = gmax;
    se += gse;
    wse += gwse;
    wsum += gw;
    s.maxabs = std::max(s.maxabs, gmax);
  }
  s.rmse = std::sqrt(se / (64.0 * Golden::kCols));
  s.wrmse = std::sqrt(wse / wsum);
  return s;
}

}  // namespace smolq::test
