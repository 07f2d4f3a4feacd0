// The load-time quantizer and GPTQ sweep compiled for AVX2 (its own target flags, see binding.gyp); the addon
// uses it wherever the kernel set in use is an AVX2 or AVX-512 one.
#if defined(__x86_64__)
#define QVL_QNS quant_avx2
#include "quantize.inc"
#include "gptq_sweep.inc"

qvl::QuantizeFn qvl::quantizer_avx2() { return &qvl::quant_avx2::quantize; }
qvl::GptqSweepFn qvl::gptq_sweeper_avx2() { return &qvl::quant_avx2::gptq_sweep_q4; }
#else
#include "kernels.h"
qvl::QuantizeFn qvl::quantizer_avx2() { return nullptr; }
qvl::GptqSweepFn qvl::gptq_sweeper_avx2() { return nullptr; }
#endif
