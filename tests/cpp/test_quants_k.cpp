// K-quants (Q2_K .. Q6_K): the golden-vector cases of quant_golden_cases.h.
#define SMOLQ_QUANT_SUITE "test_quants_k"
namespace {
const char* const kTypes[] = {"Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"};
}  // namespace
#include "quant_golden_cases.h"
