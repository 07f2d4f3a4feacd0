// Row-major q4 → the eight-row layout of q4x8.h. Portable code: it runs once per weight at
// prepare, on the pool, at about the speed of a copy.
#include <string.h>

#include "half.h"
#include "q4x8.h"

namespace qvl {

namespace {

struct PackCtx {
  const WeightDesc* w;
  Q4x8Layout l;
  uint8_t* out;
  int64_t rowGroupsPerTask;
};

void pack_row_group(const WeightDesc* w, const Q4x8Layout& l, int64_t rg, uint8_t* dst) {
  const int64_t rowBytes = (w->cols + 1) / 2;
  const uint8_t* q = (const uint8_t*)w->data;
  for (int64_t g = 0; g < l.groups; g++) {
    const int64_t b0 = g * l.groupBlocks;
    const int64_t nbg = l.blocks - b0 < l.groupBlocks ? l.blocks - b0 : l.groupBlocks;
    for (int64_t bb = 0; bb < nbg; bb++) {
      const int64_t c0 = (b0 + bb) * 32;
      uint8_t* blk = dst + bb * 128;
      for (int i = 0; i < kQ4x8Rows; i++) {
        const int64_t r = rg * kQ4x8Rows + i;
        uint8_t v[32] = {0};  // padded rows and columns past the matrix stay 0
        if (r < w->rows) {
          const uint8_t* src = q + r * rowBytes;
          for (int m = 0; m < 32 && c0 + m < w->cols; m++) {
            const int64_t c = c0 + m;
            v[m] = (c & 1) ? src[c >> 1] >> 4 : src[c >> 1] & 15;
          }
        }
        for (int j = 0; j < 4; j++)
          for (int k = 0; k < 4; k++) blk[j * 32 + i * 4 + k] = uint8_t(v[4 * j + k] | (v[16 + 4 * j + k] << 4));
      }
    }
    uint8_t* s = dst + nbg * 128;
    uint8_t* z = s + 8 * l.scaleBytes;
    for (int i = 0; i < kQ4x8Rows; i++) {
      const int64_t r = rg * kQ4x8Rows + i;
      const float sc = r < w->rows ? w->scales[r * w->nGroups + g] : 0.0f;
      if (l.scaleBytes == 2) {
        const uint16_t h = f16_bits(sc);
        memcpy(s + 2 * i, &h, 2);
      } else {
        memcpy(s + 4 * i, &sc, 4);
      }
      if (l.zeroBytes) z[i] = r < w->rows ? w->zeros[r * w->nGroups + g] : 0;
    }
    dst += nbg * 128 + 8 * l.scaleBytes + l.zeroBytes;
  }
}

void pack_task(void* p, int64_t task, int) {
  const PackCtx* c = (const PackCtx*)p;
  const int64_t rg0 = task * c->rowGroupsPerTask;
  const int64_t rg1 = rg0 + c->rowGroupsPerTask < c->l.rowGroups ? rg0 + c->rowGroupsPerTask : c->l.rowGroups;
  for (int64_t rg = rg0; rg < rg1; rg++) pack_row_group(c->w, c->l, rg, c->out + rg * c->l.rowGroupBytes);
}

}  // namespace

bool q4x8_scales_fit_f16(const WeightDesc* w) {
  const int64_t groups = (w->cols + w->groupSize - 1) / w->groupSize;
  for (int64_t r = 0; r < w->rows; r++)
    for (int64_t g = 0; g < groups; g++)
      if (!fits_f16(w->scales[r * w->nGroups + g])) return false;
  return true;
}

void q4x8_pack(const WeightDesc* w, bool f16, uint8_t* out) {
  PackCtx c{w, q4x8_layout(w->rows, w->cols, w->groupSize, w->zeros != nullptr, f16), out, 0};
  c.rowGroupsPerTask = (256 << 10) / (c.l.rowGroupBytes > 0 ? c.l.rowGroupBytes : 1) + 1;
  parallel_for((c.l.rowGroups + c.rowGroupsPerTask - 1) / c.rowGroupsPerTask, pack_task, &c);
}

}  // namespace qvl
