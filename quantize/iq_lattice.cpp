// Lattice codebook search and the super-block scale search shared by the IQ quantizers.
// See iq_lattice.h for the model. Everything here is deterministic single-threaded code;
// the derived tables are built once per process inside function-local statics.
#include "quantize/iq_lattice.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>
#include <limits>

#include "formats/half.h"
#include "quantize/iq_tables.h"

namespace smolq::iq {

Lattice::Lattice(const uint64_t* grid64, const uint32_t* grid32, int size, int dim, std::span<const int> levels,
                 bool is_int8, int nb_extra)
    : dim_(dim), nlevels_(static_cast<int>(levels.size())), size_(size) {
  assert((grid64 != nullptr) != (grid32 != nullptr));
  assert(dim * nlevels_ <= 64 && dim <= kMaxChanges);
  points_.resize(static_cast<size_t>(size) * dim);
  offsets_.resize(points_.size());
  int nkeys = 1;
  for (int k = 0; k < dim; ++k) nkeys *= nlevels_;
  map_.assign(nkeys, std::numeric_limits<int32_t>::min());

  for (int g = 0; g < size; ++g) {
    int key = 0, mul = 1;
    for (int k = 0; k < dim; ++k) {
      const uint64_t word = grid64 ? grid64[g] : grid32[g];
      const int v = is_int8 ? grid_sbyte(word, k) : grid_byte(word, k);
      const auto it = std::find(levels.begin(), levels.end(), v);
      assert(it != levels.end() && "grid value is not a lattice level");
      const int l = static_cast<int>(it - levels.begin());
      points_[g * dim + k] = static_cast<uint8_t>(l);
      offsets_[g * dim + k] = static_cast<uint8_t>(k * nlevels_ + l);
      key += l * mul;
      mul *= nlevels_;
    }
    assert(map_[key] < 0 && "duplicate grid point");
    map_[key] = g;
  }

  // Neighbour lists for every lattice point that is not in the grid, nearest first.
  std::vector<uint8_t> idx(dim);
  std::vector<int> d2(size);
  std::vector<std::pair<int, int>> near;
  for (int key = 0; key < nkeys; ++key) {
    if (map_[key] >= 0) continue;
    for (int k = 0, r = key; k < dim; ++k, r /= nlevels_) idx[k] = static_cast<uint8_t>(r % nlevels_);
    int dmin = std::numeric_limits<int>::max();
    for (int g = 0; g < size; ++g) {
      int d = 0;
      for (int k = 0; k < dim; ++k) {
        const int diff = static_cast<int>(points_[g * dim + k]) - idx[k];
        d += diff * diff;
      }
      d2[g] = d;
      dmin = std::min(dmin, d);
    }
    near.clear();
    for (int g = 0; g < size; ++g)
      if (d2[g] <= dmin + nb_extra) near.emplace_back(d2[g], g);
    std::sort(near.begin(), near.end());
    map_[key] = -(1 + static_cast<int32_t>(nb_.size()));
    nb_.push_back(static_cast<uint16_t>(near.size()));
    changes_.resize(changes_.size() + kMaxChanges);  // the count's slot: unused
    for (const auto& [d, g] : near) {
      nb_.push_back(static_cast<uint16_t>(g));
      // The coordinates where g differs from the rounded point, as cost-table offsets;
      // spare slots repeat "coordinate 0 at its rounded level", whose cost difference is 0.
      uint8_t slot[kMaxChanges];
      int nch = 0;
      for (int k = 0; k < dim; ++k)
        if (points_[g * dim + k] != idx[k]) slot[nch++] = offsets_[g * dim + k];  // nch <= dim <= kMaxChanges
      max_changes_ = std::max(max_changes_, nch);
      for (int m = nch; m < kMaxChanges; ++m) slot[m] = idx[0];  // k = 0: offset = level
      changes_.insert(changes_.end(), slot, slot + kMaxChanges);
    }
  }
}

// The search with the lattice shape known at compile time (the loops unroll); Dim and
// NLevels are (8, 3) for the IQ1/IQ2 grids and (4, 8) for the IQ3 grids, MaxCh the most
// coordinates in which a neighbour differs from the rounded point (2 or 4).
template <int Dim, int NLevels, int MaxCh>
int Lattice::search_impl(const float* a, const float* w, float s, const float* lv, const float* mid,
                         uint8_t* levels) const {
  const float inv = 1.0f / s;
  int key = 0, mul = 1;
  int r[Dim];  // the rounded point's level per coordinate
  for (int k = 0; k < Dim; ++k) {
    const float t = a[k] * inv;
    int l = 0;
    for (int m = 0; m < NLevels - 1; ++m) l += t > mid[m];
    r[k] = l;
    key += l * mul;
    mul *= NLevels;
  }
  const int32_t e = map_[key];
  if (e >= 0) {
    if (levels)
      for (int k = 0; k < Dim; ++k) levels[k] = static_cast<uint8_t>(r[k]);
    return e;
  }

  // Off the grid: rank the neighbours by their cost relative to the rounded point, where the
  // cost of coordinate k at level l is w (s v)^2 - 2 w a (s v) (the squared error minus its
  // constant part). A neighbour differs from the rounded point in a few coordinates only
  // (changes_), so its relative cost is the sum of at most MaxCh table entries.
  float sv[NLevels];
  for (int l = 0; l < NLevels; ++l) sv[l] = s * lv[l];
  float dcost[Dim * NLevels];
  for (int k = 0; k < Dim; ++k) {
    const float wk = w[k], a2 = 2.0f * a[k];
    const float base = wk * sv[r[k]] * (sv[r[k]] - a2);
    for (int l = 0; l < NLevels; ++l) dcost[k * NLevels + l] = wk * sv[l] * (sv[l] - a2) - base;
  }
  const int start = -e - 1;
  const uint16_t* list = nb_.data() + start;
  const uint8_t* ch = changes_.data() + static_cast<size_t>(start) * kMaxChanges;
  const int n = list[0];
  // First strict minimum, kept with selects: which neighbour wins is unpredictable, and a
  // mispredicted branch per candidate would cost more than the scoring.
  int best_i = 1;
  float best_cost = std::numeric_limits<float>::max();
  for (int i = 1; i <= n; ++i) {
    const uint8_t* o = ch + i * kMaxChanges;
    float c = dcost[o[0]];
    for (int m = 1; m < MaxCh; ++m) c += dcost[o[m]];
    const bool better = c < best_cost;
    best_i = better ? i : best_i;
    best_cost = better ? c : best_cost;
  }
  const int best = list[best_i];
  if (levels) std::copy(points_.data() + best * Dim, points_.data() + (best + 1) * Dim, levels);
  return best;
}

int Lattice::search(const float* a, const float* w, float s, const float* lv, const float* mid, uint8_t* levels) const {
  if (dim_ == 8 && nlevels_ == 3) {
    if (max_changes_ <= 2) return search_impl<8, 3, 2>(a, w, s, lv, mid, levels);
    if (max_changes_ <= 4) return search_impl<8, 3, 4>(a, w, s, lv, mid, levels);
    if (max_changes_ <= 6) return search_impl<8, 3, 6>(a, w, s, lv, mid, levels);
    return search_impl<8, 3, 8>(a, w, s, lv, mid, levels);
  }
  assert(dim_ == 4 && nlevels_ == 8);
  return max_changes_ <= 2 ? search_impl<4, 8, 2>(a, w, s, lv, mid, levels)
                           : search_impl<4, 8, 4>(a, w, s, lv, mid, levels);
}

double Lattice::mean_neighbours() const {
  size_t lists = 0, total = 0;
  for (int32_t e : map_)
    if (e < 0) {
      ++lists;
      total += nb_[-e - 1];
    }
  return lists ? static_cast<double>(total) / lists : 0.0;
}

namespace {
constexpr int kIq2Levels[] = {8, 25, 43};
// Neighbour radius per lattice (extra squared index distance beyond the nearest grid point).
// Measured on the golden matrix: for the IQ2 grids the nearest shell alone loses almost nothing
// and halves the search time; the 4-d IQ3 grids want the next shells too. The IQ1 grid keeps
// the next shell: with a skewed imatrix one weight of a group can carry 1000x the importance of
// its neighbours, and every nearest-shell point may move exactly that weight (seen on
// SmolLM2-135M's last ffn_down: a 24x worse sub-block).
constexpr int kIq2NeighbourExtra = 0;
constexpr int kIq3NeighbourExtra = 2;
constexpr int kIq1NeighbourExtra = 1;
constexpr int kIq3xxsLevels[] = {4, 12, 20, 28, 36, 44, 52, 62};
constexpr int kIq3sLevels[] = {1, 3, 5, 7, 9, 11, 13, 15};
constexpr int kIq1Levels[] = {-1, 0, 1};
}  // namespace

const Lattice& lattice_iq2xxs() {
  static const Lattice l(kIq2xxsGrid, nullptr, 256, 8, kIq2Levels, false, kIq2NeighbourExtra);
  return l;
}
const Lattice& lattice_iq2xs() {
  static const Lattice l(kIq2xsGrid, nullptr, 512, 8, kIq2Levels, false, kIq2NeighbourExtra);
  return l;
}
const Lattice& lattice_iq2s() {
  static const Lattice l(kIq2sGrid, nullptr, 1024, 8, kIq2Levels, false, kIq2NeighbourExtra);
  return l;
}
const Lattice& lattice_iq3xxs() {
  static const Lattice l(nullptr, kIq3xxsGrid, 256, 4, kIq3xxsLevels, false, kIq3NeighbourExtra);
  return l;
}
const Lattice& lattice_iq3s() {
  static const Lattice l(nullptr, kIq3sGrid, 512, 4, kIq3sLevels, false, kIq3NeighbourExtra);
  return l;
}
const Lattice& lattice_iq1s() {
  static const Lattice l(kIq1sGrid, nullptr, 2048, 8, kIq1Levels, true, kIq1NeighbourExtra);
  return l;
}

namespace {
// e^m for the magnitude term. The profiles' exponents 1/2 and 1/4 are taken as (nested) square
// roots: several times cheaper than pow() and within an ulp of it.
inline float magnitude_pow(float e, float m) {
  if (m == 0.0f) return 1.0f;  // pow(e, 0) is 1 for every e
  if (m == 0.5f) return std::sqrt(e);
  if (m == 0.25f) return std::sqrt(std::sqrt(e));
  return std::pow(e, m);
}

// w[i] = importance(i) * (sigma2 + x[i]^2)^m, sigma2 = 2 * mean(x^2): the shared shape of the
// two entry points below (multiplying by 1 when there is no importance is exact).
template <class Importance>
void fill_weights(std::span<const float> x, std::span<float> w, float m, Importance importance) {
  assert(x.size() == w.size());
  float sumx2 = 0.0f;
  for (float v : x) sumx2 += v * v;
  const float sigma2 = 2.0f * sumx2 / static_cast<float>(x.size());
  for (size_t i = 0; i < x.size(); ++i) w[i] = importance(i) * magnitude_pow(sigma2 + x[i] * x[i], m);
}
}  // namespace

void iq_weights(std::span<const float> x, const float* qw, std::span<float> w, const WeightProfile& p) {
  if (qw) fill_weights(x, w, p.magnitude_imat, [&](size_t i) { return std::pow(qw[i], p.importance); });
  else fill_weights(x, w, p.magnitude_plain, [](size_t) { return 1.0f; });
}

std::vector<float> importance_powers(std::span<const float> imatrix, const WeightProfile& p) {
  std::vector<float> r(imatrix.size());
  for (size_t i = 0; i < imatrix.size(); ++i) r[i] = std::pow(imatrix[i], p.importance);
  return r;
}

void iq_weights_raised(std::span<const float> x, const float* qw_raised, std::span<float> w, const WeightProfile& p) {
  if (qw_raised) fill_weights(x, w, p.magnitude_imat, [&](size_t i) { return qw_raised[i]; });
  else fill_weights(x, w, p.magnitude_plain, [](size_t) { return 1.0f; });
}

HalfScale round_half(float v) {
  const uint16_t b = f32_to_f16(v);
  return {b, f16_to_f32(b)};
}

// ---- the super-block scale search --------------------------------------------------------

namespace {

// Relative candidates for the super-block scale d, as multiples of (largest sub-block scale
// / largest scale multiplier). Slightly smaller d trades the top sub-block's precision for
// a finer scale grid everywhere else; the search keeps whichever gives the least error.
constexpr float kSuperScaleFactors[] = {1.0f, 0.985f, 0.97f, 0.955f, 0.94f, 0.92f, 0.90f, 1.015f};
// Phase C tries the chosen scale code and this many codes either side; phases B and C run
// kScaleRounds times (measured: a second round or a wider span gain < 0.5%).
constexpr int kScaleCodeSpan = 1;
constexpr int kScaleRounds = 1;

struct SubState {
  float P = 0, Q = 0;  // sum w a v and sum w v^2 of the sub-block's codes (grid units)
  float s = 0;         // least-squares scale of those codes
};

}  // namespace

uint8_t group_signs(const float* x, const float* w, bool parity, float* a) {
  uint8_t s = 0;
  for (int j = 0; j < 8; ++j) {
    a[j] = std::fabs(x[j]);
    if (x[j] < 0) s |= static_cast<uint8_t>(1u << j);
  }
  if (parity && (std::popcount(static_cast<unsigned>(s)) & 1)) {
    int imin = 0;
    float emin = std::numeric_limits<float>::max();
    for (int j = 0; j < 8; ++j) {
      const float e = w[j] * x[j] * x[j];
      if (e < emin) {
        emin = e;
        imin = j;
      }
    }
    a[imin] = -a[imin];
    s ^= static_cast<uint8_t>(1u << imin);
  }
  return s;
}

void decode_group(const ScaledLatticeSpec& spec, float s, const uint16_t* grid, uint8_t signs, float* y) {
  const Lattice& lat = *spec.lattice;
  const int dim = lat.dim();
  for (int g = 0; g < 8 / dim; ++g)
    for (int k = 0; k < dim; ++k) {
      const int j = g * dim + k;
      y[j] = s * spec.levels[lat.level(grid[g], k)] * ((signs >> j) & 1 ? -1.0f : 1.0f);
    }
}

void code_group(const ScaledLatticeSpec& spec, const float* x, const float* w, float s, uint16_t* grid,
                uint8_t& signs, float* y) {
  const Lattice& lat = *spec.lattice;
  const int dim = lat.dim();
  const float* lv = spec.levels.data();
  float mid[7], a[8];
  for (int l = 0; l + 1 < lat.nlevels(); ++l) mid[l] = 0.5f * (lv[l] + lv[l + 1]);
  signs = group_signs(x, w, spec.parity_signs, a);
  for (int g = 0; g < 8 / dim; ++g) {
    uint8_t lev[8];
    grid[g] = static_cast<uint16_t>(lat.search(a + g * dim, w + g * dim, s, lv, mid, lev));
    for (int k = 0; k < dim; ++k) {
      const int j = g * dim + k;
      y[j] = s * lv[lev[k]] * ((signs >> j) & 1 ? -1.0f : 1.0f);
    }
  }
}

void quantize_scaled_lattice(const ScaledLatticeSpec& spec, const float* x, const float* qw,
                             ScaledLatticeCodes& out) {
  const Lattice& lat = *spec.lattice;
  const int dim = lat.dim();
  const int nl = lat.nlevels();
  const int nsub = kQKK / spec.sub_size;
  const int groups_per_sub = spec.sub_size / dim;
  const float* lv = spec.levels.data();
  float mid[7];
  for (int l = 0; l + 1 < nl; ++l) mid[l] = 0.5f * (lv[l] + lv[l + 1]);
  const float top = lv[nl - 1];

  float w[kQKK], a[kQKK];
  iq_weights_raised({x, static_cast<size_t>(kQKK)}, qw, {w, static_cast<size_t>(kQKK)});

  for (int g8 = 0; g8 < kQKK / 8; ++g8) out.signs[g8] = group_signs(x + 8 * g8, w + 8 * g8, spec.parity_signs, a + 8 * g8);

  // Codes of a sub-block at scale s, with their P = sum w a v and Q = sum w v^2.
  auto code_sub = [&](int b, float s, uint16_t* codes, float& P, float& Q) {
    P = Q = 0.0f;
    for (int gi = 0; gi < groups_per_sub; ++gi) {
      const int off = b * spec.sub_size + gi * dim;
      uint8_t lev[8];
      codes[gi] = static_cast<uint16_t>(lat.search(a + off, w + off, s, lv, mid, lev));
      for (int k = 0; k < dim; ++k) {
        const float v = lv[lev[k]];
        P += w[off + k] * a[off + k] * v;
        Q += w[off + k] * v * v;
      }
    }
  };

  // Phase A: each sub-block's best free (unquantized) scale and codes.
  SubState st[16];
  uint16_t tmp[8];
  for (int b = 0; b < nsub; ++b) {
    float amax = 0.0f;
    for (int i = 0; i < spec.sub_size; ++i) amax = std::max(amax, a[b * spec.sub_size + i]);
    uint16_t* codes = out.grid + b * groups_per_sub;
    std::fill(codes, codes + groups_per_sub, 0);
    if (!(amax > 1e-30f)) continue;  // all (near) zero: scale 0
    // Every trial scale once; then least-squares refits of the best one only (refining the
    // runners-up was measured to change the result too rarely to pay for its searches).
    // Error at the least-squares scale is E0 - P^2/Q: maximise P^2/Q.
    float best = 0.0f;
    for (float f : spec.trial_factors) {
      float P, Q;
      code_sub(b, amax / (top * f), tmp, P, Q);
      if (!(P > 0.0f && Q > 0.0f)) continue;
      if (P * P / Q > best) {
        best = P * P / Q;
        st[b] = {P, Q, P / Q};
        std::copy(tmp, tmp + groups_per_sub, codes);
      }
    }
    for (int it = 0; it < spec.refine_iters && best > 0.0f; ++it) {
      float P, Q;
      code_sub(b, st[b].s, tmp, P, Q);
      if (!(P > 0.0f && Q > 0.0f) || !(P * P / Q > best)) break;
      best = P * P / Q;
      st[b] = {P, Q, P / Q};
      std::copy(tmp, tmp + groups_per_sub, codes);
    }
  }

  float smax = 0.0f;
  for (int b = 0; b < nsub; ++b) smax = std::max(smax, st[b].s);
  out.d = {0, 0.0f};
  std::fill(out.scale, out.scale + 16, 0);
  if (!(smax > 0.0f)) {
    std::fill(out.grid, out.grid + nsub * groups_per_sub, 0);
    return;
  }
  const float mtop = spec.scale_mult[spec.scale_codes - 1];
  for (int round = 0; round < kScaleRounds; ++round) {
    // Phase B: the super-block scale. For each candidate d, every sub-block takes the scale
    // code whose decoded scale fits its current codes best (error -2 s P + s^2 Q).
    float best_total = std::numeric_limits<float>::max();
    HalfScale best_d{0, 0.0f};
    uint8_t best_codes[16] = {};
    for (float f : kSuperScaleFactors) {
      const HalfScale d = round_half(smax / mtop * f);
      if (!(d.value > 0.0f) || !std::isfinite(d.value)) continue;
      float total = 0.0f;
      uint8_t codes[16];
      for (int b = 0; b < nsub; ++b) {
        float eb = 0.0f;
        codes[b] = 0;
        if (st[b].Q > 0.0f) {
          eb = std::numeric_limits<float>::max();
          int code = 0;
          for (int l = 0; l < spec.scale_codes; ++l) {  // first strict minimum, with selects
            const float s = d.value * spec.scale_mult[l];
            const float e = s * (s * st[b].Q - 2.0f * st[b].P);
            const bool better = e < eb;
            code = better ? l : code;
            eb = better ? e : eb;
          }
          codes[b] = static_cast<uint8_t>(code);
        }
        total += eb;
      }
      if (total < best_total) {
        best_total = total;
        best_d = d;
        std::copy(codes, codes + nsub, best_codes);
      }
    }
    if (best_d.value == 0.0f) {  // scale underflows f16: the block decodes to zeros
      out.d = best_d;
      std::fill(out.grid, out.grid + nsub * groups_per_sub, 0);
      return;
    }
    out.d = best_d;
    std::copy(best_codes, best_codes + nsub, out.scale);

    // Phase C: with d fixed, re-choose each sub-block's codes for its actual decoded scale,
    // trying the neighbouring scale codes too.
    for (int b = 0; b < nsub; ++b) {
      if (!(st[b].Q > 0.0f)) continue;
      uint16_t* codes = out.grid + b * groups_per_sub;
      const int l0 = out.scale[b];
      float best = std::numeric_limits<float>::max();
      for (int l = std::max(0, l0 - kScaleCodeSpan); l <= std::min(spec.scale_codes - 1, l0 + kScaleCodeSpan); ++l) {
        const float s = out.d.value * spec.scale_mult[l];
        float P, Q;
        code_sub(b, s, tmp, P, Q);
        const float e = s * (s * Q - 2.0f * P);
        if (e < best) {
          best = e;
          out.scale[b] = static_cast<uint8_t>(l);
          std::copy(tmp, tmp + groups_per_sub, codes);
          if (Q > 0.0f) st[b] = {P, Q, P / Q};
        }
      }
    }
    smax = 0.0f;
    for (int b = 0; b < nsub; ++b) smax = std::max(smax, st[b].s);
  }
}

}  // namespace smolq::iq
