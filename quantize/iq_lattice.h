// The search machinery shared by the lattice-codebook IQ quantizers (IQ1_*, IQ2_*, IQ3_*).
//
// Each of those formats stores a weight group (8 or 4 values) as an index into a fixed
// codebook, a subset of a small product lattice: IQ2 grids are 256..1024 points of
// {8,25,43}^8, IQ3 grids 256/512 points of 8 levels^4, the IQ1 grid 2048 points of
// {-1,0,1}^8. A group's best code at a given scale s minimises sum_k w_k (a_k - s*v_k)^2.
// Rounding each coordinate to its nearest level gives the unconstrained optimum; when that
// lattice point is in the codebook it is the answer, otherwise we score a precomputed list
// of nearby codebook points. The index map and neighbour lists are derived from the const
// grids once, on first use, in function-local statics (thread-safe, no global init step).
//
// Above the group search sit the scale searches: a sub-block scale (16 or 32 weights, a
// few bits) times a super-block f16 scale d. ScaledLatticeSpec describes one such format
// and quantize_scaled_lattice() produces its codes; each format file only packs bits.
#pragma once
#include <array>
#include <cstdint>
#include <span>
#include <vector>

#include "quantize/blocks.h"

namespace smolq::iq {

class Lattice {
 public:
  // grid: one byte per coordinate (as in iq_tables.h), `levels` the byte values of the
  // lattice levels in ascending order, `int8` whether bytes are signed (the IQ1 grid).
  // Neighbour lists hold every grid point whose squared index distance from the off-grid
  // point is at most (smallest such distance + nb_extra).
  Lattice(const uint64_t* grid64, const uint32_t* grid32, int size, int dim, std::span<const int> levels,
          bool is_int8, int nb_extra);

  int dim() const { return dim_; }
  int nlevels() const { return nlevels_; }
  int size() const { return size_; }
  // Level index (0..nlevels-1) of coordinate k of grid point g.
  uint8_t level(int g, int k) const { return points_[g * dim_ + k]; }

  // The best grid point for targets a[0..dim) with weights w at scale s > 0, where the
  // decoded coordinate values are s * lv[level] (lv ascending, nlevels entries) and mid[]
  // holds the nlevels-1 midpoints between consecutive lv. Exact when the rounded point is
  // on the grid; otherwise the best of its neighbour list.
  // `levels`, when given, receives the chosen point's level indices (saves the caller a
  // lookup of level() per coordinate).
  int search(const float* a, const float* w, float s, const float* lv, const float* mid,
             uint8_t* levels = nullptr) const;

  // Fraction of lattice points on the grid and mean neighbour-list length (diagnostics).
  double mean_neighbours() const;

 private:
  template <int Dim, int NLevels, int MaxCh>
  int search_impl(const float* a, const float* w, float s, const float* lv, const float* mid, uint8_t* levels) const;

  // Room for the coordinates in which a neighbour differs from its rounded point: all of them
  // (dim <= 8). Most lists need 2 or 4, but a nearest-shell neighbour of the sparse IQ2_XXS
  // grid can differ in 5 coordinates, and IQ1's extra shell adds more; the search sums only
  // max_changes_ (rounded up to 2, 4, 6 or 8) entries. (Room for 4 overflowed on IQ2_XXS:
  // found by the ASan+UBSan test run.)
  static constexpr int kMaxChanges = 8;

  int dim_, nlevels_, size_;
  std::vector<uint8_t> points_;    // size * dim level indices
  std::vector<uint8_t> offsets_;   // size * dim: k * nlevels + level (cost-table offsets)
  std::vector<int32_t> map_;       // lattice key -> grid index (>= 0) or -(1 + list start)
  std::vector<uint16_t> nb_;       // neighbour lists: count, then grid indices
  std::vector<uint8_t> changes_;   // kMaxChanges cost-table offsets per nb_ entry (see search)
  int max_changes_ = 1;            // the most changed coordinates of any neighbour
};

// The codebooks, each built on first use.
const Lattice& lattice_iq2xxs();
const Lattice& lattice_iq2xs();
const Lattice& lattice_iq2s();
const Lattice& lattice_iq3xxs();
const Lattice& lattice_iq3s();
const Lattice& lattice_iq1s();

// Per-weight importance used by the searches: w = qw^importance * (sigma2 + x^2)^magnitude_imat
// with an imatrix, (sigma2 + x^2)^magnitude_plain without; sigma2 = 2 * mean(x^2) over the
// block keeps small weights from getting no weight at all.
struct WeightProfile {
  float importance, magnitude_imat, magnitude_plain;
};
// Tuned on ggml's golden matrix (test_quants_iq prints the comparison). Taking the column
// importance at full strength over-fits it (plain error rises more than weighted error
// falls); a mild magnitude term keeps the large weights of a block, which dominate the
// layer's output, precise.
inline constexpr WeightProfile kLatticeWeights{0.7f, 0.1f, 0.25f};
void iq_weights(std::span<const float> x, const float* qw, std::span<float> w,
                const WeightProfile& profile = kLatticeWeights);
// The importance factor qw^importance depends on the imatrix column only: the row drivers
// raise a whole imatrix row once per call (importance_powers; empty in, empty out) and the
// block encoders use iq_weights_raised with their slice of it. Same weights as iq_weights,
// one pow() per column instead of one per weight.
std::vector<float> importance_powers(std::span<const float> imatrix, const WeightProfile& profile = kLatticeWeights);
void iq_weights_raised(std::span<const float> x, const float* qw_raised, std::span<float> w,
                       const WeightProfile& profile = kLatticeWeights);

// Rounds v to the nearest f16 and returns (bits, value).
struct HalfScale {
  uint16_t bits;
  float value;
};
HalfScale round_half(float v);

// A super-block format: d (f16) x per-sub-block scale code x lattice values x signs.
struct ScaledLatticeSpec {
  const Lattice* lattice;
  std::array<float, 8> levels;  // decoded coordinate values (grid bytes), ascending
  int sub_size;                 // weights per sub-block scale: 16 or 32
  int scale_codes;              // number of scale codes (16)
  float scale_mult[16];         // sub-block scale for code l is d * scale_mult[l]
  bool parity_signs;            // signs of each 8 weights must have an even count of negatives
  std::span<const float> trial_factors;  // first-pass scales: amax / (top level * factor)
  int refine_iters;             // least-squares refits of the best trial (scale <-> codes)
};

// Codes of one 256-weight super-block.
struct ScaledLatticeCodes {
  HalfScale d;
  uint8_t scale[16];     // scale code per sub-block
  uint16_t grid[64];     // grid index per lattice group (32 groups of 8 or 64 of 4)
  uint8_t signs[32];     // sign bits of each 8 weights (bit j set = negative)
};

// x: 256 weights; qw: 256 importance values raised by importance_powers (kLatticeWeights), or
// nullptr.
void quantize_scaled_lattice(const ScaledLatticeSpec& spec, const float* x, const float* qw,
                             ScaledLatticeCodes& out);

// Signs of 8 weights (bit j set = negative) and the magnitudes a[j] = |x[j]| to code. With
// parity-coded signs an odd count of negatives forces one weight to the wrong sign: the one
// where that costs least (smallest w x^2); its target becomes -|x| so the search gives it the
// smallest level.
uint8_t group_signs(const float* x, const float* w, bool parity, float* a);
// One sign group of 8 weights coded at the fixed decoded scale s > 0 (the error-feedback
// quantizer re-codes a group this way once the block's scales are fixed): the signs, then the
// best codebook point(s) for the magnitudes (8 / dim of them, written to grid), and the
// decoded values s * level * sign to y.
void code_group(const ScaledLatticeSpec& spec, const float* x, const float* w, float s, uint16_t* grid,
                uint8_t& signs, float* y);
// The decoded values of one sign group from its codes: y[j] = s * level * sign for the 8 / dim
// codebook points in grid and the sign bits (bit j for element j), as code_group writes them.
void decode_group(const ScaledLatticeSpec& spec, float s, const uint16_t* grid, uint8_t signs, float* y);

}  // namespace smolq::iq
