/**
 * The native kernel sets, widest first, and 'best' (the widest this CPU runs). The one list the
 * CLI's `--isa`, the library's `isa` option, the benchmarks and the tests take their names from;
 * the addon's `setIsa` (native/addon.cc) accepts each of them.
 *
 * 'avx512vnni': AVX-512 with vpdpbusd in the int8 GEMV; 'avx512': F/BW/DQ/VL only (the Skylake-SP
 * class); 'avx2vnni': AVX2 with the 256-bit vpdpbusd of AVX-VNNI in the int8 GEMV; 'avx2';
 * 'scalar': the portable build.
 */
export const INSTRUCTION_SETS = ['best', 'avx512vnni', 'avx512', 'avx2vnni', 'avx2', 'scalar'] as const;

export type InstructionSet = (typeof INSTRUCTION_SETS)[number];

/** A kernel set by name: every set but 'best'. */
export type KernelSet = Exclude<InstructionSet, 'best'>;

/** The kernel sets, widest first. */
export const KERNEL_SETS: readonly KernelSet[] = INSTRUCTION_SETS.filter((s): s is KernelSet => s !== 'best');
