// The exact interval sweep of iq_scale_sweep.h.
#include "quantize/iq_scale_sweep.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace smolq::iq {

int nearest_value(std::span<const float> values, float t) {
  int q = 0;
  for (size_t k = 0; k + 1 < values.size(); ++k) q += t > 0.5f * (values[k] + values[k + 1]);
  return q;
}

namespace {

constexpr int kMaxValues = 16;
constexpr int kMaxWeights = 256;

// Keeps the k best candidates, best first.
void offer(std::span<ScaleCandidate> out, int& n, float s, float e) {
  if (n == static_cast<int>(out.size()) && !(e < out[n - 1].error)) return;
  int pos = n < static_cast<int>(out.size()) ? n++ : n - 1;
  while (pos > 0 && e < out[pos - 1].error) {
    out[pos] = out[pos - 1];
    --pos;
  }
  out[pos] = {s, e};
}

}  // namespace

int best_scales(std::span<const float> x, std::span<const float> w, std::span<const float> values,
                std::span<ScaleCandidate> out, float t_max, float t_min) {
  const int n = static_cast<int>(x.size());
  const int nv = static_cast<int>(values.size());
  assert(n <= kMaxWeights && nv >= 2 && nv <= kMaxValues && x.size() == w.size());
  assert(t_max > t_min && t_min > 0);
  float mid[kMaxValues - 1], inv_mid[kMaxValues - 1];
  for (int k = 0; k + 1 < nv; ++k) {
    mid[k] = 0.5f * (values[k] + values[k + 1]);
    inv_mid[k] = mid[k] != 0.0f ? 1.0f / mid[k] : 0.0f;
  }

  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (!(amax > 0.0f) || out.empty()) return 0;
  // The window of |s|: the largest |x| maps to |t| = amax / |s| between t_min and t_max.
  const float u_lo = amax / t_max, u_hi = amax / t_min;

  int found = 0;
  uint64_t events[kMaxWeights * (kMaxValues - 1)];  // (float bits of u) << 32 | i << 8 | q
  int code[kMaxWeights];
  for (int sign : {1, -1}) {
    // s = sign * u, u in [u_lo, u_hi]; y = sign * x, so t = x / s = y / u shrinks towards 0.
    int ne = 0;
    double P = 0, Q = 0;  // sum w y v, sum w v^2 for the current codes
    for (int i = 0; i < n; ++i) {
      const float y = sign * x[i];
      const int q = static_cast<int>(std::lower_bound(mid, mid + nv - 1, y / u_lo) - mid);  // nearest value
      const float t_end = y / u_hi;
      auto push = [&](float u, int qn) {
        uint32_t bits;
        std::memcpy(&bits, &u, 4);  // u > 0: float order == integer order
        events[ne++] = static_cast<uint64_t>(bits) << 32 | static_cast<uint64_t>(i) << 8 | static_cast<uint64_t>(qn);
      };
      if (y > 0)
        for (int k = q - 1; k >= 0 && mid[k] > 0 && mid[k] >= t_end; --k) push(y * inv_mid[k], k);
      else if (y < 0)
        for (int k = q; k < nv - 1 && mid[k] < 0 && mid[k] <= t_end; ++k) push(y * inv_mid[k], k + 1);
      code[i] = q;
      P += static_cast<double>(w[i]) * y * values[q];
      Q += static_cast<double>(w[i]) * values[q] * values[q];
    }
    std::sort(events, events + ne);
    // Interval j spans [lo, hi) between consecutive events, inside [u_lo, u_hi].
    float lo = u_lo;
    for (int j = 0; j <= ne; ++j) {
      float hi = u_hi;
      if (j < ne) {
        const uint32_t bits = static_cast<uint32_t>(events[j] >> 32);
        std::memcpy(&hi, &bits, 4);
      }
      if (Q > 0 && hi >= lo) {
        const double u = std::clamp(P / Q, static_cast<double>(lo), static_cast<double>(hi));
        const double e = u * (u * Q - 2.0 * P);
        offer(out, found, static_cast<float>(sign * u), static_cast<float>(e));
      }
      if (j == ne) break;
      const int i = static_cast<int>((events[j] >> 8) & 0xffffff), qn = static_cast<int>(events[j] & 0xff);
      const float y = sign * x[i];
      const float vo = values[code[i]], vn = values[qn];
      P += static_cast<double>(w[i]) * y * (vn - vo);
      Q += static_cast<double>(w[i]) * (static_cast<double>(vn) * vn - static_cast<double>(vo) * vo);
      code[i] = qn;
      lo = hi;
    }
  }
  return found;
}

}  // namespace smolq::iq
