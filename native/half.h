// binary16 scales in the repacked q4 / q8 streams (q4x8.h, q8x8.h): which float32 values are
// binary16 values, and their bits.
#pragma once
#include <stdint.h>
#include <string.h>

namespace qvl {

/** Whether f is a binary16 value: ±0, or normal in binary16 with no bits below its 10-bit mantissa. */
inline bool fits_f16(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint32_t a = u & 0x7fffffffu;
  return a == 0 || (a >= 0x38800000u && a <= 0x477fe000u && (a & 0x1fffu) == 0);
}

/** f (fits_f16) as binary16 bits. */
inline uint16_t f16_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  const uint32_t a = u & 0x7fffffffu;
  const uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  if (a == 0) return sign;
  return uint16_t(sign | (((a >> 23) - 112) << 10) | ((a >> 13) & 0x3ffu));
}

}  // namespace qvl
