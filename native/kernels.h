// The C interface between the N-API layer and the per-ISA kernel sets.
//
// Each kernel set (kernels_avx512.cc, kernels_avx2.cc, kernels_base.cc) compiles the same
// sources with different target flags inside its own namespace and fills one KernelTable;
// the addon picks a table at run time from what the CPU supports. Nothing here uses the C++
// standard library, so no inline template can be instantiated with AVX-512 code and then
// shared with the portable code (an ODR trap that would crash older CPUs).
#pragma once
#include <stddef.h>
#include <stdint.h>

namespace qvl {

enum WeightFormat : int32_t { FMT_F32 = 0, FMT_BF16 = 1, FMT_F16 = 2, FMT_Q8 = 3, FMT_Q4 = 4, FMT_FP8 = 5 };

constexpr int kQ8Block = 32;
/** Tokens that the int8 GEMV (gemv_int8.inc) serves in one pass over q8 / q4 weights. */
constexpr int64_t kInt8MaxTokens = 8;
/**
 * q4 matmuls of up to this many tokens take the int8 GEMV, in passes of kInt8MaxTokens: a short
 * prompt costs a few passes over the packed bytes instead of decoding every weight to float32
 * for the GEMM (about 2 s per 4B-model forward on 2 cores, whatever the token count). Not q8:
 * its prompts keep float activations, which is what keeps q8 answers those of the float model.
 * This is the AVX-512 sets' limit for row-major q4, past which their GEMM is faster; the AVX2
 * sets have none (kQ4Int8MaxTokens in gemm.inc), nor does q4 repacked at prepare (q4x8.h).
 */
constexpr int64_t kInt8PassMaxTokens = 64;

/** The most weights that one matmulMany call takes (a layer's q, k and v; gate and up). */
constexpr int kMatmulManyMax = 4;

/**
 * AVX2 sets, 1 token over a float matrix: a row at a time with 4 FMA chains while the activations
 * fit this many bytes (L1). bf16 at 2 Zen 4 cores: 2560→9728 24 → 34 GB/s, the 2560-column head
 * 24 → 33–35; 9728 columns (x from L2) drop 29 → 21, so they keep 4 rows. The AVX-512 sets gained
 * nothing from it in zmm registers, and on Zen 4 the AVX2 set's is faster than theirs
 * (kernels_mixed.cc).
 */
constexpr int64_t kGemvOneRowMaxX = 16 << 10;

/** A weight matrix [rows, cols] in the caller's memory (see src/kernels/weight.ts). */
struct WeightDesc {
  int32_t format;
  int64_t rows;
  int64_t cols;
  const void* data;       // f32 / bf16 / f16 values, or the q8 / q4 / fp8 bytes
  const float* scales;    // q8, q4, fp8
  const uint8_t* zeros;   // q4, optional (null = 8)
  const int32_t* gIdx;    // q4, optional act-order group of each column
  int32_t groupSize;      // q4
  int32_t nGroups;        // q4
  int32_t blockRows;      // fp8
  int32_t blockCols;      // fp8
  // q4 repacked by prepare into native/q4x8.h's layout (eight rows interleaved); data, scales
  // and zeros are then null, and every q4 reader takes this stream instead
  const uint8_t* q4x8;
  int32_t q4x8Zeros;  // whether the stream holds zero points (else 8)
  int32_t q4x8F16;    // whether its scales are binary16 (else float32)
  // q8 repacked likewise (native/q8x8.h); data and scales are then null
  const uint8_t* q8x8;
  int32_t q8x8F16;  // whether its scales are binary16 (else float32)
  // q8: the int8 GEMV quantizes the activations on a grid 64 times finer than int8's (two
  // int8 halves, int8_act256.inc); a row-major q8 weight so marked declines the int8 GEMV (float activations)
  int32_t q8Fine;
  // a float matrix copied out of a file mapping by prepare (data then points here)
  void* ownedData;
  // bytes prepare allocated for this weight (q4x8, q8x8, ownedData), reported to V8 as external
  // memory until they are freed
  int64_t ownedBytes;
  // freed by releaseWeight: a handle kept past it is refused
  int32_t released;
};

/**
 * Whether the AVX-512 VNNI set's eight-row int8 GEMVs take two row groups per 512-bit register
 * for passes of 2 or more tokens (native/int8_pair512.inc): from the CPU unless set, true on
 * AMD CPUs whose 512-bit operations are not split (Zen 5; cpu_splits_512bit_ops), the only kind
 * it was measured on (Zen 4, which splits them, was slower that way). Either way the results are
 * bit-identical, so a change while other threads compute changes nothing but their speed.
 */
bool int8_gemv_512();
/** 1 or 0 forces the choice (tests and benchmarks cover both), −1 gives it back to the CPU. */
void set_int8_gemv_512(int on);

/** Whether a matmul of n tokens over w takes the one-row float GEMV in the AVX2 sets. */
inline bool takes_one_row_gemv(const WeightDesc* w, int64_t n) {
  const bool fl = w->format == FMT_F32 || w->format == FMT_BF16 || w->format == FMT_F16;
  return n == 1 && fl && w->cols * 4 <= kGemvOneRowMaxX;
}

enum KvType : int32_t { KV_F32 = 0, KV_BF16 = 1, KV_F16 = 2, KV_Q8 = 3 };
/** Bytes per cached value of a KV type. */
constexpr int64_t kv_elem_bytes(int32_t type) { return type == KV_F32 ? 4 : type == KV_Q8 ? 1 : 2; }

/**
 * Keys and values for attention: blocks of `blockTokens` tokens of `type`. KV cache blocks are
 * head-major, [kvHead][token][headDim] (src/kernels/kv.ts), so that one head's rows are
 * contiguous for streaming; float32 arrays are one token-major block [token][kvHead][headDim].
 */
/**
 * The most tokens for which a matmul over w takes the int8 GEMV (when w's layout allows it):
 * row-major q4 up to `q4Max` (the kernel set's own limit: kInt8PassMaxTokens by default),
 * repacked q4 any number (512-token q4 prefill, 2 Zen 4 cores, avx512vnni: 25.7 tok/s through
 * the GEMM, 47.7 in int8 passes).
 */
inline int64_t int8_max_tokens(const WeightDesc* w, int64_t q4Max = kInt8PassMaxTokens) {
  if (w->format != FMT_Q4) return kInt8MaxTokens;
  return w->q4x8 ? INT64_MAX : q4Max;  // repacked q4: int8 passes at any length in every set
}

/** Bytes of one weight row, with its share of scales and zero points (GEMV task sizing). */
inline int64_t weight_row_bytes(const WeightDesc* w) {
  switch (w->format) {
    case FMT_F32: return 4 * w->cols;
    case FMT_BF16:
    case FMT_F16: return 2 * w->cols;
    case FMT_Q8: return w->cols + (w->q8x8F16 ? 2 : 4) * ((w->cols + kQ8Block - 1) / kQ8Block);
    case FMT_Q4:
      if (w->q4x8)
        return (w->cols + 31) / 32 * 16 + (w->cols + w->groupSize - 1) / w->groupSize * ((w->q4x8F16 ? 2 : 4) + (w->q4x8Zeros ? 1 : 0));
      return (w->cols + 1) / 2 + int64_t(w->nGroups) * (w->zeros ? 5 : 4);
    default: return w->cols;  // fp8: one block scale per blockRows·blockCols weights, negligible
  }
}

/**
 * Rows per GEMV task. Each task starts cold (the rows after it usually go to the other thread,
 * so its row streams were not prefetched), so a task covers at least 256 KiB of weights; at
 * 32 rows a 2560-column q4 matrix paid that start every 52 KiB and 2 threads were barely faster
 * than 1. At most rows / (4 · threads), so that a thread that starts late still finds work.
 * A multiple of 8 (the kernels take rows in blocks of up to 4).
 */
inline int64_t gemv_rows_per_task(const WeightDesc* w, int threads) {
  const int64_t rowBytes = weight_row_bytes(w) > 0 ? weight_row_bytes(w) : 1;  // cols ≥ 1 here
  int64_t r = ((256 << 10) + rowBytes - 1) / rowBytes;
  const int64_t cap = w->rows / (4 * int64_t(threads > 0 ? threads : 1));
  if (r > cap) r = cap;
  r = (r + 7) / 8 * 8;
  return r < 8 ? 8 : r;
}

struct KvSource {
  int32_t type;
  int32_t headMajor;
  int64_t blockTokens;
  int64_t rowStride;           // token-major blocks: values from a token's row to the next (≥ kvHeads·headDim)
  const void* const* k;        // per block: its key rows
  const void* const* v;        // per block: its value rows
  const float* const* kScale;  // q8: per block [blockTokens][kvHeads]
  const float* const* vScale;
};

struct AttentionArgs {
  const float* q;
  int64_t qStride;  // values from a query's row to the next (≥ heads·headDim); out is packed
  KvSource kv;
  float* out;
  int32_t nQ, nKv, heads, kvHeads, headDim;
  float scale;
  int32_t causal;
  int32_t qOffset;
  const int32_t* segments;  // null or nSegments+1 boundaries
  int32_t nSegments;
  int32_t int16;  // float32 keys and values: int16 products (attention_i16.inc) where the set has them
  // attentionBatch: nQ new key and value rows ([nQ][kvHeads·headDim]) that it writes into the cache
  // at positions qOffset.. (kv_write_row) before they are read; null: the cache holds them already
  const float* newK;
  const float* newV;
};

struct KernelTable {
  const char* name;
  void (*matmul)(const float* x, int64_t n, const WeightDesc* w, const float* bias, float* y);
  /**
   * y[i] = x · w[i]ᵀ (+ bias[i], which may be null) for i < count ≤ kMatmulManyMax, every w[i] of
   * x's columns: each y[i] what matmul gives it, bit for bit; repacked q4 / q8 weights in one
   * pool job over activations quantized once (int8_many.inc).
   */
  void (*matmulMany)(const float* x, int64_t n, int count, const WeightDesc* const* w, const float* const* bias, float* const* y);
  void (*gatherRows)(const WeightDesc* w, const int32_t* ids, int64_t count, float* out);
  void (*rmsNorm)(const float* x, int64_t rows, int64_t dim, const float* weight, float eps, float* out);
  void (*layerNorm)(const float* x, int64_t rows, int64_t dim, const float* weight, const float* bias, float eps,
                    float* out);
  void (*rope)(float* x, int64_t n, int64_t stride, int32_t heads, int32_t headDim, const float* cos, const float* sin);
  void (*attention)(const AttentionArgs* a);
  /** Several attentions at once (a batched decode step's sequences, one layer): one job for all. */
  void (*attentionBatch)(const AttentionArgs* a, int64_t n);
  void (*siluMul)(const float* gate, const float* up, float* out, int64_t len);
  void (*geluTanh)(float* x, int64_t len);
  void (*geluErf)(float* x, int64_t len);
  void (*add)(float* a, const float* b, int64_t len);
  /** The first index of the largest value, NaN never chosen; 0 when there is none (all NaN, or len 0). */
  int64_t (*argmax)(const float* x, int64_t len);
  /**
   * Benchmark probes: FMA throughput on one thread (GFLOP/s), a streaming read (bytes summed) and
   * the int8 dot product's throughput on one thread (GMAC/s; 0 where the set has none).
   */
  double (*fmaProbe)(int64_t iters);
  double (*readProbe)(const float* p, int64_t len);
  double (*int8Probe)(int64_t iters);
};

/**
 * A float matrix (f32, bf16 or f16, row-major) to quantize into the caller's q8 or q4 arrays,
 * laid out as src/kernels/weight.ts describes them (native/quantize.inc).
 */
struct QuantArgs {
  int32_t format;  // FMT_F32, FMT_BF16 or FMT_F16
  int64_t rows;
  int64_t cols;
  const void* data;
  int32_t bits;       // 8 (q8 blocks of kQ8Block) or 4 (q4 groups)
  int32_t refit;      // q8: least-squares block scales (refitQ8): 0 none, 1, 2 with binary16 scales
  int32_t groupSize;  // q4
  int32_t symmetric;  // q4: zero point 8, no zeros array
  void* qs;
  float* scales;
  uint8_t* zeros;  // q4 asymmetric
  // q4 (group size a multiple of 32) written straight into the eight-row stream of q4x8.h
  // instead of qs / scales / zeros: q4x8_bytes of its layout, binary16 scales when q4x8F16
  uint8_t* q4x8;
  int32_t q4x8F16;
};

/**
 * Quantizes on the calling thread's pool, bit-identically to src/weights/convert.ts (native/
 * quantize.inc); returns −1, or row·cols + col of the first NaN/±Infinity weight, or −2 where a
 * binary16 stream (q4x8F16) met a scale binary16 cannot hold.
 */
typedef int64_t (*QuantizeFn)(const QuantArgs* a);
QuantizeFn quantizer_avx2();  // null off x86-64
QuantizeFn quantizer_base();

/**
 * GPTQ's column-by-column sweep of columns [k0, k1) of every row, as `direct` in
 * src/weights/quant/gptq-quantize.ts does it (native/gptq_sweep.inc): asymmetric q4 groups of
 * groupSize (k0 a multiple of it), codes OR-ed into qs, each column's error over U[c,c] written
 * to err, the later columns of the range updated in w.
 */
struct GptqSweepArgs {
  float* w;  // [rows, cols] the weights as earlier columns' errors left them
  int64_t rows;
  int64_t cols;
  int64_t k0, k1;
  int64_t groupSize;
  const float* u;  // [cols, cols] the upper-triangular factor of H⁻¹
  float* err;      // [rows, cols]
  uint8_t* qs;     // [rows, (cols + 1) / 2]
  float* scales;   // [rows, groups]
  uint8_t* zeros;  // [rows, groups]
};

/** Runs on the calling thread's pool; returns −1, or row·cols + col of the first NaN/±Infinity weight a group met. */
typedef int64_t (*GptqSweepFn)(const GptqSweepArgs* a);
GptqSweepFn gptq_sweeper_avx2();  // null off x86-64
GptqSweepFn gptq_sweeper_base();

const KernelTable* kernels_avx512vnni();
const KernelTable* kernels_avx512();
const KernelTable* kernels_avx2();
const KernelTable* kernels_avx2vnni();  // null where the CPU lacks AVX-VNNI
const KernelTable* kernels_base();
/**
 * `wide`'s kernels, except the 1-token one-row float GEMV from `narrow`, and the int8 GEMV too
 * when `narrowInt8` (kernels_mixed.cc); made once.
 */
const KernelTable* kernels_wide_with_narrow_gemv(const KernelTable* wide, const KernelTable* narrow, bool narrowInt8);

// Thread pool (threadpool.cc), plain C-style so the kernel sets can call it. Each JS thread owns
// one pool (the addon makes it, binds it with pool_use and deletes it when the thread's Node
// environment ends); the calls below act on the calling thread's pool.
struct Pool;
/** A pool of `threads` threads (the caller counts as one). */
Pool* pool_new(int threads);
/** Stops and joins the pool's threads. */
void pool_delete(Pool* p);
/** Makes `p` the calling thread's pool (null: none). */
void pool_use(Pool* p);
typedef void (*TaskFn)(void* ctx, int64_t task, int thread);
/** Runs fn(ctx, t, thread) for t in [0, nTasks) on the pool; returns when all are done. */
void parallel_for(int64_t nTasks, TaskFn fn, void* ctx);
int pool_threads();
/**
 * A 64-byte-aligned scratch buffer owned by `thread`, valid until the next call with that thread
 * and slot. Slots 0–2 are per-task buffers of the running kernel; slots 2–5 of thread 0 also hold
 * per-call buffers (GEMM packed activations 2, int8 activations 3, attention Kᵀ and V or the
 * partial sums of split keys 4–5).
 */
void* pool_scratch(int thread, size_t bytes, int slot);

}  // namespace qvl
