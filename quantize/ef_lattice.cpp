// Lattice codecs of the error-feedback quantizer (ef_codec.h): IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
// IQ3_S.
#include "quantize/ef_codec.h"

namespace smolq::ef::detail {

const LatticeCodec* lattice_codec(GgmlType) { return nullptr; }

}  // namespace smolq::ef::detail
