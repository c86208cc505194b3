// Legacy 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1): the golden-vector cases of quant_golden_cases.h.
#define SMOLQ_QUANT_SUITE "test_quants_legacy"
namespace {
const char* const kTypes[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1"};
}  // namespace
#include "quant_golden_cases.h"
