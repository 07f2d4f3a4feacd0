// The avx2 kernel set (compiled with its own target flags, see binding.gyp).
#if defined(__x86_64__)
#define QVL_ISA_AVX2 1
#define QVL_NS isa_avx2
#include "kernels_impl.inc"

const qvl::KernelTable* qvl::kernels_avx2() { return &qvl::isa_avx2::table; }
#else
#include "kernels.h"
const qvl::KernelTable* qvl::kernels_avx2() { return nullptr; }
#endif
