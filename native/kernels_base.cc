// The portable kernel set: baseline target flags, plain vector extensions (SSE2 on x86-64).
#define QVL_ISA_BASE 1
#define QVL_NS isa_base
#include "kernels_impl.inc"

const qvl::KernelTable* qvl::kernels_base() { return &qvl::isa_base::table; }
