// Lattice codecs of the error-feedback quantizer (ef_codec.h): IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS
// and IQ3_S. The block search and the packing are the kernels' own (iq_lattice_formats.h: the
// kernel is search + pack), so a block nobody touched is byte for byte the plain kernel's; a
// group that moved is re-coded with iq::code_group at its sub-block's fixed decoded scale.
#include <vector>

#include "quantize/blocks.h"
#include "quantize/ef_codec.h"
#include "quantize/iq_lattice_formats.h"

namespace smolq::ef::detail {
namespace {

// Each codec function is instantiated per type so the codec table stays plain function
// pointers.
template <GgmlType T>
const kernels::LatticeFormat& fmt() {
  static const kernels::LatticeFormat& f = *kernels::lattice_format(T);
  return f;
}

template <GgmlType T>
void choose(const float* x, const float* imatrix, LatticeState& st) {
  const iq::ScaledLatticeSpec& spec = *fmt<T>().spec;
  // The importance raised once per column, exactly as the row kernel does for its row.
  std::vector<float> qw;
  if (imatrix) qw = iq::importance_powers({imatrix, static_cast<size_t>(kQKK)});
  iq::quantize_scaled_lattice(spec, x, qw.empty() ? nullptr : qw.data(), st.codes);
  iq::iq_weights_raised({x, static_cast<size_t>(kQKK)}, qw.empty() ? nullptr : qw.data(), {st.w, static_cast<size_t>(kQKK)});
}

template <GgmlType T>
bool recode(LatticeState& st, int g, const float* x, const float* w, float* y) {
  const iq::ScaledLatticeSpec& spec = *fmt<T>().spec;
  const int sub = 8 * g / spec.sub_size;
  const float s = st.codes.d.value * spec.scale_mult[st.codes.scale[sub]];
  if (!(s > 0.0f)) return false;
  const int per_group = 8 / spec.lattice->dim();
  iq::code_group(spec, x, w ? w : st.w + 8 * g, s, st.codes.grid + per_group * g, st.codes.signs[g], y);
  return true;
}

template <GgmlType T>
void pack(const LatticeState& st, std::byte* blk) {
  fmt<T>().pack(st.codes, blk);
}

template <GgmlType T>
LatticeCodec make() {
  return {T, kQKK, static_cast<int>(type_info(T).block_bytes), 8, choose<T>, recode<T>, pack<T>, fmt<T>().spec};
}

}  // namespace

const LatticeCodec* lattice_codec(GgmlType t) {
  using G = GgmlType;
  static const LatticeCodec kIQ2_XXS = make<G::IQ2_XXS>(), kIQ2_XS = make<G::IQ2_XS>(), kIQ2_S = make<G::IQ2_S>(),
                            kIQ3_XXS = make<G::IQ3_XXS>(), kIQ3_S = make<G::IQ3_S>();
  switch (t) {
    case G::IQ2_XXS: return &kIQ2_XXS;
    case G::IQ2_XS: return &kIQ2_XS;
    case G::IQ2_S: return &kIQ2_S;
    case G::IQ3_XXS: return &kIQ3_XXS;
    case G::IQ3_S: return &kIQ3_S;
    default: return nullptr;
  }
}

}  // namespace smolq::ef::detail
