// The avx512 kernel set (compiled with its own target flags, see binding.gyp).
#if defined(__x86_64__)
#define QVL_ISA_AVX512 1
#define QVL_NS isa_avx512
#include "kernels_impl.inc"

const qvl::KernelTable* qvl::kernels_avx512() { return &qvl::isa_avx512::table; }
#else
#include "kernels.h"
const qvl::KernelTable* qvl::kernels_avx512() { return nullptr; }
#endif
