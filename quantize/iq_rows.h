// Row/block iteration shared by the kernels in quants_iq.h: hands each block's weights and
// its slice of the importance matrix to a per-block encoder, and each stored block to a
// per-block decoder. Blocks are copied through memcpy because a block inside a mapped file
// or a packed row need not be aligned for its uint16 fields.
#pragma once
#include <cassert>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>

namespace smolq::iq {

// enc(const float* x, const float* qw_or_null, Block& out) for every block of every row.
template <typename Block, int N, typename Enc>
void encode_rows(std::span<const float> src, std::span<std::byte> dst, int64_t n_per_row,
                 std::span<const float> imatrix, Enc&& enc) {
  assert(n_per_row > 0 && n_per_row % N == 0 && src.size() % n_per_row == 0);
  assert(imatrix.empty() || imatrix.size() == static_cast<size_t>(n_per_row));
  const size_t nb = src.size() / N;
  const size_t per_row = static_cast<size_t>(n_per_row) / N;
  assert(dst.size() == nb * sizeof(Block));
  for (size_t b = 0; b < nb; ++b) {
    Block blk{};
    const float* qw = imatrix.empty() ? nullptr : imatrix.data() + (b % per_row) * N;
    enc(src.data() + b * N, qw, blk);
    std::memcpy(dst.data() + b * sizeof(Block), &blk, sizeof(Block));
  }
}

// dec(const Block&, float* y) for every block covering dst.
template <typename Block, int N, typename Dec>
void decode_rows(std::span<const std::byte> src, std::span<float> dst, Dec&& dec) {
  assert(dst.size() % N == 0);
  const size_t nb = dst.size() / N;
  assert(src.size() >= nb * sizeof(Block));
  for (size_t b = 0; b < nb; ++b) {
    Block blk;
    std::memcpy(&blk, src.data() + b * sizeof(Block), sizeof(Block));
    dec(blk, dst.data() + b * N);
  }
}

}  // namespace smolq::iq
