// The portable load-time quantizer and GPTQ sweep: quantize.inc, gptq_sweep.inc with the baseline target flags.
#define QVL_QNS quant_base
#include "quantize.inc"
#include "gptq_sweep.inc"

qvl::QuantizeFn qvl::quantizer_base() { return &qvl::quant_base::quantize; }
qvl::GptqSweepFn qvl::gptq_sweeper_base() { return &qvl::quant_base::gptq_sweep_q4; }
