// The f32 micro-kernel with AVX-512VL's 32 vector registers: the same 8-lane arithmetic as
// matmul_avx2.cpp (eval/matmul_tile.h, one template) on tiles of up to 4 weight rows x 6 tokens
// instead of 4 x 3, so each weight load serves twice the fused multiply-adds. Every output is
// computed exactly as on AVX2 (same bits); matmul.cpp selects it when cpu::has_avx512().
// Same linkage rules as matmul_avx2.cpp.
#include <immintrin.h>

#include <cstdint>

#include "eval/matmul.h"

#if defined(__GNUC__) && (defined(__x86_64__) || defined(__i386__))
#pragma GCC push_options
#pragma GCC target("avx512f,avx512vl,avx2,fma")
#if defined(__clang__)  // clang ignores the GCC pragma: the same target through its own
#pragma clang attribute push(__attribute__((target("avx512f,avx512vl,avx2,fma"))), apply_to = function)
#endif

#include "eval/matmul_tile.h"

namespace smolq::detail {
namespace {

using Tile = void (*)(const float* const*, const float* const*, int64_t, int64_t, int64_t, float*, float*, int64_t);
// Indexed [rm - 1][rn - 1].
const Tile kTiles[4][6] = {
    {tile<1, 1>, tile<1, 2>, tile<1, 3>, tile<1, 4>, tile<1, 5>, tile<1, 6>},
    {tile<2, 1>, tile<2, 2>, tile<2, 3>, tile<2, 4>, tile<2, 5>, tile<2, 6>},
    {tile<3, 1>, tile<3, 2>, tile<3, 3>, tile<3, 4>, tile<3, 5>, tile<3, 6>},
    {tile<4, 1>, tile<4, 2>, tile<4, 3>, tile<4, 4>, tile<4, 5>, tile<4, 6>},
};

}  // namespace

void tile_avx512(const float* const* w, int rm, const float* const* x, int rn, int64_t k0, int64_t k1, int64_t k, float* acc,
                 float* y, int64_t ldy) {
  kTiles[rm - 1][rn - 1](w, x, k0, k1, k, acc, y, ldy);
}

}  // namespace smolq::detail

#if defined(__clang__)
#pragma clang attribute pop
#endif
#pragma GCC pop_options

#else  // not x86 with GCC/Clang: never selected (cpu::has_avx512() is false), kept linkable.

namespace smolq::detail {
void tile_avx512(const float* const* w, int rm, const float* const* x, int rn, int64_t k0, int64_t k1, int64_t k, float* acc,
                 float* y, int64_t ldy) {
  tile_portable(w, rm, x, rn, k0, k1, k, acc, y, ldy);
}
}  // namespace smolq::detail

#endif
