// q8 weights repacked eight rows at a time: the layout the int8 GEMV reads in one linear stream
// (gemv_q8x8.inc), made once by `prepare` (q8x8_pack.cc).
//
// Rows go in groups of 8 (the last one padded with zero rows); a row group holds, for each
// block of 32 columns, one record:
//
//   [8 chunks × 32 bytes of int8 weights][8 scales, row 0..7]
//
// The scales are binary16 when every scale of the matrix is one exactly (the least-squares refit
// that quantizing at load and `qvl quantize` run rounds them so: 272 bytes per record, as GGML's
// Q8_0 streams), else float32 (288 bytes). Byte 4·i + k of chunk j holds row i's column 4j + k:
// one 256-bit chunk is 8 rows × 4 columns, multiplied with 4 broadcast activation bytes, and one
// float epilogue per block serves the eight rows (as in q4x8.h). Columns past the matrix are 0.
// The records hold exactly the values of src/kernels/weight.ts's Q8Weight, moved.
#pragma once
#include <stdint.h>

#include "kernels.h"

namespace qvl {

constexpr int kQ8x8Rows = 8;

/** Whether `prepare` repacks this weight. */
static inline bool q8x8_eligible(const WeightDesc* w) { return w->format == FMT_Q8 && w->rows > 0 && w->cols > 0; }

static inline int64_t q8x8_blocks(int64_t cols) { return (cols + 31) / 32; }
static inline int64_t q8x8_record_bytes(bool f16) { return 8 * 32 + 8 * (f16 ? 2 : 4); }
static inline int64_t q8x8_row_group_bytes(int64_t cols, bool f16) { return q8x8_blocks(cols) * q8x8_record_bytes(f16); }
static inline int64_t q8x8_bytes(int64_t rows, int64_t cols, bool f16) {
  return (rows + kQ8x8Rows - 1) / kQ8x8Rows * q8x8_row_group_bytes(cols, f16);
}

/** Whether every scale of the row-major q8 weight `w` is a binary16 value (0 included). */
bool q8x8_scales_fit_f16(const WeightDesc* w);

/**
 * Writes the repacked stream of the row-major q8 weight `w` to `out` (q8x8_bytes, 64-byte
 * aligned), on the calling thread's pool; f16: the scales as binary16 (q8x8_scales_fit_f16).
 */
void q8x8_pack(const WeightDesc* w, bool f16, uint8_t* out);

}  // namespace qvl
