// The avx512vnni kernel set: the avx512 sources with vpdpbusd in the int8 GEMV (compiled with
// its own target flags, see binding.gyp; chosen only where the CPU reports AVX512-VNNI).
#if defined(__x86_64__)
#define QVL_ISA_AVX512 1
#define QVL_VNNI 1
#define QVL_NS isa_avx512vnni
#include "kernels_impl.inc"

const qvl::KernelTable* qvl::kernels_avx512vnni() { return &qvl::isa_avx512vnni::table; }
#else
#include "kernels.h"
const qvl::KernelTable* qvl::kernels_avx512vnni() { return nullptr; }
#endif
