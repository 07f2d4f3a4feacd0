// What the CPU offers: instruction sets (checked with the OS's saved-state support) and cores.
#pragma once

namespace qvl {
/** AVX-512 F, BW, DQ and VL with FMA and F16C: what the avx512 kernel set is compiled for. */
bool cpu_has_avx512();
/** cpu_has_avx512() and AVX512-VNNI (vpdpbusd). */
bool cpu_has_avx512vnni();
/** An AMD CPU with AVX-512 (Zen 4 and later). */
bool cpu_is_amd_with_avx512();
/**
 * An AMD CPU with AVX-512 whose SIMD datapath is 256 bits wide, so that 512-bit operations run as
 * two halves (Zen 4; Zen 5 server and desktop cores have a 512-bit datapath).
 */
bool cpu_splits_512bit_ops();
/** AVX2 with FMA and F16C. */
bool cpu_has_avx2();
/** Physical cores this process may run on (hyper-threads counted once). */
int physical_cores();
}  // namespace qvl
