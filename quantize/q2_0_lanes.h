// Q2_0's block search (quantize/ternary.cpp), written once for any lane width: the scalar
// reference (ternary.cpp, one lane) and the AVX2 / AVX-512 forms (ternary_avx2.cpp,
// ternary_avx512.cpp, compiled for their instruction set with this header included under the
// target pragma) are instantiations of the same templates and write the same bytes.
// Internal to those three files; every one of them is built with -ffp-contract=off (see
// CMakeLists.txt) so no compiler fuses a multiply and an add in one and not in another.
#pragma once
#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <span>

#include "quantize/blocks.h"
#include "quantize/iq_lattice.h"

namespace smolq::kernels::q2_0 {
// Internal linkage: each including file gets its own copy, compiled for its instruction set.
namespace {

// Q2_0: levels {-1, 0, 1, 2} * d. The largest weight goes to level 2 (same sign as d) or to
// level -1 (d of the opposite sign), at a fan of fractions of that level; each start is
// refitted (least squares) kRefine times; the least weighted error wins. Four levels leave
// more freedom than the ternary ones: the lattice types' importance profile works.
inline constexpr iq::WeightProfile kWeights = iq::kLatticeWeights;
constexpr float kTrials[] = {1.0f, 0.9f, 0.8f, 0.7f, 0.6f, 0.5f};
constexpr int kRefine = 2;
constexpr int kN = 64;

// The Q2_0 search runs on L blocks at once, lane j = block j, every lane doing the scalar
// reference's float operations in the reference's order, so the bytes never depend on L or on
// the CPU. The per-element loops are Kernels<V, G>: G registers of V's width side by side
// (G independent accumulation chains) on blocks stored transposed (xT[i * L + j] = element i
// of block j). V is a float (the reference: one lane), an AVX2 or an AVX-512 register; each V
// operation is one IEEE operation per lane; min/max follow the x86 rule (a < b ? a : b: the
// second operand when either is NaN), so the lanes agree even on a NaN.
struct ScalarV {
  using T = float;
  static constexpr int kWidth = 1;
  static T load(const float* p) { return *p; }
  static void store(float* p, T v) { *p = v; }
  static T set1(float v) { return v; }
  static T add(T a, T b) { return a + b; }
  static T mul(T a, T b) { return a * b; }
  static T div(T a, T b) { return a / b; }
  static T sqrt(T a) { return std::sqrt(a); }
  static T floor(T a) { return std::floor(a); }
  static T min(T a, T b) { return a < b ? a : b; }
  static T max(T a, T b) { return a > b ? a : b; }
  static T abs(T a) { return std::fabs(a); }
  static T select_gt(T a, T b, T yes, T no) { return a > b ? yes : no; }
  static T sub(T a, T b) { return a - b; }
  static T fmadd(T a, T b, T c) { return a * b + c; }  // two roundings (-ffp-contract=off)
  using M = bool;
  static M gt(T a, T b) { return a > b; }
  static M lt(T a, T b) { return a < b; }
  static M neq(T a, T b) { return a != b; }
  static M mand(M a, M b) { return a && b; }
  static T blend(M m, T yes, T no) { return m ? yes : no; }
  static bool any(M m) { return m; }
  static void store_int(int32_t* p, T v) { *p = static_cast<int32_t>(v); }
};

template <class V, int G>
struct Kernels {
  static constexpr int W = V::kWidth, kLanes = W * G;
  using T = typename V::T;
  using M = typename V::M;

  // plain (no imatrix): w_i = sqrt(sqrt(sigma2 + x_i^2)), sigma2 = 2 sum x^2 / 64 (summed in
  // order): iq_weights' arithmetic for kWeights; otherwise w holds iq_weights' result. Then
  // wx_i = w_i x_i, amax = the largest |x_i| and max = that x_i (its first occurrence).
  static void prepare(const float* x, float* w, float* wx, bool plain, float* amax, float* max) {
    T am[G], mx[G], s2[G];
    for (int g = 0; g < G; ++g) am[g] = mx[g] = s2[g] = V::set1(0.0f);
    if (plain) {
      for (int i = 0; i < kN; ++i)
        for (int g = 0; g < G; ++g) {
          const T v = V::load(x + i * kLanes + g * W);
          s2[g] = V::add(s2[g], V::mul(v, v));
        }
      for (int g = 0; g < G; ++g) s2[g] = V::div(V::mul(V::set1(2.0f), s2[g]), V::set1(static_cast<float>(kN)));
      for (int i = 0; i < kN; ++i)
        for (int g = 0; g < G; ++g) {
          const T v = V::load(x + i * kLanes + g * W);
          V::store(w + i * kLanes + g * W, V::sqrt(V::sqrt(V::add(s2[g], V::mul(v, v)))));
        }
    }
    for (int i = 0; i < kN; ++i)
      for (int g = 0; g < G; ++g) {
        const int o = i * kLanes + g * W;
        const T v = V::load(x + o), a = V::abs(v);
        V::store(wx + o, V::mul(V::load(w + o), v));
        mx[g] = V::select_gt(a, am[g], v, mx[g]);
        am[g] = V::select_gt(a, am[g], a, am[g]);
      }
    for (int g = 0; g < G; ++g) {
      V::store(amax + g * W, am[g]);
      V::store(max + g * W, mx[g]);
    }
  }

  // The candidate search, per lane exactly the reference's scalar steps: every start
  // d = max / (end f); then kRefine + 1 times: codes v_i = round(x_i / d) clamped to -1..2
  // (as floor(x_i * (1/d) + 1/2)), P = sum (w_i x_i) v_i and Q = sum (w_i v_i) v_i in order
  // i = 0..63, error e = d (d Q - 2 P) (kept if below the best so far), then the least-squares
  // refit d = P / Q, stopping a lane when Q <= 0 or P == 0, or when the refit returns d
  // itself (the remaining steps would repeat this one: same codes, same error, not better). The products (w x) v and (w v) v
  // are exact (v is -1, 0, 1 or 2), so V::fmadd (an FMA where the register has one) rounds
  // each sum exactly as the reference's multiply-then-add does.
  static void search(const float* x, const float* wx, const float* w, const float* amax, const float* max,
                     float* best) {
    const T half = V::set1(0.5f), two = V::set1(2.0f), m1 = V::set1(-1.0f), zero = V::set1(0.0f);
    T bd[G], be[G], am[G], mx[G];
    for (int g = 0; g < G; ++g) {
      bd[g] = be[g] = zero;
      am[g] = V::load(amax + g * W);
      mx[g] = V::load(max + g * W);
    }
    for (float end : {2.0f, -1.0f})
      for (float f : kTrials) {
        const T div = V::set1(end * f);
        T d[G];
        M live[G];
        bool any = false;
        for (int g = 0; g < G; ++g) {
          live[g] = V::gt(am[g], V::set1(1e-30f));
          d[g] = V::blend(live[g], V::div(mx[g], div), V::set1(1.0f));
          any = any || V::any(live[g]);
        }
        for (int it = 0; it <= kRefine && any; ++it) {
          T in[G], p[G], q[G];
          for (int g = 0; g < G; ++g) {
            in[g] = V::blend(live[g], V::div(V::set1(1.0f), d[g]), zero);
            p[g] = q[g] = zero;
          }
          for (int i = 0; i < kN; ++i)
            for (int g = 0; g < G; ++g) {
              const int o = i * kLanes + g * W;
              const T v = V::max(V::min(V::floor(V::add(V::mul(V::load(x + o), in[g]), half)), two), m1);
              p[g] = V::fmadd(V::load(wx + o), v, p[g]);
              q[g] = V::fmadd(V::mul(V::load(w + o), v), v, q[g]);
            }
          any = false;
          for (int g = 0; g < G; ++g) {
            const T e = V::mul(d[g], V::sub(V::mul(d[g], q[g]), V::mul(V::set1(2.0f), p[g])));
            const M better = V::mand(live[g], V::lt(e, be[g]));
            be[g] = V::blend(better, e, be[g]);
            bd[g] = V::blend(better, d[g], bd[g]);
            live[g] = V::mand(live[g], V::mand(V::gt(q[g], zero), V::neq(p[g], zero)));
            const T refit = V::div(p[g], q[g]);
            live[g] = V::mand(live[g], V::neq(refit, d[g]));  // a fixed point repeats itself: done
            d[g] = V::blend(live[g], refit, d[g]);
            any = any || V::any(live[g]);
          }
        }
      }
    for (int g = 0; g < G; ++g) V::store(best + g * W, bd[g]);
  }

  // The stored bytes for nonzero scales d: code_i = round(x_i / d) clamped to -1..2, + 1 and byte k =
  // code_4k + 4 code_4k+1 + 16 code_4k+2 + 64 code_4k+3 (exact in floats), into
  // bytes[k * L + j].
  static void codes(const float* x, const float* d, int32_t* bytes) {
    const T half = V::set1(0.5f), two = V::set1(2.0f), m1 = V::set1(-1.0f), one = V::set1(1.0f), four = V::set1(4.0f);
    T dv[G];
    for (int g = 0; g < G; ++g) dv[g] = V::load(d + g * W);
    for (int k = 0; k < kN / 4; ++k)
      for (int g = 0; g < G; ++g) {
        T byte = V::set1(0.0f);
        for (int e = 3; e >= 0; --e) {
          const T t = V::div(V::load(x + (4 * k + e) * kLanes + g * W), dv[g]);
          byte = V::add(V::mul(byte, four), V::add(V::max(V::min(V::floor(V::add(t, half)), two), m1), one));
        }
        V::store_int(bytes + k * kLanes + g * W, byte);
      }
  }
};

// Blocks b0 .. b0 + L - 1 of src (the ones past nb are copies of the last block, their
// results dropped) into dst. qw of block b: imatrix + (b % per_row) * 64, or none.
template <class K>
void encode_lanes(const float* src, size_t b0, size_t nb, size_t per_row, const float* imatrix, BlockQ2_0* dst) {
  constexpr int L = K::kLanes;
  static_assert(kWeights.magnitude_plain == 0.25f, "Kernels::prepare takes sqrt(sqrt(.)) as the magnitude");
  alignas(64) float xT[kN * L], wxT[kN * L], wT[kN * L];
  alignas(64) float amax[L], max[L];
  for (int j = 0; j < L; ++j) {
    const size_t b = std::min(b0 + static_cast<size_t>(j), nb - 1);
    const float* x = src + b * kN;
    for (int i = 0; i < kN; ++i) xT[i * L + j] = x[i];
    if (imatrix) {
      float w[kN];
      iq::iq_weights({x, static_cast<size_t>(kN)}, imatrix + (b % per_row) * kN, {w, static_cast<size_t>(kN)},
                     kWeights);
      for (int i = 0; i < kN; ++i) wT[i * L + j] = w[i];
    }
  }
  K::prepare(xT, wT, wxT, imatrix == nullptr, amax, max);
  float best_d[L];
  K::search(xT, wxT, wT, amax, max, best_d);
  alignas(64) float dq[L];
  for (int j = 0; j < L; ++j) {
    const iq::HalfScale hd = iq::round_half(best_d[j]);
    dst[j].d = hd.bits;
    best_d[j] = hd.value;
    dq[j] = hd.value != 0.0f ? hd.value : 1.0f;  // a zero scale codes every weight as 0 (code 1)
  }
  alignas(64) int32_t bytes[kN / 4 * L];
  K::codes(xT, dq, bytes);
  for (int j = 0; j < L; ++j)
    for (int k = 0; k < kN / 4; ++k) dst[j].qs[k] = best_d[j] != 0.0f ? static_cast<uint8_t>(bytes[k * L + j]) : 0x55;
}

template <class K>
void quantize_t(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                std::span<const float> imatrix) {
  assert(n_per_row > 0 && n_per_row % kN == 0 && src.size() % static_cast<size_t>(n_per_row) == 0);
  assert(imatrix.empty() || imatrix.size() == static_cast<size_t>(n_per_row));
  const size_t nb = src.size() / kN, per_row = static_cast<size_t>(n_per_row) / kN;
  assert(dst.size() == nb * sizeof(BlockQ2_0));
  const float* im = imatrix.empty() ? nullptr : imatrix.data();
  for (size_t b0 = 0; b0 < nb; b0 += K::kLanes) {
    BlockQ2_0 out[K::kLanes];
    encode_lanes<K>(src.data(), b0, nb, per_row, im, out);
    std::memcpy(dst.data() + b0 * sizeof(BlockQ2_0), out, std::min<size_t>(K::kLanes, nb - b0) * sizeof(BlockQ2_0));
  }
}


}  // namespace

// The AVX2 (16 blocks per call) and AVX-512 (32) instantiations.
void quantize_avx2(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                   std::span<const float> imatrix);
void quantize_avx512(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                     std::span<const float> imatrix);

}  // namespace smolq::kernels::q2_0
