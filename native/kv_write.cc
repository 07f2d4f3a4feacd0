#include "kv_write.h"

#include <cmath>
#include <cstring>

#include "kernels.h"

namespace qvl {
namespace {

uint32_t bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return u;
}

uint16_t to_bf16(float x) {
  const uint32_t u = bits(x);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x7fffffu)) return uint16_t((u >> 16) | 0x40);
  return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// binary16, rounded to nearest even, except that a finite value past ±65504 becomes ±65504 (as
// kv.ts's toF16Saturating); NaN and ±Infinity stay what they are
uint16_t to_f16_saturating(float x) {
  const uint32_t u = bits(x);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int32_t exp = int32_t((u >> 23) & 0xffu);
  uint32_t mant = u & 0x7fffffu;
  if (exp == 0xff) return uint16_t(sign | 0x7c00u | (mant ? 0x200u : 0u));
  int32_t e = exp - 127 + 15;
  if (e >= 31) return uint16_t(sign | 0x7bffu);
  if (e <= 0) {
    if (e < -10) return uint16_t(sign);
    mant |= 0x800000u;
    const int32_t shift = 14 - e;
    const uint32_t half = 1u << (shift - 1), rem = mant & ((1u << shift) - 1), r0 = mant >> shift;
    const uint32_t r = rem > half || (rem == half && (r0 & 1u)) ? r0 + 1 : r0;
    return uint16_t(sign | r);
  }
  uint32_t r = mant >> 13;
  const uint32_t rem = mant & 0x1fffu;
  if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) {
    r++;
    if (r == 0x400u) {
      r = 0;
      e++;
      if (e >= 31) return uint16_t(sign | 0x7bffu);
    }
  }
  return uint16_t(sign | uint32_t(e << 10) | r);
}

// JavaScript's Math.round: halves go up (−2.5 → −2)
double js_round(double x) {
  const double f = std::floor(x);
  return x - f >= 0.5 ? f + 1 : f;
}

}  // namespace

void kv_write_row(int32_t type, const float* src, int64_t hd, void* dst, float* scale) {
  switch (type) {
    case KV_F32:
      std::memcpy(dst, src, size_t(hd) * 4);
      return;
    case KV_BF16:
      for (int64_t c = 0; c < hd; c++) ((uint16_t*)dst)[c] = to_bf16(src[c]);
      return;
    case KV_F16:
      for (int64_t c = 0; c < hd; c++) ((uint16_t*)dst)[c] = to_f16_saturating(src[c]);
      return;
    default: {
      // as kv.ts computes it: max in float32 (a NaN makes it NaN, as Math.max does), the division
      // and the products in double, NaN stored as 0 (an Int8Array's conversion)
      float amax = 0;
      for (int64_t c = 0; c < hd; c++) amax = std::isnan(src[c]) || std::isnan(amax) ? NAN : std::fabs(src[c]) > amax ? std::fabs(src[c]) : amax;
      const float s = float(double(amax) / 127.0);
      *scale = s;
      const double inv = s > 0 ? 1.0 / double(s) : 0.0;
      for (int64_t c = 0; c < hd; c++) {
        double q = js_round(double(src[c]) * inv);
        q = std::isnan(q) ? 0 : q < -127 ? -127 : q > 127 ? 127 : q;
        ((int8_t*)dst)[c] = int8_t(q);
      }
    }
  }
}

}  // namespace qvl
