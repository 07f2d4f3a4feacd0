// The avx2vnni kernel set: the avx2 sources with a 256-bit vpdpbusd in the int8 GEMV (compiled
// with its own target flags, see binding.gyp; chosen only where the CPU reports AVX-VNNI, which
// Alder Lake, Zen 4 and later have without necessarily having AVX-512).
#if defined(__x86_64__)
#define QVL_ISA_AVX2 1
#define QVL_AVXVNNI 1
#define QVL_NS isa_avx2vnni
#include "kernels_impl.inc"

const qvl::KernelTable* qvl::kernels_avx2vnni() {
  return __builtin_cpu_supports("avxvnni") ? &qvl::isa_avx2vnni::table : nullptr;
}
#else
#include "kernels.h"
const qvl::KernelTable* qvl::kernels_avx2vnni() { return nullptr; }
#endif
