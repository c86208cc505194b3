// The microscaling FP4 formats: 4-bit E2M1 values (sign bit 3, magnitudes 0, 0.5, 1, 1.5,
// 2, 3, 4, 6, stored doubled as kValuesMxfp4) times a shared 8-bit scale.
//
//   MXFP4 (4.25 bpw, 32 weights): an E8M0 exponent byte e (scale 2^(e-127); the decoder
//          returns half of it, 2^(e-128), to match the doubled values), then 16 bytes with
//          weight j in the low nibble of qs[j] and weight j+16 in the high nibble.
//   NVFP4 (4.5 bpw, 64 weights): four unsigned E4M3 scales (bias 7, subnormals, 0x7f = NaN
//          decodes to 0; the decoder again halves them), one per 16 weights, then 32 bytes:
//          sub-block s, weight j in the low nibble of qs[8 s + j], weight j+8 in the high one.
//
// For a given scale each weight simply takes its nearest value, so the search only tries a
// few scale codes around ggml's choice (which maps the largest weight near the top value)
// and keeps the one with the least weighted error. ggml ignores importance weights for
// these types; we use them to pick the scale.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>

#include "formats/cpu_features.h"
#include "formats/half.h"
#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"
#include "quantize/iq_rows.h"
#include "quantize/iq_tables.h"
#include "quantize/quant_search.h"
#include "quantize/quants_iq.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

namespace smolq::kernels {
namespace {

// Importance profiles (measured on the golden matrix): plain MXFP4 minimises the plain
// squared error; NVFP4's finer scales do better with a slight preference for large weights.
constexpr iq::WeightProfile kMxfp4Weights{0.7f, 0.1f, 0.0f};
constexpr iq::WeightProfile kNvfp4Weights{0.7f, 0.1f, 0.25f};

// E8M0 scale as ggml decodes it: 2^(e-128) (half the format's 2^(e-127)); e < 2 gives
// float subnormals.
inline float e8m0_half(uint8_t e) {
  const uint32_t bits = e < 2 ? (0x00200000u << e) : (static_cast<uint32_t>(e - 1) << 23);
  return bits_f32(bits);
}

// Unsigned E4M3 as ggml decodes it (half the format's value); 0 and 0x7f (NaN) give 0.
inline float ue4m3_half(uint8_t x) {
  if (x == 0 || x == 0x7f) return 0.0f;
  const int exp = (x >> 3) & 0xf, man = x & 0x7;
  const float raw = exp == 0 ? std::ldexp(static_cast<float>(man), -9)
                             : std::ldexp(1.0f + static_cast<float>(man) / 8.0f, exp - 7);
  return raw * 0.5f;
}

// FP4 code of the value nearest to t (in doubled units): magnitude by thresholds halfway
// between 0,1,2,3,4,6,8,12 (ties to the smaller magnitude, as ggml), sign in bit 3; zero is
// always code 0.
inline uint8_t fp4_code(float t) {
  static constexpr float kMid[7] = {0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f};
  const float a = std::fabs(t);
  uint8_t m = 0;
  for (float mid : kMid) m += a > mid;
  return m == 0 ? 0 : static_cast<uint8_t>(m | (t < 0 ? 8 : 0));
}

// Weighted squared error of n weights coded at scale d (codes written to q).
double fp4_error(const float* x, const float* w, int n, float d, uint8_t* q) {
  double e = 0;
  const float inv = d > 0.0f ? 1.0f / d : 0.0f;
  for (int i = 0; i < n; ++i) {
    q[i] = d > 0.0f ? fp4_code(x[i] * inv) : 0;
    const float diff = x[i] - static_cast<float>(iq::kValuesMxfp4[q[i]]) * d;
    e += static_cast<double>(w[i]) * diff * diff;
  }
  return e;
}

// fp4_error for nc <= 8 candidate scales d[c] > 0 at once (errors only). Two kernels with
// the same arithmetic: the scalar loop above, and AVX2 with one candidate per lane (the
// nearest value found by the same threshold compares, the error accumulated in double in
// element order), so both pick the same scale.
using Fp4Errors = void (*)(const float* x, const float* w, int n, const float* d, int nc, double* err);

void fp4_errors_scalar(const float* x, const float* w, int n, const float* d, int nc, double* err) {
  uint8_t q[64];
  for (int c = 0; c < nc; ++c) err[c] = fp4_error(x, w, n, d[c], q);
}

#if defined(__x86_64__) || defined(__i386__)
[[gnu::target("avx2")]] void fp4_errors_avx2(const float* x, const float* w, int n, const float* d, int nc,
                                            double* err) {
  // Thresholds between the doubled magnitudes 0,1,2,3,4,6,8,12 and the step to the next one.
  static constexpr float kMid[7] = {0.5f, 1.5f, 2.5f, 3.5f, 5.0f, 7.0f, 10.0f};
  static constexpr float kStep[7] = {1, 1, 1, 1, 2, 2, 4};
  alignas(32) float dv[8], inv[8];
  for (int c = 0; c < 8; ++c) {
    dv[c] = d[c < nc ? c : nc - 1];
    inv[c] = 1.0f / dv[c];
  }
  const __m256 vd = _mm256_load_ps(dv), vinv = _mm256_load_ps(inv), sign = _mm256_set1_ps(-0.0f);
  __m256d e_lo = _mm256_setzero_pd(), e_hi = _mm256_setzero_pd();
  for (int i = 0; i < n; ++i) {
    const __m256 xv = _mm256_set1_ps(x[i]);
    const __m256 t = _mm256_mul_ps(xv, vinv);
    const __m256 a = _mm256_andnot_ps(sign, t);
    __m256 mag = _mm256_setzero_ps();
    for (int k = 0; k < 7; ++k)
      mag = _mm256_add_ps(mag, _mm256_and_ps(_mm256_cmp_ps(a, _mm256_set1_ps(kMid[k]), _CMP_GT_OQ), _mm256_set1_ps(kStep[k])));
    // Code value: -mag where t < 0 (mag = 0 stays a zero either way).
    const __m256 neg = _mm256_and_ps(_mm256_cmp_ps(t, _mm256_setzero_ps(), _CMP_LT_OQ), sign);
    const __m256 diff = _mm256_sub_ps(xv, _mm256_mul_ps(_mm256_xor_ps(mag, neg), vd));
    const __m256d wd = _mm256_set1_pd(static_cast<double>(w[i]));
    const __m256d dl = _mm256_cvtps_pd(_mm256_castps256_ps128(diff)), dh = _mm256_cvtps_pd(_mm256_extractf128_ps(diff, 1));
    e_lo = _mm256_add_pd(e_lo, _mm256_mul_pd(_mm256_mul_pd(wd, dl), dl));
    e_hi = _mm256_add_pd(e_hi, _mm256_mul_pd(_mm256_mul_pd(wd, dh), dh));
  }
  alignas(32) double e[8];
  _mm256_store_pd(e, e_lo);
  _mm256_store_pd(e + 4, e_hi);
  for (int c = 0; c < nc; ++c) err[c] = e[c];
}
Fp4Errors fast_fp4_errors() { return cpu::has_avx2() ? fp4_errors_avx2 : fp4_errors_scalar; }
#else
Fp4Errors fast_fp4_errors() { return fp4_errors_scalar; }
#endif

// Scale codes tried around the starting code (the error is not monotone in the scale,
// and the top value 12 of the largest weight is not always worth keeping unclipped).
constexpr int kMxfp4Span = 1;  // e0-1 .. e0+1
constexpr int kNvfp4Span = 3;  // u0-3 .. u0+3 (E4M3 steps are 1/8 octave)

}  // namespace

// ---- MXFP4 --------------------------------------------------------------------------------

namespace {
void quantize_mxfp4_with(Fp4Errors errors, std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  iq::encode_rows<BlockMXFP4, kQK>(src, dst, n_per_row, imatrix, [errors](const float* x, const float* qw, BlockMXFP4& b) {
    float w[kQK];
    iq::iq_weights({x, static_cast<size_t>(kQK)}, qw, {w, static_cast<size_t>(kQK)}, kMxfp4Weights);
    float amax = 0.0f;
    for (int i = 0; i < kQK; ++i) amax = std::max(amax, std::fabs(x[i]));
    uint8_t q[kQK] = {};
    b.e = 0;
    if (amax > 0.0f) {
      // ggml's exponent: 2^(e-128) * 8 <= amax < 2^(e-128) * 16.
      const int e0 = static_cast<int>(std::floor(std::log2(amax))) - 2 + 127;
      const int elo = std::max(0, e0 - kMxfp4Span), ehi = std::min(254, e0 + kMxfp4Span);
      float d[2 * kMxfp4Span + 1];
      double err[2 * kMxfp4Span + 1];
      for (int e = elo; e <= ehi; ++e) d[e - elo] = e8m0_half(static_cast<uint8_t>(e));
      errors(x, w, kQK, d, ehi - elo + 1, err);
      double best = std::numeric_limits<double>::max();
      for (int e = elo; e <= ehi; ++e)
        if (err[e - elo] < best) {
          best = err[e - elo];
          b.e = static_cast<uint8_t>(e);
        }
      if (best < std::numeric_limits<double>::max()) fp4_error(x, w, kQK, e8m0_half(b.e), q);
    }
    for (int j = 0; j < kQK / 2; ++j) b.qs[j] = static_cast<uint8_t>(q[j] | (q[j + kQK / 2] << 4));
  });
}
}  // namespace

void quantize_mxfp4_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                        std::span<const float> imatrix) {
  quantize_mxfp4_with(fp4_errors_scalar, src, dst, n_per_row, imatrix);
}
void quantize_mxfp4(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                    std::span<const float> imatrix) {
  quantize_mxfp4_with(fast_fp4_errors(), src, dst, n_per_row, imatrix);
}

void dequantize_mxfp4(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockMXFP4, kQK>(src, dst, [](const BlockMXFP4& b, float* y) {
    const float d = e8m0_half(b.e);
    for (int j = 0; j < kQK / 2; ++j) {
      y[j] = static_cast<float>(iq::kValuesMxfp4[b.qs[j] & 0x0f]) * d;
      y[j + kQK / 2] = static_cast<float>(iq::kValuesMxfp4[b.qs[j] >> 4]) * d;
    }
  });
}

// ---- NVFP4 --------------------------------------------------------------------------------

namespace {
void quantize_nvfp4_with(Fp4Errors errors, std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                         std::span<const float> imatrix) {
  constexpr int kN = 64, kSub = 16;
  // Decoded (halved) value of every finite non-zero E4M3 code 1..0x7e: increasing in the code.
  static const std::array<float, 127> kScale = [] {
    std::array<float, 127> t{};
    for (int u = 0; u < 127; ++u) t[u] = ue4m3_half(static_cast<uint8_t>(u));
    return t;
  }();
  iq::encode_rows<BlockNVFP4, kN>(src, dst, n_per_row, imatrix, [errors](const float* x, const float* qw, BlockNVFP4& b) {
    float w[kN];
    iq::iq_weights({x, static_cast<size_t>(kN)}, qw, {w, static_cast<size_t>(kN)}, kNvfp4Weights);
    for (int s = 0; s < kN / kSub; ++s) {
      const float* xs = x + kSub * s;
      const float* ws = w + kSub * s;
      float amax = 0.0f;
      for (int i = 0; i < kSub; ++i) amax = std::max(amax, std::fabs(xs[i]));
      uint8_t q[kSub] = {};
      b.d[s] = 0;
      if (amax > 0.0f) {
        // Start at the code whose scale maps amax closest to the top value 12.
        const float target = amax / 12.0f;
        const int u0 = static_cast<int>(std::lower_bound(kScale.begin() + 1, kScale.end(), target) - kScale.begin());
        const int ulo = std::max(1, u0 - kNvfp4Span), uhi = std::min(126, u0 + kNvfp4Span);
        double err[2 * kNvfp4Span + 1];
        errors(xs, ws, kSub, kScale.data() + ulo, uhi - ulo + 1, err);
        double best = std::numeric_limits<double>::max();
        for (int u = ulo; u <= uhi; ++u)
          if (err[u - ulo] < best) {
            best = err[u - ulo];
            b.d[s] = static_cast<uint8_t>(u);
          }
        if (b.d[s] != 0) fp4_error(xs, ws, kSub, kScale[b.d[s]], q);
      }
      for (int j = 0; j < kSub / 2; ++j) b.qs[8 * s + j] = static_cast<uint8_t>(q[j] | (q[j + kSub / 2] << 4));
    }
  });
}
}  // namespace

void quantize_nvfp4_ref(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                        std::span<const float> imatrix) {
  quantize_nvfp4_with(fp4_errors_scalar, src, dst, n_per_row, imatrix);
}
void quantize_nvfp4(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                    std::span<const float> imatrix) {
  quantize_nvfp4_with(fast_fp4_errors(), src, dst, n_per_row, imatrix);
}

void dequantize_nvfp4(std::span<const std::byte> src, std::span<float> dst) {
  iq::decode_rows<BlockNVFP4, 64>(src, dst, [](const BlockNVFP4& b, float* y) {
    for (int s = 0; s < 4; ++s) {
      const float d = ue4m3_half(b.d[s]);
      float* yb = y + 16 * s;
      for (int j = 0; j < 8; ++j) {
        yb[j] = static_cast<float>(iq::kValuesMxfp4[b.qs[8 * s + j] & 0x0f]) * d;
        yb[j + 8] = static_cast<float>(iq::kValuesMxfp4[b.qs[8 * s + j] >> 4]) * d;
      }
    }
  });
}

}  // namespace smolq::kernels
