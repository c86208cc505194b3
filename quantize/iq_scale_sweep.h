// Exact scale search for "one scale times a small value table" block formats (IQ4_NL,
// IQ4_XS sub-blocks, Q2_0): minimise sum_i w_i (x_i - s * v[q_i])^2 over the scale s and
// the codes q_i, where for a given s each code is simply the value nearest to x_i / s.
//
// As s sweeps from 0 to +inf (or -inf), each weight's nearest code changes only where
// x_i / s crosses a midpoint between adjacent values, so the axis splits into at most
// n * (table size - 1) intervals with fixed codes; within one the error is a quadratic in
// s, minimised in closed form. Sorting the crossing points and sweeping them with running
// sums visits every interval once: O(n log n) for the global optimum, where a fixed fan of
// trial scales can only sample it.
#pragma once
#include <span>

namespace smolq::iq {

struct ScaleCandidate {
  float scale;  // signed scale
  float error;  // weighted squared error minus sum w x^2 (more negative is better)
};

// values: the code values, strictly ascending (at most 16). Both signs of s are searched,
// over the window where the largest |x| maps to |x|/|s| in [t_min, t_max] (a scale outside
// it clips or wastes the largest weight so badly that it is never the optimum). Writes up
// to out.size() of the best interval optima, best first, and returns how many; 0 when
// every weight is zero.
int best_scales(std::span<const float> x, std::span<const float> w, std::span<const float> values,
                std::span<ScaleCandidate> out, float t_max, float t_min);

// Index of the value nearest to t (ties go to the lower value), for the same table.
int nearest_value(std::span<const float> values, float t);

}  // namespace smolq::iq
