// q4 weights repacked eight rows at a time: the layout the int8 GEMV reads in one linear stream
// (gemv_q4x8.inc), made once by `prepare` (q4x8_pack.cc).
//
// Rows go in groups of 8 (the last one padded with zero rows); a row group holds, for each
// quantization group g of its rows, one record:
//
//   [nbg blocks × 128 nibble bytes][8 scales, row 0..7][8 u8 zero points, only if any]
//
// The scales are binary16 when every scale of the matrix is one exactly (qvl's quantizer rounds
// them so, GPTQ and AWQ store them so: 0.5625 bytes per weight, as GGML's Q4_0), else float32.
// nbg = groupSize/32 blocks of 32 columns (fewer in the last group). In a block, byte 4·i + k of
// the j-th 32-byte chunk (j = 0..3) holds row i's column 4j + k in its low nibble and column
// 16 + 4j + k in its high nibble. Masked, a chunk is one vpdpbusd operand whose int32 lane i is
// row i's dot product with 4 broadcast activation bytes: one float epilogue per block serves
// eight rows instead of one, and the stream has no second array to chase. Columns past the
// matrix are nibble 0 (their activations are 0). The bytes are those of the row-major layout,
// moved: the record holds exactly what src/kernels/weight.ts's Q4Weight holds.
#pragma once
#include <stdint.h>

#include "kernels.h"

namespace qvl {

constexpr int kQ4x8Rows = 8;

/** Whether `prepare` repacks this q4 weight (act-order and group sizes off 32 keep row-major). */
static inline bool q4x8_eligible(const WeightDesc* w) {
  return w->format == FMT_Q4 && !w->gIdx && w->groupSize > 0 && w->groupSize % 32 == 0 && w->rows > 0 && w->cols > 0;
}

struct Q4x8Layout {
  int64_t blocks;       // 32-column blocks per row
  int64_t groupBlocks;  // blocks per quantization group
  int64_t groups;       // groups per row
  int64_t scaleBytes;   // 2 (binary16) or 4 (float32) per row
  int64_t zeroBytes;    // 8 or 0
  int64_t recordBytes;  // one full group's record
  int64_t rowGroupBytes;
  int64_t rowGroups;
};

static inline Q4x8Layout q4x8_layout(int64_t rows, int64_t cols, int64_t groupSize, bool zeros, bool f16) {
  Q4x8Layout l;
  l.scaleBytes = f16 ? 2 : 4;
  l.blocks = (cols + 31) / 32;
  l.groupBlocks = groupSize / 32;
  l.groups = (cols + groupSize - 1) / groupSize;
  l.zeroBytes = zeros ? 8 : 0;
  l.recordBytes = l.groupBlocks * 128 + 8 * l.scaleBytes + l.zeroBytes;
  l.rowGroupBytes = l.blocks * 128 + l.groups * (8 * l.scaleBytes + l.zeroBytes);
  l.rowGroups = (rows + kQ4x8Rows - 1) / kQ4x8Rows;
  return l;
}

static inline Q4x8Layout q4x8_layout(const WeightDesc* w) {
  return q4x8_layout(w->rows, w->cols, w->groupSize, w->q4x8Zeros != 0, w->q4x8F16 != 0);
}

/** Bytes of the repacked stream. */
static inline int64_t q4x8_bytes(const Q4x8Layout& l) { return l.rowGroups * l.rowGroupBytes; }

/** Whether every scale of the row-major q4 weight `w` is a binary16 value (0 included). */
bool q4x8_scales_fit_f16(const WeightDesc* w);

/**
 * Writes the repacked stream of the row-major q4 weight `w` (q4x8_eligible) to `out`
 * (q4x8_bytes of q4x8_layout(…, f16), 64-byte aligned), on the calling thread's pool; f16: the
 * scales as binary16 (q4x8_scales_fit_f16).
 */
void q4x8_pack(const WeightDesc* w, bool f16, uint8_t* out);

}  // namespace qvl
