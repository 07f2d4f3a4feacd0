// The load-time quantizer compiled for AVX2 (its own target flags, see binding.gyp); the addon
// uses it wherever the kernel set in use is an AVX2 or AVX-512 one.
#if defined(__x86_64__)
#define QVL_QNS quant_avx2
#include "quantize.inc"

qvl::QuantizeFn qvl::quantizer_avx2() { return &qvl::quant_avx2::quantize; }
#else
#include "kernels.h"
qvl::QuantizeFn qvl::quantizer_avx2() { return nullptr; }
#endif
