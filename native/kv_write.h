// Writing new key / value rows into the KV cache's blocks (the layout of src/kernels/kv.ts).
#pragma once
#include <cstdint>

namespace qvl {
/**
 * One head's row of `hd` float32 values as the cache type (kernels.h KvType) at `dst`: float32
 * copied, bf16 / f16 rounded to nearest even (NaN stays NaN), q8 as round(x / s) in −127..127
 * with s = max|x| / 127 stored at *scale. The same bits as src/kernels/kv.ts writeKvRows.
 */
void kv_write_row(int32_t type, const float* src, int64_t hd, void* dst, float* scale);
}  // namespace qvl
