// A kernel table mixed from two sets, for CPUs on which one set is not best at everything.
//
// AMD Zen 4 runs AVX-512 as two 256-bit halves: its AVX-512 GEMM and attention beat the AVX2
// ones (32 registers, wider tiles), but the 256-bit int8 GEMV (vpdpbusd on ymm, four rows in
// flight) decodes faster than the 512-bit one on the same core (bench/model.ts --isa, q4 and q8).
// There, `best` takes every kernel from avx512vnni except the int8 GEMV, which comes from
// avx2vnni. Each part is the same code, and the same results, as in its own set; forcing a set
// (`useInstructionSet`) still gives that set alone.
#include "kernels.h"

namespace qvl {

namespace {

const KernelTable* g_wide = nullptr;    // avx512vnni
const KernelTable* g_narrow = nullptr;  // avx2vnni

/** The formats and shapes that the 256-bit int8 GEMV accepts (gemv_int8_avx2.inc). */
bool narrow_int8(const WeightDesc* w, int64_t n) {
  if (n > int8_max_tokens(w)) return false;
  if (w->format == FMT_Q8 || w->q4x8) return true;
  return w->format == FMT_Q4 && !w->gIdx && w->groupSize > 0 && (w->groupSize == 32 || w->groupSize % 64 == 0);
}

void mixed_matmul(const float* x, int64_t n, const WeightDesc* w, const float* bias, float* y) {
  (narrow_int8(w, n) ? g_narrow : g_wide)->matmul(x, n, w, bias, y);
}

}  // namespace

const KernelTable* kernels_wide_with_narrow_int8(const KernelTable* wide, const KernelTable* narrow) {
  // a function-local static: made once even when several worker threads load the addon at once
  static const KernelTable mixed = [&] {
    g_wide = wide;
    g_narrow = narrow;
    KernelTable t = *wide;
    t.name = "avx512vnni+avx2vnni-int8";
    t.matmul = mixed_matmul;
    return t;
  }();
  return &mixed;
}

}  // namespace qvl
