// The error-feedback quantizer's driver: the factorisation of H (prepare) and the column sweep.
// The method, in short (docs/optimize.md has the long form):
//
//   Let H~ = H + damp * mean(diag H) * I in the visiting order of the columns, and U the upper
//   Cholesky factor of its inverse (H~^-1 = U^T U). For a row w, visiting columns k = 0, 1, ...:
//     - at the first column of a block, choose the block's scales with the plain kernel's search
//       on the block's current values w[block];
//     - round w[k] on the block's fixed grid to q[k] and set e = (w[k] - q[k]) / U[k][k];
//     - w[j] -= e * U[k][j] for every j > k (the columns not yet rounded).
//   This is GPTQ's update (Frantar et al. 2023): it is the exact optimal compensation of the
//   error of column k in sum (w - w^)^T H~ (w - w^) over the remaining free columns.
//
// Lazy batches: the update of the columns after the current batch is deferred and applied for
// the whole batch and a chunk of rows at once (a small matrix product); inside a batch it is
// applied per column. Rows are independent given U: chunks of row_chunk(d_in) rows run in parallel and
// each writes its own rows, so bytes never depend on the thread count.
#include "quantize/error_feedback.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>
#include <string>

#include "formats/error.h"
#include "quantize/blocks.h"
#include "quantize/ef_cd.h"
#include "quantize/ef_codec.h"
#include "quantize/ef_linalg.h"
#include "quantize/ef_refit.h"
#include "quantize/quants_legacy_k.h"
#include "quantize/registry.h"

namespace smolq::ef {
namespace {

using detail::ElementGrid;
using detail::LatticeCodec;
using detail::ScalarCodec;

// Rows per parallel work item: the deferred update streams a batch's rows of U once per chunk,
// so more rows per chunk mean less memory traffic (U is 2 d_in^2 bytes: at d_in = 8192 it does
// not stay in any cache), fewer mean better balance on small tensors. Measured at 2048 x 8192
// (Q4_K, 2 threads, CPU seconds of the sweep): 16 rows 5.3 s, 32 rows 3.8 s, 64 rows 3.0 s.
// The chunking never changes the bytes (rows are independent).
constexpr int64_t kRowChunk = 128;
int64_t row_chunk(int64_t d_in) { return d_in >= 4096 ? kRowChunk : kRowChunk / 4; }
// Columns per lazy batch: one K-quant super-block, a multiple of every block size (a block never
// straddles two batches).
constexpr int64_t kBatch = 256;
// Below this d_in the factorisation runs on one thread: its tile steps are too small to pay for
// the parallel regions' barriers (measured at d_in = 1536 on a shared 2-core machine: 0.46 s on
// one thread, 0.7-3 s on two).
constexpr int64_t kParallelFactorMin = 2048;

// Visiting order of the blocks: natural, or by descending sum of diag(H) over the block (stable).
std::vector<int32_t> block_order(std::span<const double> diag, int64_t d, int be, ColumnOrder order) {
  const int64_t nb = d / be;
  std::vector<int32_t> ord(static_cast<size_t>(nb));
  std::iota(ord.begin(), ord.end(), 0);
  if (order == ColumnOrder::kNatural) return ord;
  std::vector<double> imp(static_cast<size_t>(nb), 0.0);
  for (int64_t c = 0; c < d; ++c) imp[c / be] += diag[c];
  std::stable_sort(ord.begin(), ord.end(), [&](int32_t a, int32_t b) { return imp[a] > imp[b]; });
  return ord;
}

// For the scale refit (ef_refit.h): H~ in visiting order (position a is the permuted, reversed
// index d - 1 - a), and whether any off-diagonal entry is nonzero. A: the damped, permuted
// float matrix the factorisation is about to work in.
void keep_refit_gram(const float* A, int64_t d, Factor& f, int n_threads) {
  f.h.resize(static_cast<size_t>(d * d));
  bool coupled = false;
#pragma omp parallel for num_threads(n_threads) schedule(static) reduction(|| : coupled)
  for (int64_t a = 0; a < d; ++a) {
    const float* src = A + (d - 1 - a) * d;
    float* dst = f.h.data() + a * d;
    for (int64_t b = 0; b < d; ++b) {
      dst[b] = src[d - 1 - b];
      coupled = coupled || (a != b && src[d - 1 - b] != 0.0f);
    }
  }
  f.coupled = coupled;
}

// Inside the batch: after column k's error e, w[k+1 .. c1) -= e * U[k][k+1 .. c1).
inline void batch_update(float* w, const float* uk, int64_t k, int64_t c1, float e) {
  linalg::axpy_update(w, uk, k + 1, c1, e);
}

struct TensorJob {
  const ScalarCodec* scalar;  // exactly one of scalar / lattice
  const LatticeCodec* lattice;
  int be;                     // block elements
  int64_t d, row_bytes;
  const Factor* f;
  const float* imatrix;       // d entries or nullptr
  GgmlType type;
};

// One block of one row with a scalar codec, visiting columns [c, c + be) of the batch that ends
// at c1: scales from the current values, then every column rounded on the fixed grid, its error
// fed forward inside the batch and recorded in E (indexed from the batch start c0). A column
// whose value has not moved since the scales were chosen keeps the level the search picked
// together with them (with a diagonal H nothing moves and the block is the plain kernel's).
void sweep_block_scalar(const TensorJob& job, float* w, int64_t c, int64_t c0, int64_t c1, float sigma2,
                        std::byte* blk, float* E, bool fixed) {
  const ScalarCodec& sc = *job.scalar;
  const int be = job.be;
  const int64_t ob = job.f->order[c / be];
  const float* imat = job.imatrix ? job.imatrix + ob * be : nullptr;
  float x0[kQKK];
  ElementGrid g[kQKK];
  int L[kQKK];
  std::memcpy(x0, w + c, sizeof(float) * be);
  if (fixed)  // a re-sweep: the block keeps its (refitted) scales and every level is re-rounded
    std::fill(x0, x0 + be, std::nanf(""));
  else
    sc.choose(x0, imat, sigma2, blk);
  sc.unpack(blk, g, L);
  bool moved = false;
  for (int j = 0; j < be; ++j) {
    const int64_t k = c + j;
    const float v = w[k];
    if (v != x0[j] && g[j].a != 0.0f) {
      L[j] = detail::nearest_level(g[j], sc.table, v);
      moved = true;
    }
    const float q = detail::grid_value(g[j], sc.table, L[j]);
    const float* uk = job.f->row(k);
    const float e = (v - q) / uk[k];
    E[k - c0] = e;
    batch_update(w, uk, k, c1, e);
  }
  if (moved) sc.pack(blk, L);
}

// The OBQ metric of a lattice group (visiting columns k .. k + 8): with the columns from k on
// still free, rounding the group to y raises the damped error by  e^T (M^T M)^-1 e,  e = x - y,
// M the 8 x 8 diagonal block of U at k (its rows restricted to the group: U is upper, so the
// inverse of H~ over the free columns, U^T U there, has M^T M as its group block). cost(e) =
// |M^-T e|^2 by forward substitution; precision_and_l() gives the diagonal of (M^T M)^-1 as
// per-element weights for the codebook search, and M^-T for the full search.
struct GroupMetric {
  float m[8][8];  // M[i][j] = U[k + i][k + j], j >= i
  explicit GroupMetric(const Factor& f, int64_t k) {
    for (int i = 0; i < 8; ++i) {
      const float* ui = f.row(k + i);
      for (int j = 0; j < 8; ++j) m[i][j] = j >= i ? ui[k + j] : 0.0f;
    }
  }
  double cost(const float* x, const float* y) const {  // |z|^2 with M^T z = x - y
    double z[8], c = 0.0;
    for (int i = 0; i < 8; ++i) {
      double v = static_cast<double>(x[i]) - y[i];
      for (int j = 0; j < i; ++j) v -= static_cast<double>(m[j][i]) * z[j];
      z[i] = v / m[i][i];
      c += z[i] * z[i];
    }
    return c;
  }
  // inv = M^-1 (upper triangular), by column-wise back substitution of M inv = I.
  void inverse(double inv[8][8]) const {
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) inv[i][j] = 0.0;
    for (int j = 7; j >= 0; --j) {
      inv[j][j] = 1.0 / m[j][j];
      for (int i = j - 1; i >= 0; --i) {
        double v = 0.0;
        for (int l = i + 1; l <= j; ++l) v += static_cast<double>(m[i][l]) * inv[l][j];
        inv[i][j] = -v / m[i][i];
      }
    }
  }
  // diag((M^T M)^-1) = row sums of squares of M^-1, and L = M^-T row-major (cost = |L e|^2).
  void precision_and_l(float* w, float* lt) const {
    double inv[8][8];
    inverse(inv);
    for (int i = 0; i < 8; ++i) {
      double s = 0.0;
      for (int j = i; j < 8; ++j) s += inv[i][j] * inv[i][j];
      w[i] = static_cast<float>(s);
      for (int j = 0; j < 8; ++j) lt[i * 8 + j] = j <= i ? static_cast<float>(inv[j][i]) : 0.0f;
    }
  }
};

// Sub-block sb's scale code re-chosen at its first column, against the weights as updated so
// far (Settings::lattice_scales): for every scale code the sub-block's groups are coded in turn
// (the re-code with the conditional precisions as weights) with the errors of each fed forward
// inside the sub-block as the sweep does, and the code whose summed OBQ group costs (the exact
// rise of the damped error through the sub-block) are lowest wins; ties keep the search's code.
// The groups' codes are restored; y (the sub-block's decoded values) is re-decoded at the new
// scale. Returns whether the code changed.
bool choose_sub_scale(const TensorJob& job, const float* w, int64_t c, int g0, detail::LatticeState& st, float* y) {
  const LatticeCodec& lc = *job.lattice;
  const iq::ScaledLatticeSpec& spec = *lc.spec;
  const int sub = spec.sub_size, sb = g0 / sub, ng = sub / lc.group;
  if (!(st.codes.d.value > 0.0f) || ng > 4) return false;
  const iq::ScaledLatticeCodes saved = st.codes;
  float wp[4][8], lt[64], xs[32], yt[8];
  std::vector<GroupMetric> gm;
  gm.reserve(ng);
  for (int gi = 0; gi < ng; ++gi) {
    gm.emplace_back(*job.f, c + g0 + gi * lc.group);
    gm.back().precision_and_l(wp[gi], lt);
  }
  const int orig = saved.scale[sb];
  double best = std::numeric_limits<double>::max();
  int best_l = orig;
  for (int n = 0; n < spec.scale_codes; ++n) {
    const int l = n == 0 ? orig : (n <= orig ? n - 1 : n);  // the search's code first
    st.codes.scale[sb] = static_cast<uint8_t>(l);
    std::memcpy(xs, w + c + g0, sizeof(float) * sub);
    double tot = 0.0;
    for (int gi = 0; gi < ng && tot < best; ++gi) {
      float* xg = xs + gi * lc.group;
      if (!lc.recode(st, g0 / lc.group + gi, xg, wp[gi], yt)) {
        tot = std::numeric_limits<double>::max();
        break;
      }
      tot += gm[gi].cost(xg, yt);
      for (int j = 0; j < lc.group; ++j) {
        const int64_t k = c + g0 + gi * lc.group + j;
        const float* uk = job.f->row(k);
        const float e = (xg[j] - yt[j]) / uk[k];
        for (int64_t jj = gi * lc.group + j + 1; jj < sub; ++jj) xs[jj] -= e * uk[c + g0 + jj];
      }
    }
    if (tot < best) {
      best = tot;
      best_l = l;
    }
  }
  st.codes = saved;
  st.codes.scale[sb] = static_cast<uint8_t>(best_l);
  if (best_l == orig) return false;
  const int per = 8 / spec.lattice->dim();
  const float s = st.codes.d.value * spec.scale_mult[best_l];
  for (int gi = g0 / 8; gi < (g0 + sub) / 8; ++gi)
    iq::decode_group(spec, s, st.codes.grid + per * gi, st.codes.signs[gi], y + 8 * gi);
  return true;
}

// One block with a lattice codec: scales from the current values; then group by group, a group
// that moved is re-coded jointly with the fixed scales, and its columns' errors are fed forward
// one after the other (the group's later columns keep the joint code: their updated values only
// change the error they pass on). Unmoved groups keep the search's codes, as in the scalar case.
// A moved group takes, of three codes, the one with the lowest OBQ group cost (GroupMetric):
// the search's code from the block start, the re-code with the search's weights and the
// re-code with the group's conditional precisions as weights.
void sweep_block_lattice(const TensorJob& job, float* w, int64_t c, int64_t c0, int64_t c1, std::byte* blk,
                         float* E, iq::ScaledLatticeCodes* keep_codes) {
  const LatticeCodec& lc = *job.lattice;
  const int be = job.be, gs = lc.group;
  const int64_t ob = job.f->order[c / be];
  const float* imat = job.imatrix ? job.imatrix + ob * be : nullptr;
  float x0[kQKK], y[kQKK];
  detail::LatticeState st;
  std::memcpy(x0, w + c, sizeof(float) * be);
  lc.choose(x0, imat, st);
  lc.pack(st, blk);
  dequantize_rows(lc.type, {blk, static_cast<size_t>(lc.block_bytes)}, {y, static_cast<size_t>(be)});
  bool any = false;
  const int sub = lc.spec->sub_size;
  for (int g0 = 0; g0 < be; g0 += gs) {
    if (job.f->lattice_scales && g0 % sub == 0) {
      bool sub_moved = false;
      for (int j = 0; j < sub; ++j) sub_moved |= w[c + g0 + j] != x0[g0 + j];
      if (sub_moved && choose_sub_scale(job, w, c, g0, st, y)) any = true;
    }
    bool moved = false;
    for (int j = 0; j < gs; ++j) moved |= w[c + g0 + j] != x0[g0 + j];
    if (moved) {
      const GroupMetric gm(*job.f, c + g0);
      const float* x = w + c + g0;
      const iq::ScaledLatticeCodes keep = st.codes;
      double best = gm.cost(x, y + g0);
      iq::ScaledLatticeCodes best_codes = st.codes;
      float best_y[8], yt[8], wp[8], lt[64];
      std::copy(y + g0, y + g0 + gs, best_y);
      gm.precision_and_l(wp, lt);
      // The candidates' codes of this group: the search's, then the two re-codes.
      const int per = 8 / lc.spec->lattice->dim(), gi = g0 / gs;
      uint16_t cand_grid[3][2];
      uint8_t cand_signs[3];
      int ncand = 0;
      auto note = [&](const iq::ScaledLatticeCodes& cc) {
        std::copy(cc.grid + per * gi, cc.grid + per * (gi + 1), cand_grid[ncand]);
        cand_signs[ncand++] = cc.signs[gi];
      };
      note(keep);
      for (const float* wt : {static_cast<const float*>(nullptr), static_cast<const float*>(wp)}) {
        st.codes = keep;
        if (!lc.recode(st, gi, x, wt, yt)) break;
        note(st.codes);
        const double cst = gm.cost(x, yt);
        if (cst < best) {
          best = cst;
          best_codes = st.codes;
          std::copy(yt, yt + gs, best_y);
          any = true;
        }
      }
      const int sub = 8 * gi / lc.spec->sub_size;
      const float s = keep.d.value * lc.spec->scale_mult[keep.scale[sub]];
      if (job.f->lattice_search && s > 0.0f)
        for (int ci = 0; ci < ncand; ++ci) {
          bool seen = false;  // one search per sign pattern, from its first candidate's codes
          for (int cj = 0; cj < ci; ++cj) seen |= cand_signs[cj] == cand_signs[ci];
          if (seen) continue;
          uint16_t gr[2] = {cand_grid[ci][0], cand_grid[ci][1]};
          detail::search_group_metric(*lc.spec, x, lt, s, cand_signs[ci], gr, yt);
          const double cst = gm.cost(x, yt);
          if (cst < best) {
            best = cst;
            best_codes = keep;
            std::copy(gr, gr + per, best_codes.grid + per * gi);
            best_codes.signs[gi] = cand_signs[ci];
            std::copy(yt, yt + gs, best_y);
            any = true;
          }
        }
      st.codes = best_codes;
      std::copy(best_y, best_y + gs, y + g0);
    }
    for (int j = 0; j < gs; ++j) {
      const int64_t k = c + g0 + j;
      const float* uk = job.f->row(k);
      const float e = (w[k] - y[g0 + j]) / uk[k];
      E[k - c0] = e;
      batch_update(w, uk, k, c1, e);
    }
  }
  if (any) lc.pack(st, blk);
  if (keep_codes) *keep_codes = st.codes;  // for the coordinate descent
}

// Rows [r0, r0 + nr) of the tensor: copy them in visiting order, sweep batch by batch, write
// every block to its own place in the output row. fixed: a re-sweep that keeps every block's
// scales (as the refit left them) and only re-rounds the levels.
void sweep_pass(const TensorJob& job, std::span<const float> W, int64_t r0, int64_t nr, std::byte* out,
                std::vector<float>& Wc, std::vector<float>& E, bool fixed, iq::ScaledLatticeCodes* codes = nullptr) {
  const int64_t d = job.d, be = job.be, nb = d / be;
  const std::vector<int32_t>& ord = job.f->order;
  const size_t bb = job.scalar ? job.scalar->block_bytes : job.lattice->block_bytes;
  float sigma2[kRowChunk];
  for (int64_t r = 0; r < nr; ++r) {
    const float* src = W.data() + (r0 + r) * d;
    sigma2[r] = kernels::legacy_row_sigma2({src, static_cast<size_t>(d)});
    for (int64_t b = 0; b < nb; ++b) std::memcpy(Wc.data() + r * d + b * be, src + ord[b] * be, sizeof(float) * be);
  }
  for (int64_t c0 = 0; c0 < d; c0 += kBatch) {
    const int64_t c1 = std::min(d, c0 + kBatch);
    for (int64_t r = 0; r < nr; ++r) {
      float* w = Wc.data() + r * d;
      std::byte* orow = out + (r0 + r) * job.row_bytes;
      for (int64_t c = c0; c < c1; c += be) {
        std::byte* blk = orow + ord[c / be] * bb;
        if (job.scalar)
          sweep_block_scalar(job, w, c, c0, c1, sigma2[r], blk, E.data() + r * kBatch, fixed);
        else
          sweep_block_lattice(job, w, c, c0, c1, blk, E.data() + r * kBatch, codes ? codes + r * nb + c / be : nullptr);
      }
    }
    if (c1 < d) {
      const float* urows[kBatch];
      for (int64_t k = c0; k < c1; ++k) urows[k - c0] = job.f->row(k);
      linalg::deferred_update(Wc.data(), nr, d, c1, E.data(), kBatch, c1 - c0, urows);
    }
  }
}

// The scale refit of rows [r0, r0 + nr) on their finished blocks (ef_refit.h); Wc is scratch.
void refit_pass(const TensorJob& job, std::span<const float> W, int64_t r0, int64_t nr, std::byte* out,
                std::vector<float>& Wc, detail::RefitScratch& refit) {
  const int64_t d = job.d, be = job.be, nb = d / be;
  const std::vector<int32_t>& ord = job.f->order;
  const size_t bb = job.scalar ? job.scalar->block_bytes : job.lattice->block_bytes;
  std::vector<std::byte*> blocks(static_cast<size_t>(nb));
  for (int64_t r = 0; r < nr; ++r) {
    const float* src = W.data() + (r0 + r) * d;
    float* w0 = Wc.data() + r * d;  // the original row in visiting order
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(w0 + b * be, src + ord[b] * be, sizeof(float) * be);
      blocks[b] = out + (r0 + r) * job.row_bytes + ord[b] * bb;
    }
    detail::refit_row(*job.f, job.scalar, job.lattice, job.type, w0, blocks.data(), refit);
  }
}

// The coordinate descent of rows [r0, r0 + nr) on their finished blocks (ef_cd.h); Wc is
// scratch, cd.codes holds the sweep's lattice codes.
void cd_pass(const TensorJob& job, std::span<const float> W, int64_t r0, int64_t nr, std::byte* out,
             std::vector<float>& Wc, detail::CdScratch& cd) {
  const int64_t d = job.d, be = job.be, nb = d / be;
  const std::vector<int32_t>& ord = job.f->order;
  const size_t bb = job.scalar ? job.scalar->block_bytes : job.lattice->block_bytes;
  std::vector<std::byte*> blocks(static_cast<size_t>(nr * nb));
  for (int64_t r = 0; r < nr; ++r) {
    const float* src = W.data() + (r0 + r) * d;
    for (int64_t b = 0; b < nb; ++b) {
      std::memcpy(Wc.data() + r * d + b * be, src + ord[b] * be, sizeof(float) * be);
      blocks[r * nb + b] = out + (r0 + r) * job.row_bytes + ord[b] * bb;
    }
  }
  detail::cd_rows(*job.f, job.scalar, job.lattice, job.type, Wc.data(), nr, blocks.data(), cd);
}

// The sweep, then (when H couples the columns: with a diagonal H the plain search's scales
// stand and the bytes stay the plain kernel's; by default only for the families with a min)
// the scale refit; from the second round on, the
// scalar families re-sweep with the refitted scales fixed and refit again.
void sweep_rows(const TensorJob& job, std::span<const float> W, int64_t r0, int64_t nr, std::byte* out,
                std::vector<float>& Wc, std::vector<float>& E, detail::RefitScratch& refit, detail::CdScratch& cd) {
  const bool run_cd = job.f->cd_iters > 0 && job.f->coupled && !job.f->h.empty();
  if (run_cd && job.lattice) cd.codes.resize(static_cast<size_t>(nr * (job.d / job.be)));
  sweep_pass(job, W, r0, nr, out, Wc, E, false, run_cd && job.lattice ? cd.codes.data() : nullptr);
  if (run_cd) cd_pass(job, W, r0, nr, out, Wc, cd);
  if (job.f->refit_rounds <= 0 || !job.f->coupled || job.f->h.empty()) return;
  const bool has_min = job.scalar && job.scalar->m_off >= 0;
  if (!has_min && !job.f->refit_scale_only) return;
  refit_pass(job, W, r0, nr, out, Wc, refit);
  for (int round = 1; round < job.f->refit_rounds && job.scalar; ++round) {
    sweep_pass(job, W, r0, nr, out, Wc, E, true);
    refit_pass(job, W, r0, nr, out, Wc, refit);
  }
}

// The pages of [p, p + n) that lie wholly inside it go back to the system (a hint: failure
// costs only memory). For buffers that are never read there again.
void release_pages(const void* p, size_t n) {
  const uintptr_t page = static_cast<uintptr_t>(::sysconf(_SC_PAGESIZE));
  const uintptr_t lo = (reinterpret_cast<uintptr_t>(p) + page - 1) / page * page;
  const uintptr_t hi = (reinterpret_cast<uintptr_t>(p) + n) / page * page;
  if (hi > lo) ::madvise(reinterpret_cast<void*>(lo), hi - lo, MADV_DONTNEED);
}

// U = J M^-1 J packed as Factor::u wants it, in the storage of A (which holds M^-1 in its lower
// triangle), so that the factor never exists next to the d_in^2 float matrix it comes from (at
// d_in = 8192: 256 MB, not 384). Reversing A's elements puts U[a][b] = M^-1[d-1-a][d-1-b] at
// a * d + b; then row a's upper part [a, d) moves down to its packed offset, rows in increasing
// order (a packed row never reaches past the start of the next row's source). The pages beyond
// the packed triangle go back to the system: the vector keeps its capacity, never read again.
void pack_factor_in_place(std::vector<float>& A, int64_t d, int n_threads) {
  const int64_t n = d * d;
#pragma omp parallel for num_threads(n_threads) schedule(static)
  for (int64_t i = 0; i < n / 2; ++i) std::swap(A[static_cast<size_t>(i)], A[static_cast<size_t>(n - 1 - i)]);
  for (int64_t a = 1; a < d; ++a)  // row 0 is in place already
    std::memmove(A.data() + a * d - a * (a - 1) / 2, A.data() + a * d + a, sizeof(float) * static_cast<size_t>(d - a));
  const size_t packed = static_cast<size_t>(d * (d + 1) / 2);
  A.resize(packed);
  release_pages(A.data() + packed, sizeof(float) * (A.capacity() - packed));
}

// The factorisation of prepare(). consume_h: H is the caller's to destroy (the vector overloads):
// its rows are released as the float copy takes them, so the two never both exist in full.
// H in double (its diagonal read from it) or in float with its diagonal in double: the float
// copy is float(H) with the dampening added to the double diagonal either way (same bits).
template <class T>
Factor prepare_impl(std::span<const T> H, std::span<const double> diag_in, int64_t d, int be, const Settings& s,
                    int n_threads, bool consume_h) {
  if (d <= 0 || be <= 0 || d % be != 0 || H.size() != static_cast<size_t>(d * d) ||
      (!diag_in.empty() && diag_in.size() != static_cast<size_t>(d)))
    throw UsageError("error feedback: H must be d_in x d_in with d_in a multiple of the block size");
  if (!(s.damp >= 0.0) || !std::isfinite(s.damp)) throw UsageError("error feedback: dampening must be >= 0");
  std::vector<double> diag(diag_in.begin(), diag_in.end());
  if (diag.empty())
    for (int64_t c = 0; c < d; ++c) diag.push_back(static_cast<double>(H[c * d + c]));
  Factor f;
  f.d_in = d;
  f.block_elems = be;
  f.order = block_order(diag, d, be, s.order);
  double mean_diag = 0.0;
  for (int64_t c = 0; c < d; ++c) mean_diag += diag[c];
  mean_diag /= static_cast<double>(d);
  if (!std::isfinite(mean_diag)) throw UsageError("error feedback: H has a non-finite diagonal");
  const double damp = s.damp * (mean_diag > 0.0 ? mean_diag : 1.0);
  f.lambda = damp;
  n_threads = d < kParallelFactorMin ? 1 : std::max(1, n_threads);
  // A = J P^T H P J + damping in float (gathered from H: no second copy in double), P the
  // visiting order, J the reversal. Float is enough (docs/optimize.md, Cost): with the
  // dampening the condition number of A is at most 1 + d_in / damp, and the files made with a
  // float factorisation measure the same KL divergence as with a double one. A is appended in
  // groups of rows (reserved, not zero-filled: its pages are touched only as they are filled),
  // and an owned H gives back each row it has copied: the two never both exist in full.
  std::vector<int64_t> src(static_cast<size_t>(d));  // position i takes H's row/column src[i]
  for (int64_t i = 0; i < d; ++i) {
    const int64_t k = d - 1 - i;
    src[i] = static_cast<int64_t>(f.order[k / be]) * be + k % be;
  }
  std::vector<float> A;
  A.reserve(static_cast<size_t>(d * d));
  constexpr int64_t kGatherRows = 64;
  std::vector<float> group(static_cast<size_t>(std::min(d, kGatherRows) * d));
  for (int64_t i0 = 0; i0 < d; i0 += kGatherRows) {
    const int64_t i1 = std::min(d, i0 + kGatherRows);
#pragma omp parallel for num_threads(n_threads) schedule(static)
    for (int64_t i = i0; i < i1; ++i) {
      const T* hr = H.data() + src[i] * d;
      float* ar = group.data() + (i - i0) * d;
      for (int64_t j = 0; j < d; ++j) ar[j] = static_cast<float>(hr[src[j]]);
      ar[i] = static_cast<float>(diag[src[i]] + damp);
    }
    A.insert(A.end(), group.begin(), group.begin() + (i1 - i0) * d);
    if (consume_h)
      for (int64_t i = i0; i < i1; ++i) release_pages(H.data() + src[i] * d, sizeof(T) * static_cast<size_t>(d));
  }
  std::vector<float>().swap(group);
  if (s.refit_rounds > 0 || s.cd_iters > 0) keep_refit_gram(A.data(), d, f, n_threads);
  f.refit_rounds = s.refit_rounds;
  f.cd_iters = std::max(0, s.cd_iters);
  f.cd_scales = s.cd_scales;
  f.lattice_search = s.lattice_search;
  f.lattice_scales = s.lattice_scales;
  if (s.cd_damp >= 0.0 && std::isfinite(s.cd_damp))
    f.cd_shift = (s.cd_damp - s.damp) * (mean_diag > 0.0 ? mean_diag : 1.0);
  f.refit_scale_only = s.refit_scale_only;
  const int64_t bad = linalg::cholesky_lower(A.data(), d, n_threads);  // J H~ J = M M^T
  if (bad >= 0)
    throw UsageError("error feedback: H is not positive definite after dampening (column " + std::to_string(src[bad]) +
                     "); raise the dampening");
  linalg::invert_lower(A.data(), d, n_threads);  // M^-1; U = J M^-1 J is upper and H~^-1 = U^T U
  pack_factor_in_place(A, d, n_threads);
  f.u = std::move(A);
  return f;
}

}  // namespace

Factor prepare(std::span<const double> H, int64_t d, int be, const Settings& s, int n_threads) {
  return prepare_impl<double>(H, {}, d, be, s, n_threads, false);
}

Factor prepare(std::vector<double> H, int64_t d, int be, const Settings& s, int n_threads) {
  return prepare_impl<double>(H, {}, d, be, s, n_threads, true);
}

Factor prepare(std::span<const float> H, std::span<const double> diag, int64_t d, int be, const Settings& s,
               int n_threads) {
  if (diag.size() != static_cast<size_t>(d)) throw UsageError("error feedback: H's diagonal does not have d_in entries");
  return prepare_impl<float>(H, diag, d, be, s, n_threads, false);
}

Factor prepare(std::vector<float> H, std::span<const double> diag, int64_t d, int be, const Settings& s, int n_threads) {
  if (diag.size() != static_cast<size_t>(d)) throw UsageError("error feedback: H's diagonal does not have d_in entries");
  return prepare_impl<float>(H, diag, d, be, s, n_threads, true);
}

bool supports(GgmlType type) { return detail::scalar_codec(type) || detail::lattice_codec(type); }

bool is_lattice(GgmlType type) { return detail::lattice_codec(type) != nullptr; }

void quantize_tensor(GgmlType type, std::span<const float> W, int64_t rows, int64_t d_in, const Factor& f,
                     std::span<const float> imatrix, std::span<std::byte> out, int n_threads) {
  TensorJob job{detail::scalar_codec(type), detail::lattice_codec(type), 0, d_in, 0, &f, nullptr, type};
  if (!job.scalar && !job.lattice)
    throw UsageError(std::string("error feedback: no codec for ") + std::string(type_info(type).name));
  job.be = job.scalar ? job.scalar->block_elems : job.lattice->block_elems;
  const auto rb = row_bytes(type, static_cast<uint64_t>(d_in));
  if (f.d_in != d_in || f.block_elems != job.be || !rb || W.size() != static_cast<size_t>(rows * d_in) ||
      out.size() != *rb * static_cast<uint64_t>(rows) || (!imatrix.empty() && imatrix.size() != static_cast<size_t>(d_in)))
    throw UsageError("error feedback: tensor, factor, imatrix or output sizes do not match");
  job.row_bytes = static_cast<int64_t>(*rb);
  job.imatrix = imatrix.empty() ? nullptr : imatrix.data();
  const int64_t rc = row_chunk(d_in);
  const int64_t nchunks = (rows + rc - 1) / rc;
#pragma omp parallel num_threads(std::max(1, n_threads))
  {
    std::vector<float> Wc(static_cast<size_t>(rc * d_in)), E(static_cast<size_t>(rc * kBatch));
    detail::RefitScratch refit;
    detail::CdScratch cd;
#pragma omp for schedule(dynamic, 1)
    for (int64_t ch = 0; ch < nchunks; ++ch) {
      const int64_t r0 = ch * rc;
      sweep_rows(job, W, r0, std::min(rc, rows - r0), out.data(), Wc, E, refit, cd);
    }
  }
}

void quantize_tensor(GgmlType type, std::span<const float> W, int64_t rows, int64_t d_in, std::span<const double> H,
                     std::span<const float> imatrix, const Settings& s, std::span<std::byte> out, int n_threads) {
  const ScalarCodec* sc = detail::scalar_codec(type);
  const LatticeCodec* lc = detail::lattice_codec(type);
  if (!sc && !lc) throw UsageError(std::string("error feedback: no codec for ") + std::string(type_info(type).name));
  const Factor f = prepare(H, d_in, sc ? sc->block_elems : lc->block_elems, s, n_threads);
  quantize_tensor(type, W, rows, d_in, f, imatrix, out, n_threads);
}

}  // namespace smolq::ef
