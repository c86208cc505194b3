// Coordinate descent after the error-feedback sweep (ef_cd.h). Per chunk of rows: decode the
// sweep's blocks (bit-exact values), form the residuals R = (W^ - W) H~ with the sweep's
// blocked product kernel, then visit each row's elements (scalar families) or sign groups
// (lattice families) cyclically in visiting order, moving each to its best level given the rest
// when that lowers the damped objective, and updating the row's residual in place.
// Everything a row's result depends on is the row itself and H~: bytes never depend on the
// thread count.
#include "quantize/ef_cd.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "quantize/blocks.h"
#include "quantize/ef_linalg.h"
#include "quantize/registry.h"

namespace smolq::ef::detail {
namespace {

// Columns of H~ per call of the blocked residual product (the kernel takes row pointers).
constexpr int64_t kProductCols = 256;

// One row's decoded values w^ (visiting order) from its blocks.
void decode_row(const ScalarCodec* sc, const LatticeCodec* lc, GgmlType type, int be, int64_t nb,
                std::byte* const* blocks, float* y, ElementGrid* g, int* L) {
  for (int64_t b = 0; b < nb; ++b) {
    if (sc) {
      sc->unpack(blocks[b], g + b * be, L + b * be);
      for (int j = 0; j < be; ++j) y[b * be + j] = grid_value(g[b * be + j], sc->table, L[b * be + j]);
    } else {
      dequantize_rows(type, {blocks[b], static_cast<size_t>(lc->block_bytes)}, {y + b * be, static_cast<size_t>(be)});
    }
  }
}

// r += delta * (H~[k, :] + shift e_k): the residual after element k moved by delta.
inline void move_residual(const Factor& f, float* r, int64_t k, float delta) {
  linalg::axpy_update(r, f.h.data() + k * f.d_in, 0, f.d_in, -delta);
  r[k] += static_cast<float>(f.cd_shift) * delta;
}

// One pass over the elements of a row of a scalar family. Returns the accepted moves.
int64_t pass_scalar(const Factor& f, const ScalarCodec& sc, float* y, float* r, const ElementGrid* g, int* L,
                    uint8_t* dirty) {
  const int64_t d = f.d_in;
  const int be = sc.block_elems;
  int64_t moves = 0;
  for (int64_t k = 0; k < d; ++k) {
    const float hk = f.h[k * d + k] + static_cast<float>(f.cd_shift);
    if (!(hk > 0.0f) || g[k].a == 0.0f) continue;
    const int l = nearest_level(g[k], sc.table, y[k] - r[k] / hk);
    if (l == L[k]) continue;
    const float v = grid_value(g[k], sc.table, l), delta = v - y[k];
    if (!(delta * (2.0f * r[k] + delta * hk) < 0.0f)) continue;
    move_residual(f, r, k, delta);
    y[k] = v;
    L[k] = l;
    dirty[k / be] = 1;
    ++moves;
  }
  return moves;
}

// The sub-block scale step of a row (scalar families with integer sub-block scales): for every
// sub-block, the codes one step away (scale +-1, min +-1) with the sub-block's levels re-rounded
// to each element's coordinate optimum w^_k - r_k / H~_kk under the new grid; the best by the
// exact change of the objective over the sub-block (its block of H~) is taken when it lowers it.
int64_t scale_step(const Factor& f, const ScalarCodec& sc, const SubScaleCodec& ss, std::byte* const* blocks,
                   float* y, float* r, ElementGrid* g, int* L, uint8_t* dirty) {
  const int64_t d = f.d_in;
  const int be = sc.block_elems, se = ss.sub_elems;
  const float shift = static_cast<float>(f.cd_shift);
  int64_t moves = 0;
  int best_L[32];
  float best_v[32];
  double delta[32];
  for (int64_t b = 0; b * be < d; ++b) {
    for (int s = 0; s < ss.n_sub; ++s) {
      const int64_t k0 = b * be + static_cast<int64_t>(s) * se;
      int sc0, m0;
      ss.get(blocks[b], s, sc0, m0);
      const int cand[4][2] = {{sc0 - 1, m0}, {sc0 + 1, m0}, {sc0, m0 - 1}, {sc0, m0 + 1}};
      double best = 0.0;
      int best_c = -1;
      for (int ci = 0; ci < 4; ++ci) {
        const int c = cand[ci][0], m = cand[ci][1];
        if (c < ss.sc_lo || c > ss.sc_hi || (ci >= 2 && (ss.m_hi < ss.m_lo || m < ss.m_lo || m > ss.m_hi))) continue;
        ElementGrid gj = g[k0];  // lo, hi
        ss.grid(blocks[b], c, m, gj.a, gj.b);
        int lv[32];
        float v[32];
        for (int j = 0; j < se; ++j) {
          const int64_t k = k0 + j;
          const float hk = f.h[k * d + k] + shift;
          lv[j] = hk > 0.0f && gj.a != 0.0f ? nearest_level(gj, sc.table, y[k] - r[k] / hk) : L[k];
          if (gj.a == 0.0f) lv[j] = L[k];
          v[j] = grid_value(gj, sc.table, lv[j]);
          delta[j] = static_cast<double>(v[j]) - y[k];
        }
        double ch = 0.0;
        for (int i = 0; i < se; ++i) {
          if (delta[i] == 0.0) continue;
          const float* hi = f.h.data() + (k0 + i) * d + k0;
          double hd = shift * delta[i];
          for (int j = 0; j < se; ++j) hd += static_cast<double>(hi[j]) * delta[j];
          ch += delta[i] * (2.0 * r[k0 + i] + hd);
        }
        if (ch < best) {
          best = ch;
          best_c = ci;
          std::copy(lv, lv + se, best_L);
          std::copy(v, v + se, best_v);
        }
      }
      if (best_c < 0) continue;
      ss.set(blocks[b], s, cand[best_c][0], cand[best_c][1]);
      ElementGrid gn = g[k0];  // the sub-block's new grid (its levels are written at the end)
      ss.grid(blocks[b], cand[best_c][0], cand[best_c][1], gn.a, gn.b);
      for (int j = 0; j < se; ++j) {
        const int64_t k = k0 + j;
        g[k] = gn;
        L[k] = best_L[j];
        const float dv = best_v[j] - y[k];
        if (dv != 0.0f) move_residual(f, r, k, dv);
        y[k] = best_v[j];
      }
      dirty[b] = 1;
      ++moves;
    }
  }
  return moves;
}

// The 8 x 8 block of H~ (with the shift) at columns k .. k + 8, its Cholesky factor, and
// solutions of H_gg z = v.
struct GroupGram {
  double h[8][8], c[8][8];
  bool ok = true;
  GroupGram(const Factor& f, int64_t k) {
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j)
        h[i][j] = static_cast<double>(f.h[(k + i) * f.d_in + k + j]) + (i == j ? f.cd_shift : 0.0);
    for (int j = 0; j < 8 && ok; ++j) {
      double v = h[j][j];
      for (int m = 0; m < j; ++m) v -= c[j][m] * c[j][m];
      if (!(v > 0.0)) ok = false;
      c[j][j] = std::sqrt(v);
      for (int i = j + 1; i < 8; ++i) {
        double u = h[i][j];
        for (int m = 0; m < j; ++m) u -= c[i][m] * c[j][m];
        c[i][j] = u / c[j][j];
      }
    }
  }
  void solve(const double* v, double* z) const {
    double t[8];
    for (int i = 0; i < 8; ++i) {
      double u = v[i];
      for (int m = 0; m < i; ++m) u -= c[i][m] * t[m];
      t[i] = u / c[i][i];
    }
    for (int i = 7; i >= 0; --i) {
      double u = t[i];
      for (int m = i + 1; m < 8; ++m) u -= c[m][i] * z[m];
      z[i] = u / c[i][i];
    }
  }
  // Change of the objective when the group moves by delta, with residual r at the group.
  double change(const double* delta, const float* r) const {
    double s = 0.0;
    for (int i = 0; i < 8; ++i) {
      double hd = 0.0;
      for (int j = 0; j < 8; ++j) hd += h[i][j] * delta[j];
      s += delta[i] * (2.0 * r[i] + hd);
    }
    return s;
  }
};

// One pass over the sign groups of a row of a lattice family: for each group the unconstrained
// optimum x* = w^_g - H_gg^-1 r_g, re-coded at the sub-block's fixed scale with two diagonal
// weightings (diag H_gg, and the conditional precisions 1 / diag(H_gg^-1)); the better code by
// the exact change of the objective is taken when it lowers it.
int64_t pass_lattice(const Factor& f, const LatticeCodec& lc, float* y, float* r, iq::ScaledLatticeCodes* codes,
                     uint8_t* dirty) {
  const int64_t d = f.d_in;
  const int be = lc.block_elems, gs = lc.group;
  int64_t moves = 0;
  LatticeState st;
  std::byte blk[512];
  float dec[kQKK];
  for (int64_t b = 0; b * be < d; ++b) {
    st.codes = codes[b];
    for (int g = 0; g < be / gs; ++g) {
      const int64_t k = b * be + static_cast<int64_t>(g) * gs;
      const GroupGram gg(f, k);
      if (!gg.ok) continue;
      double rv[8], z[8], inv_diag[8];
      float x[8], w_h[8], w_c[8], yt[8], best_y[8];
      for (int i = 0; i < 8; ++i) rv[i] = r[k + i];
      gg.solve(rv, z);
      for (int i = 0; i < 8; ++i) {
        x[i] = static_cast<float>(y[k + i] - z[i]);
        w_h[i] = static_cast<float>(gg.h[i][i]);
        double e[8] = {}, col[8];
        e[i] = 1.0;
        gg.solve(e, col);
        inv_diag[i] = col[i];
        w_c[i] = static_cast<float>(1.0 / inv_diag[i]);
      }
      const iq::ScaledLatticeCodes keep = st.codes;
      iq::ScaledLatticeCodes best_codes = keep;
      double best = 0.0;
      for (const float* wt : {static_cast<const float*>(w_h), static_cast<const float*>(w_c)}) {
        st.codes = keep;
        if (!lc.recode(st, g, x, wt, yt)) break;
        double delta[8];
        for (int i = 0; i < 8; ++i) delta[i] = static_cast<double>(yt[i]) - y[k + i];
        const double c = gg.change(delta, r + k);
        if (c < best) {
          best = c;
          best_codes = st.codes;
          std::copy(yt, yt + 8, best_y);
        }
      }
      st.codes = best_codes;
      if (!(best < 0.0)) continue;
      // The values the block now decodes to (bit-exact with the decoder) drive the residual.
      lc.pack(st, blk);
      dequantize_rows(lc.type, {blk, static_cast<size_t>(lc.block_bytes)}, {dec, static_cast<size_t>(be)});
      std::copy(dec + g * gs, dec + g * gs + gs, best_y);
      for (int i = 0; i < 8; ++i) {
        const float delta = best_y[i] - y[k + i];
        if (delta == 0.0f) continue;
        move_residual(f, r, k + i, delta);
        y[k + i] = best_y[i];
      }
      dirty[b] = 1;
      ++moves;
    }
    codes[b] = st.codes;
  }
  return moves;
}

}  // namespace

int64_t cd_rows(const Factor& f, const ScalarCodec* sc, const LatticeCodec* lc, GgmlType type, const float* W0,
                int64_t nr, std::byte* const* blocks, CdScratch& s) {
  const int64_t d = f.d_in;
  const int be = f.block_elems;
  const int64_t nb = d / be;
  s.D.resize(static_cast<size_t>(nr * d));
  s.R.assign(static_cast<size_t>(nr * d), 0.0f);
  s.y.resize(static_cast<size_t>(d));
  s.grid.resize(static_cast<size_t>(d));
  s.level.resize(static_cast<size_t>(d));
  // D = W - W^, then R = -D H~ = (W^ - W) H~ (H~ is symmetric), plus the shift's diagonal.
  for (int64_t r = 0; r < nr; ++r) {
    decode_row(sc, lc, type, be, nb, blocks + r * nb, s.y.data(), s.grid.data(), s.level.data());
    for (int64_t k = 0; k < d; ++k) s.D[r * d + k] = W0[r * d + k] - s.y[k];
  }
  const float* hrows[kProductCols];
  for (int64_t k0 = 0; k0 < d; k0 += kProductCols) {
    const int64_t nk = std::min(kProductCols, d - k0);
    for (int64_t k = 0; k < nk; ++k) hrows[k] = f.h.data() + (k0 + k) * d;
    linalg::deferred_update(s.R.data(), nr, d, 0, s.D.data() + k0, d, nk, hrows);
  }
  if (f.cd_shift != 0.0)
    for (int64_t i = 0; i < nr * d; ++i) s.R[i] -= static_cast<float>(f.cd_shift) * s.D[i];
  const SubScaleCodec* ss = sc && f.cd_scales ? subscale_codec(type) : nullptr;
  int64_t moves = 0;
  std::vector<uint8_t> dirty_store(static_cast<size_t>(nb));
  uint8_t* dirty = dirty_store.data();
  LatticeState pk;
  for (int64_t r = 0; r < nr; ++r) {
    std::byte* const* rb = blocks + r * nb;
    decode_row(sc, lc, type, be, nb, rb, s.y.data(), s.grid.data(), s.level.data());
    std::fill(dirty, dirty + nb, uint8_t{0});
    float* res = s.R.data() + r * d;
    for (int it = 0; it < f.cd_iters; ++it) {
      int64_t m = 0;
      if (sc && ss)
        m += scale_step(f, *sc, *ss, rb, s.y.data(), res, s.grid.data(), s.level.data(), dirty);
      m += sc ? pass_scalar(f, *sc, s.y.data(), res, s.grid.data(), s.level.data(), dirty)
              : pass_lattice(f, *lc, s.y.data(), res, s.codes.data() + r * nb, dirty);
      moves += m;
      if (m == 0) break;
    }
    for (int64_t b = 0; b < nb; ++b) {
      if (!dirty[b]) continue;
      if (sc)
        sc->pack(rb[b], s.level.data() + b * be);
      else {
        pk.codes = s.codes[r * nb + b];
        lc->pack(pk, rb[b]);
      }
    }
  }
  return moves;
}

}  // namespace smolq::ef::detail
