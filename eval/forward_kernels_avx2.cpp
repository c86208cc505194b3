// AVX2/FMA versions of the exp-heavy element-wise kernels (see forward_kernels.h), compiled
// through a target pragma and selected at run time. As in matmul_avx2.cpp, nothing after the
// pragma instantiates a standard-library template.
#include <immintrin.h>

#include <cmath>
#include <cstdint>

#include "eval/forward_kernels.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#if defined(__clang__)  // clang ignores the GCC pragma: the same target through its own
#pragma clang attribute push(__attribute__((target("avx2,fma"))), apply_to = function)
#endif

namespace smolq::detail {
namespace {

// expf for 8 lanes, Cephes-style: x = n*ln2 + r with |r| <= ln2/2 (ln2 split in a short
// high part and a correction so n*ln2_hi is exact), exp(r) by a degree-6 polynomial, 2^n put
// straight into the exponent bits. About 1-2 ulp over the clamped range. Inputs are clamped to
// [-87.3, 88.7] so 2^n stays a normal float: exp of anything below gives ~1e-38 instead of a
// denormal or 0, far below what any sum here can see. NaN stays NaN: max/min return their
// SECOND operand when either is NaN, so x goes second (a NaN logit must give a NaN
// perplexity, as in llama.cpp, not exp(-87)).
inline __m256 exp_ps(__m256 x) {
  const __m256 kMax = _mm256_set1_ps(88.7228394f);   // log(FLT_MAX)
  const __m256 kMin = _mm256_set1_ps(-87.3365479f);  // log(FLT_MIN), smallest normal
  const __m256 kLog2e = _mm256_set1_ps(1.44269504088896341f);
  const __m256 kLn2Hi = _mm256_set1_ps(0.693359375f);      // 8 significant bits: n*hi exact
  const __m256 kLn2Lo = _mm256_set1_ps(-2.12194440e-4f);   // ln2 - hi
  x = _mm256_min_ps(kMax, _mm256_max_ps(kMin, x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, kLog2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, kLn2Hi, x);
  r = _mm256_fnmadd_ps(n, kLn2Lo, r);
  // Cephes expf minimax coefficients for exp(r) - 1 - r = r^2 * P(r).
  __m256 p = _mm256_set1_ps(1.9875691500e-4f);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
  const __m256 r2 = _mm256_mul_ps(r, r);
  __m256 y = _mm256_fmadd_ps(p, r2, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  // 2^n: n in [-126, 128] after the clamp; add it to the exponent field of 1.0.
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(y, _mm256_castsi256_ps(e));
}

inline float exp_scalar(float x) {
  float in[8] = {x, 0, 0, 0, 0, 0, 0, 0}, out[8];
  _mm256_storeu_ps(out, exp_ps(_mm256_loadu_ps(in)));
  return out[0];
}

inline float hmax(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Sum of 8 float lanes added to 4 double lanes (lanes i and i+4 share a double).
inline __m256d add_to_double(__m256d acc, __m256 v) {
  acc = _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_castps256_ps128(v)));
  return _mm256_add_pd(acc, _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)));
}

inline double hsum_pd(__m256d v) {
  alignas(32) double d[4];
  _mm256_store_pd(d, v);
  return (d[0] + d[2]) + (d[1] + d[3]);
}

float max_of(const float* v, int64_t n) {
  float mx = v[0];
  int64_t i = 0;
  if (n >= 8) {
    __m256 m = _mm256_loadu_ps(v);
    for (i = 8; i + 8 <= n; i += 8) m = _mm256_max_ps(m, _mm256_loadu_ps(v + i));
    mx = hmax(m);
  }
  for (; i < n; ++i) mx = v[i] > mx ? v[i] : mx;
  return mx;
}

}  // namespace

void softmax_inplace_avx2(float* v, int64_t n) {
  const float mx = max_of(v, n);
  const __m256 m = _mm256_set1_ps(mx);
  __m256 acc = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 e = exp_ps(_mm256_sub_ps(_mm256_loadu_ps(v + i), m));
    _mm256_storeu_ps(v + i, e);
    acc = _mm256_add_ps(acc, e);
  }
  float sum = hsum(acc);
  for (; i < n; ++i) {
    v[i] = exp_scalar(v[i] - mx);
    sum += v[i];
  }
  const float inv = 1.0f / sum;
  const __m256 iv = _mm256_set1_ps(inv);
  for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(v + i, _mm256_mul_ps(_mm256_loadu_ps(v + i), iv));
  for (; i < n; ++i) v[i] *= inv;
}

void silu_mul_avx2(float* gate, const float* up, int64_t n) {
  const __m256 one = _mm256_set1_ps(1.0f);
  const __m256 sign = _mm256_set1_ps(-0.0f);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i);
    const __m256 den = _mm256_add_ps(one, exp_ps(_mm256_xor_ps(g, sign)));
    _mm256_storeu_ps(gate + i, _mm256_mul_ps(_mm256_div_ps(g, den), _mm256_loadu_ps(up + i)));
  }
  for (; i < n; ++i) gate[i] = gate[i] / (1.0f + exp_scalar(-gate[i])) * up[i];
}

LogitStats logit_stats_avx2(const float* x, int64_t n) {
  LogitStats s;
  s.max = max_of(x, n);
  for (int64_t i = 0; i < n; ++i)
    if (x[i] == s.max) {
      s.argmax = i;
      break;
    }
  const __m256 m = _mm256_set1_ps(s.max);
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) acc = add_to_double(acc, exp_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), m)));
  double sum = hsum_pd(acc);
  for (; i < n; ++i) sum += exp_scalar(x[i] - s.max);
  s.sum_exp = sum;
  return s;
}

double kl_sum_avx2(const float* p, double p_norm, const float* q, double q_norm, int64_t n) {
  // log p_i - log q_i = (p_i - q_i) - (p_norm - q_norm): the difference of two nearby logits
  // is exact in float, so the per-token log ratio keeps full precision.
  const float dn = static_cast<float>(p_norm - q_norm);
  const float pn = static_cast<float>(p_norm);
  const __m256 vdn = _mm256_set1_ps(dn), vpn = _mm256_set1_ps(pn);
  __m256d acc = _mm256_setzero_pd();
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 pv = _mm256_loadu_ps(p + i), qv = _mm256_loadu_ps(q + i);
    const __m256 ep = exp_ps(_mm256_sub_ps(pv, vpn));
    const __m256 d = _mm256_sub_ps(_mm256_sub_ps(pv, qv), vdn);
    acc = add_to_double(acc, _mm256_mul_ps(ep, d));
  }
  double sum = hsum_pd(acc);
  for (; i < n; ++i) sum += static_cast<double>(exp_scalar(p[i] - pn)) * ((p[i] - q[i]) - dn);
  return sum;
}

}  // namespace smolq::detail

#if defined(__clang__)
#pragma clang attribute pop
#endif
#pragma GCC pop_options

#else

namespace smolq::detail {
void softmax_inplace_avx2(float*, int64_t) {}
void silu_mul_avx2(float*, const float*, int64_t) {}
LogitStats logit_stats_avx2(const float*, int64_t) { return {}; }
double kl_sum_avx2(const float*, double, const float*, double, int64_t) { return 0.0; }
}  // namespace smolq::detail

#endif
