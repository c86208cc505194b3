// Scale refit after the column sweep (ef_refit.h). With the levels fixed, element j of visiting
// block b decodes as  p_j + q_j  where p_j (its step times its level or table value) is
// proportional to the block's f16 scale d and q_j (the sub-block's offset) to its f16 min:
// rescaling d by a and the min by b gives  a p_j + b q_j.  Stacking those basis vectors as the
// columns of B (d_in x n, n = one or two per block), the row's error is
//   f(s) = (w - B s)^T H~ (w - B s),   minimised by  (B^T H~ B) s = B^T H~ w,
// an n x n system (n = d_in / 32 .. 2 d_in / 32). The solution is rounded to the fields' f16
// and kept only when the exact quadratic f(s') - f(1) is negative: the refit never raises the
// sweep's objective. The cost is one product H~ B per row (d_in^2 per basis kind).
#include "quantize/ef_refit.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "formats/half.h"
#include "quantize/registry.h"

namespace smolq::ef::detail {
namespace {

uint16_t get_f16(const std::byte* p) {
  uint16_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
void put_f16(std::byte* p, uint16_t v) { std::memcpy(p, &v, sizeof v); }

// The row's d-part p and min-part q, block by block in visiting order.
void decode_parts(const ScalarCodec* sc, GgmlType type, int be, int64_t nb, std::byte* const* blocks, float* p,
                  float* q, int block_bytes) {
  ElementGrid g[kQKK];
  int L[kQKK];
  for (int64_t b = 0; b < nb; ++b) {
    float* pb = p + b * be;
    float* qb = q + b * be;
    if (sc) {
      sc->unpack(blocks[b], g, L);
      for (int j = 0; j < be; ++j) {
        pb[j] = sc->table ? g[j].a * static_cast<float>(sc->table[L[j]]) : g[j].a * static_cast<float>(L[j]);
        qb[j] = g[j].b;
      }
    } else {  // lattice: every value is d times the codes' value
      dequantize_rows(type, {blocks[b], static_cast<size_t>(block_bytes)}, {pb, static_cast<size_t>(be)});
      std::fill(qb, qb + be, 0.0f);
    }
  }
}

// In place Cholesky solve of the SPD system N s = r (n x n, row-major); false if not SPD.
bool solve_spd(std::vector<double>& N, std::vector<double>& r, int n) {
  for (int j = 0; j < n; ++j) {
    double djj = N[j * n + j];
    for (int k = 0; k < j; ++k) djj -= N[j * n + k] * N[j * n + k];
    if (!(djj > 0.0)) return false;
    djj = std::sqrt(djj);
    N[j * n + j] = djj;
    for (int i = j + 1; i < n; ++i) {
      double v = N[i * n + j];
      for (int k = 0; k < j; ++k) v -= N[i * n + k] * N[j * n + k];
      N[i * n + j] = v / djj;
    }
  }
  for (int i = 0; i < n; ++i) {  // L y = r
    double v = r[i];
    for (int k = 0; k < i; ++k) v -= N[i * n + k] * r[k];
    r[i] = v / N[i * n + i];
  }
  for (int i = n - 1; i >= 0; --i) {  // L^T s = y
    double v = r[i];
    for (int k = i + 1; k < n; ++k) v -= N[k * n + i] * r[k];
    r[i] = v / N[i * n + i];
  }
  return true;
}

}  // namespace

bool refit_row(const Factor& f, const ScalarCodec* sc, const LatticeCodec* lc, GgmlType type, const float* w0,
               std::byte* const* blocks, RefitScratch& s) {
  const int64_t d = f.d_in;
  const int be = f.block_elems;
  const int64_t nb = d / be;
  const int d_off = sc ? sc->d_off : kLatticeDOff;
  const int m_off = sc ? sc->m_off : -1;
  s.p.resize(static_cast<size_t>(d));
  s.q.resize(static_cast<size_t>(d));
  decode_parts(sc, type, be, nb, blocks, s.p.data(), s.q.data(), sc ? sc->block_bytes : lc->block_bytes);
  // Unknowns: the d of every block with a nonzero d-part, the min of every block with a nonzero
  // min-part (a zero basis vector would make the system singular and has nothing to refit).
  s.col_block.clear();
  s.col_kind.clear();
  for (int64_t b = 0; b < nb; ++b)
    for (int kind = 0; kind < (m_off >= 0 ? 2 : 1); ++kind) {
      const float* v = (kind ? s.q.data() : s.p.data()) + b * be;
      bool any = false;
      for (int j = 0; j < be && !any; ++j) any = v[j] != 0.0f;
      if (!any || f16_to_f32(get_f16(blocks[b] + (kind ? m_off : d_off))) == 0.0f) continue;
      s.col_block.push_back(static_cast<int>(b));
      s.col_kind.push_back(kind);
    }
  const int n = static_cast<int>(s.col_block.size());
  if (n == 0) return false;
  // G = H~ B (d x n): entry (i, c) is row i of H~ over column c's block times its basis vector.
  s.G.resize(static_cast<size_t>(d * n));
  for (int64_t i = 0; i < d; ++i) {
    const float* hi = f.h.data() + i * d;
    float* gi = s.G.data() + i * n;
    for (int c = 0; c < n; ++c) {
      const int64_t off = static_cast<int64_t>(s.col_block[c]) * be;
      const float* v = (s.col_kind[c] ? s.q.data() : s.p.data()) + off;
      float acc = 0.0f;
      for (int j = 0; j < be; ++j) acc += hi[off + j] * v[j];
      gi[c] = acc;
    }
  }
  // N = B^T G, rhs = G^T w, and t = N 1 (the gradient term at the current scales).
  s.N.assign(static_cast<size_t>(n * n), 0.0);
  s.rhs.assign(static_cast<size_t>(n), 0.0);
  for (int c = 0; c < n; ++c) {
    const int64_t off = static_cast<int64_t>(s.col_block[c]) * be;
    const float* v = (s.col_kind[c] ? s.q.data() : s.p.data()) + off;
    for (int j = 0; j < be; ++j) {
      const float* gr = s.G.data() + (off + j) * n;
      const double vj = v[j];
      for (int c2 = 0; c2 < n; ++c2) s.N[c * n + c2] += vj * gr[c2];
    }
  }
  for (int64_t i = 0; i < d; ++i) {
    const float* gi = s.G.data() + i * n;
    const double wi = w0[i];
    for (int c = 0; c < n; ++c) s.rhs[c] += gi[c] * wi;
  }
  std::vector<double>& t = s.s;  // N 1, then reused for the solution's rounding deltas
  t.assign(static_cast<size_t>(n), 0.0);
  for (int c = 0; c < n; ++c)
    for (int c2 = 0; c2 < n; ++c2) t[c] += s.N[c * n + c2];
  // Symmetrise (float products) and keep a copy for the exact quadratic of the rounded scales.
  for (int c = 0; c < n; ++c)
    for (int c2 = 0; c2 < c; ++c2) s.N[c * n + c2] = s.N[c2 * n + c] = 0.5 * (s.N[c * n + c2] + s.N[c2 * n + c]);
  std::vector<double> N0 = s.N, g0(static_cast<size_t>(n)), sol = s.rhs;
  for (int c = 0; c < n; ++c) g0[c] = s.rhs[c] - t[c];  // -(gradient / 2) at s = 1
  if (!solve_spd(s.N, sol, n)) return false;
  // Round to the fields' f16; delta = s' - 1 per unknown.
  std::vector<uint16_t> nv(static_cast<size_t>(n));
  std::vector<double> delta(static_cast<size_t>(n));
  bool change = false;
  for (int c = 0; c < n; ++c) {
    const int off = s.col_kind[c] ? m_off : d_off;
    const uint16_t old = get_f16(blocks[s.col_block[c]] + off);
    const float ov = f16_to_f32(old);
    const uint16_t h = f32_to_f16(static_cast<float>(sol[c] * ov));
    const float hv = f16_to_f32(h);
    if (!std::isfinite(hv) || !std::isfinite(sol[c]) || hv == 0.0f) {
      nv[c] = old;
      delta[c] = 0.0;
      continue;
    }
    nv[c] = h;
    delta[c] = static_cast<double>(hv) / ov - 1.0;
    change |= h != old;
  }
  if (!change) return false;
  // f(1 + delta) - f(1) = -2 delta^T (rhs - N 1) + delta^T N delta.
  double df = 0.0;
  for (int c = 0; c < n; ++c) {
    double nd = 0.0;
    for (int c2 = 0; c2 < n; ++c2) nd += N0[c * n + c2] * delta[c2];
    df += delta[c] * (nd - 2.0 * g0[c]);
  }
  if (!(df < 0.0)) return false;
  for (int c = 0; c < n; ++c) put_f16(blocks[s.col_block[c]] + (s.col_kind[c] ? m_off : d_off), nv[c]);
  return true;
}

}  // namespace smolq::ef::detail
