// Row-major q8 → the eight-row layout of q8x8.h, on the pool, at about the speed of a copy.
#include <string.h>

#include "half.h"
#include "q8x8.h"

namespace qvl {

namespace {

struct PackCtx {
  const WeightDesc* w;
  bool f16;
  uint8_t* out;
  int64_t rowGroups, rowGroupsPerTask;
};

void pack_row_group(const WeightDesc* w, bool f16, int64_t rg, uint8_t* dst) {
  const int64_t K = w->cols, nb = q8x8_blocks(K);
  const int8_t* q = (const int8_t*)w->data;
  for (int64_t b = 0; b < nb; b++, dst += q8x8_record_bytes(f16)) {
    for (int i = 0; i < kQ8x8Rows; i++) {
      const int64_t r = rg * kQ8x8Rows + i;
      int8_t v[32] = {0};  // padded rows and columns past the matrix stay 0
      if (r < w->rows)
        for (int m = 0; m < 32 && b * 32 + m < K; m++) v[m] = q[r * K + b * 32 + m];
      for (int j = 0; j < 8; j++) memcpy(dst + j * 32 + i * 4, v + 4 * j, 4);
      const float sc = r < w->rows ? w->scales[r * nb + b] : 0.0f;
      if (f16) {
        const uint16_t h = f16_bits(sc);
        memcpy(dst + 256 + 2 * i, &h, 2);
      } else {
        memcpy(dst + 256 + 4 * i, &sc, 4);
      }
    }
  }
}

void pack_task(void* p, int64_t task, int) {
  const PackCtx* c = (const PackCtx*)p;
  const int64_t rg0 = task * c->rowGroupsPerTask;
  const int64_t rg1 = rg0 + c->rowGroupsPerTask < c->rowGroups ? rg0 + c->rowGroupsPerTask : c->rowGroups;
  const int64_t bytes = q8x8_row_group_bytes(c->w->cols, c->f16);
  for (int64_t rg = rg0; rg < rg1; rg++) pack_row_group(c->w, c->f16, rg, c->out + rg * bytes);
}

}  // namespace

bool q8x8_scales_fit_f16(const WeightDesc* w) {
  const int64_t n = w->rows * q8x8_blocks(w->cols);
  for (int64_t i = 0; i < n; i++)
    if (!fits_f16(w->scales[i])) return false;
  return true;
}

void q8x8_pack(const WeightDesc* w, bool f16, uint8_t* out) {
  PackCtx c{w, f16, out, (w->rows + kQ8x8Rows - 1) / kQ8x8Rows, 0};
  c.rowGroupsPerTask = (256 << 10) / q8x8_row_group_bytes(w->cols, f16) + 1;
  parallel_for((c.rowGroups + c.rowGroupsPerTask - 1) / c.rowGroupsPerTask, pack_task, &c);
}

}  // namespace qvl
