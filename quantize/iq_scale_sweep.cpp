// The exact interval sweep of iq_scale_sweep.h. Written for speed without changing its
// result: codes are counted without branches (four targets per step), crossing events are
// generated with selects, and they are ordered by a bucket sort on the float bits of their
// scale plus an insertion pass (the keys are distinct, so the order is the one std::sort
// gives). A 32-weight block has about one crossing per weight and sign.
#include "quantize/iq_scale_sweep.h"

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>

namespace smolq::iq {

int nearest_value(std::span<const float> values, float t) {  // ties to the lower value
  int q = 0;
  for (size_t k = 0; k + 1 < values.size(); ++k) q += t > 0.5f * (values[k] + values[k + 1]);
  return q;
}

namespace {

constexpr int kMaxValues = 16;
constexpr int kMaxWeights = 256;

// Buckets of the event sort (see sort_events).
constexpr int kBuckets = 64;

inline uint32_t float_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}
inline float bits_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}

// Number of the m ascending midpoints below t: the index of the nearest value (ties to the
// lower one), counted without branches (a binary search mispredicts half its steps on random
// data).
inline int count_below(const float* mid, int m, float t) {
  int c = 0;
  for (int k = 0; k < m; ++k) c += mid[k] < t;
  return c;
}

// GCC/Clang vector extensions: four lanes, SSE2 on x86-64 (part of the baseline), NEON
// elsewhere. Used for the integer code counts only, so any lane width gives the same result.
typedef float V4f __attribute__((vector_size(16)));
typedef int32_t V4i __attribute__((vector_size(16)));

// Nearest codes of many targets at once: c_lt[i] = #{k: mid[k] < t[i]}, c_le[i] the same with
// <= (null: not wanted), for i < n rounded up to 4 (t padded). The same counts as count_below
// / count_not_above, four targets per step.
void count_codes(const float* mid, int m, const float* t, int n, int* c_lt, int* c_le) {
  for (int i = 0; i < n; i += 4) {
    V4f tv;
    std::memcpy(&tv, t + i, sizeof tv);
    V4i lt = {0, 0, 0, 0}, le = {0, 0, 0, 0};
    for (int k = 0; k < m; ++k) {
      const V4f mv = {mid[k], mid[k], mid[k], mid[k]};
      lt -= mv < tv;  // a true comparison is -1 in every bit
      le -= mv <= tv;
    }
    std::memcpy(c_lt + i, &lt, sizeof lt);
    if (c_le) std::memcpy(c_le + i, &le, sizeof le);
  }
}

// Sorts n event keys ascending into out. Every key's u (the top 32 bits, a positive float, so
// integer order == float order) lies in or next to the window [u_lo, u_hi]; a counting sort on
// (bits(u) - lo_bits) >> shift (a monotone bucket number, clamped into range) leaves only
// keys of the same bucket out of order, and an insertion pass puts those right. The keys are
// distinct (they hold the weight index), so the result is the one std::sort gives.
void sort_events(const uint64_t* ev, int n, uint32_t lo_bits, int shift, uint64_t* out) {
  int start[kBuckets + 1] = {};
  uint8_t bucket[kMaxWeights * (kMaxValues - 1)];
  for (int j = 0; j < n; ++j) {
    const int32_t d = static_cast<int32_t>(static_cast<uint32_t>(ev[j] >> 32) - lo_bits);
    const int b = std::clamp(d >> shift, 0, kBuckets - 1);
    bucket[j] = static_cast<uint8_t>(b);
    ++start[b + 1];
  }
  for (int b = 0; b < kBuckets; ++b) start[b + 1] += start[b];
  for (int j = 0; j < n; ++j) out[start[bucket[j]]++] = ev[j];
  for (int j = 1; j < n; ++j) {
    const uint64_t v = out[j];
    int k = j;
    for (; k > 0 && out[k - 1] > v; --k) out[k] = out[k - 1];
    out[k] = v;
  }
}

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
  // Midpoint counts that bound the crossings below (the midpoints ascend).
  const int n_neg = count_below(mid, nv - 1, 0.0f);  // midpoints < 0
  int n_nonpos = n_neg;                              // midpoints <= 0
  while (n_nonpos < nv - 1 && !(mid[n_nonpos] > 0.0f)) ++n_nonpos;

  float amax = 0.0f;
  for (int i = 0; i < n; ++i) amax = std::max(amax, std::fabs(x[i]));
  if (!(amax > 0.0f) || out.empty()) return 0;
  // The window of |s|: the largest |x| maps to |t| = amax / |s| between t_min and t_max.
  const float u_lo = amax / t_max, u_hi = amax / t_min;
  const uint32_t lo_bits = float_bits(u_lo);
  // Bucket shift: (bits(u) - bits(u_lo)) >> shift spans fewer than kBuckets buckets.
  const uint32_t span = float_bits(u_hi) - lo_bits;
  int shift = 0;
  while ((span >> shift) >= static_cast<uint32_t>(kBuckets - 1)) ++shift;

  int found = 0;
  // Event: (float bits of u) << 32 | i << 8 | q. Two spare slots: the generator below writes
  // two events per weight before it knows how many are real.
  uint64_t events[kMaxWeights * (kMaxValues - 1) + 2], sorted[kMaxWeights * (kMaxValues - 1)];
  int code[kMaxWeights];
  for (int sign : {1, -1}) {
    // s = sign * u, u in [u_lo, u_hi]; y = sign * x, so t = x / s = y / u shrinks towards 0.
    // Weight i's nearest code at u is the number of midpoints below y / u; as u grows it
    // moves towards the zero code, one event per midpoint crossed inside the window:
    //   y > 0: midpoints k in [max(#mid <= 0, #mid < t_end), q), the code becoming k,
    //   y < 0: midpoints k in [q, min(#mid < 0, #mid <= t_end)), the code becoming k + 1,
    // where q is the code at u_lo and t_end = y / u_hi.
    alignas(16) float t0[kMaxWeights], t1[kMaxWeights];
    int q0[kMaxWeights], lt1[kMaxWeights], le1[kMaxWeights];
    for (int i = 0; i < n; ++i) {
      t0[i] = sign * x[i] / u_lo;
      t1[i] = sign * x[i] / u_hi;
    }
    for (int i = n; i % 4 != 0; ++i) t0[i] = t1[i] = 0.0f;  // count_codes reads whole lanes
    count_codes(mid, nv - 1, t0, n, q0, nullptr);
    count_codes(mid, nv - 1, t1, n, lt1, le1);
    int ne = 0;
    double P = 0, Q = 0;  // sum w y v, sum w v^2 for the current codes
    for (int i = 0; i < n; ++i) {
      const float y = sign * x[i];
      const int q = q0[i];
      // Events for midpoints k0 .. k1-1, the new code being k + dq; none for y == 0. Selects,
      // not branches: the sign of y is a coin toss.
      const bool pos = y > 0, neg = y < 0;
      const int k0 = pos ? std::max(n_nonpos, lt1[i]) : q;
      const int k1 = pos ? q : (neg ? std::min(n_neg, le1[i]) : q);
      const int dq = neg ? 1 : 0;
      // Usually 0, 1 or 2 events: write two unconditionally (the slots past the real ones are
      // overwritten by the next weight), then any further ones.
      const uint64_t tag = static_cast<uint64_t>(i) << 8;
      const int m0 = std::min(k0, nv - 2), m1 = std::min(k0 + 1, nv - 2);
      events[ne] = static_cast<uint64_t>(float_bits(y * inv_mid[m0])) << 32 | tag | static_cast<uint64_t>(m0 + dq);
      events[ne + 1] = static_cast<uint64_t>(float_bits(y * inv_mid[m1])) << 32 | tag | static_cast<uint64_t>(m1 + dq);
      const int cnt = std::max(k1 - k0, 0);
      ne += std::min(cnt, 2);
      for (int k = k0 + 2; k < k1; ++k)
        events[ne++] = static_cast<uint64_t>(float_bits(y * inv_mid[k])) << 32 | tag | static_cast<uint64_t>(k + dq);
      code[i] = q;
      P += static_cast<double>(w[i]) * y * values[q];
      Q += static_cast<double>(w[i]) * values[q] * values[q];
    }
    sort_events(events, ne, lo_bits, shift, sorted);
    // Interval j spans [lo, hi) between consecutive events, inside [u_lo, u_hi].
    float lo = u_lo;
    for (int j = 0; j <= ne; ++j) {
      float hi = u_hi;
      if (j < ne) hi = bits_float(static_cast<uint32_t>(sorted[j] >> 32));
      if (Q > 0 && hi >= lo) {
        const double u = std::clamp(P / Q, static_cast<double>(lo), static_cast<double>(hi));
        const double e = u * (u * Q - 2.0 * P);
        offer(out, found, static_cast<float>(sign * u), static_cast<float>(e));
      }
      if (j == ne) break;
      const int i = static_cast<int>((sorted[j] >> 8) & 0xffffff), qn = static_cast<int>(sorted[j] & 0xff);
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
