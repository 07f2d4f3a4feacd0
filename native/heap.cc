#include "heap.h"

#include <stdlib.h>  // defines __GLIBC__ where glibc is the C library
#if defined(__GLIBC__)
#include <malloc.h>
#endif

namespace qvl {

// JavaScript's ArrayBuffers live on the C heap. glibc raises its mapping threshold each time a
// mapped block is freed (up to 32 MiB), so after the first large buffers go, blocks up to 32 MiB
// come from the arenas, and freed ones stay resident there. Quantizing a 4B model at load frees
// hundreds of such blocks (each matrix's row-major bytes, once repacked): 0.36 GiB stayed resident
// after load (3.30 against 2.94 GiB), and the peak of a 512-token q4 prefill was 3.41 GiB against
// 3.10. A fixed threshold keeps large blocks mapped; decode steps reuse their activations, so the
// extra page faults are a few per step.
void unmap_large_frees() {
#if defined(__GLIBC__)
  static const bool done = mallopt(M_MMAP_THRESHOLD, 1 << 20) != 0;
  (void)done;
#endif
}

}  // namespace qvl
