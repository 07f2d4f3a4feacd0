// A kernel table mixed from two sets, for CPUs on which one set is not best at everything.
//
// AMD CPUs with AVX-512: their AVX-512 GEMM and attention beat the AVX2 ones (32 registers, wider
// tiles), but GEMVs run faster from an AVX2 set on the same core:
// - the one-row float GEMV of 1 token (kGemvOneRowMaxX in kernels.h): bf16 2560→9728 on 2 Zen 4
//   cores 2.05 ms in avx512vnni, 1.52–1.69 in avx2 (the 2560-column head 32–35 → 24–25 ms); on 2
//   Zen 5 cores 1.31 → 1.19 ms (head 20.5 → 18.9);
// - where 512-bit operations run as two halves (Zen 4) and the CPU has AVX-VNNI, the 256-bit
//   int8 GEMV (vpdpbusd on ymm). On Zen 5, whose datapath is 512 bits wide, the AVX-512 int8
//   GEMV is as fast for one token and faster for passes of several (batched decode): 13–17% for
//   q4 passes of 8 tokens with ymm, more with two row groups per zmm (int8_pair512.inc).
// There, `best` takes every other kernel from avx512vnni. Each part is the same code, and the
// same results, as in its own set; forcing a set (`useInstructionSet`) still gives that set alone.
#include "kernels.h"

namespace qvl {

namespace {

const KernelTable* g_wide = nullptr;    // avx512vnni
const KernelTable* g_narrow = nullptr;  // avx2vnni, or avx2 where the CPU lacks AVX-VNNI
bool g_narrow_int8 = false;             // whether the int8 GEMV comes from g_narrow

/** The formats and shapes that the 256-bit int8 GEMV accepts (gemv_int8_avx2.inc). */
bool narrow_int8(const WeightDesc* w, int64_t n) {
  if (n > int8_max_tokens(w)) return false;
  if (w->format == FMT_Q8 || w->q4x8) return true;
  return w->format == FMT_Q4 && !w->gIdx && w->groupSize > 0 && (w->groupSize == 32 || w->groupSize % 64 == 0);
}

void mixed_matmul(const float* x, int64_t n, const WeightDesc* w, const float* bias, float* y) {
  const bool narrow = (g_narrow_int8 && narrow_int8(w, n)) || takes_one_row_gemv(w, n);
  (narrow ? g_narrow : g_wide)->matmul(x, n, w, bias, y);
}

/** One set's matmulMany where every weight goes to the same set, else a matmul at a time. */
void mixed_matmul_many(const float* x, int64_t n, int count, const WeightDesc* const* w, const float* const* bias, float* const* y) {
  int narrow = 0;
  for (int i = 0; i < count; i++) narrow += (g_narrow_int8 && narrow_int8(w[i], n)) || takes_one_row_gemv(w[i], n);
  if (narrow == 0 || narrow == count) return (narrow ? g_narrow : g_wide)->matmulMany(x, n, count, w, bias, y);
  for (int i = 0; i < count; i++) mixed_matmul(x, n, w[i], bias[i], y[i]);
}

}  // namespace

const KernelTable* kernels_wide_with_narrow_gemv(const KernelTable* wide, const KernelTable* narrow, bool narrowInt8) {
  // a function-local static: made once even when several worker threads load the addon at once
  static const KernelTable mixed = [&] {
    g_wide = wide;
    g_narrow = narrow;
    g_narrow_int8 = narrowInt8;
    KernelTable t = *wide;
    t.name = narrowInt8 ? "avx512vnni+avx2vnni-gemv" : "avx512vnni+avx2-gemv";
    t.matmul = mixed_matmul;
    t.matmulMany = mixed_matmul_many;
    return t;
  }();
  return &mixed;
}

}  // namespace qvl
