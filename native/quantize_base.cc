// The portable load-time quantizer: quantize.inc with the baseline target flags.
#define QVL_QNS quant_base
#include "quantize.inc"

qvl::QuantizeFn qvl::quantizer_base() { return &qvl::quant_base::quantize; }
