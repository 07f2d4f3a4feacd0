// Portable SIMD vocabulary for the kernel sets: GCC vector extensions whose width follows the
// target flags of the translation unit that includes this file (16 floats with AVX-512, 8 with
// AVX2, 4 with the x86-64 baseline). Must be included inside the kernel set's own namespace.
#pragma once

#if defined(QVL_ISA_AVX512)
#define QVL_VW 16
#elif defined(QVL_ISA_AVX2)
#define QVL_VW 8
#else
#define QVL_VW 4
#endif

typedef float vf __attribute__((vector_size(QVL_VW * 4)));
typedef float vfu __attribute__((vector_size(QVL_VW * 4), aligned(4)));
typedef int32_t vi __attribute__((vector_size(QVL_VW * 4)));
typedef uint32_t vu __attribute__((vector_size(QVL_VW * 4)));
// Half-width float vectors widen to full-width double vectors (double accumulation).
typedef float vfh __attribute__((vector_size(QVL_VW * 2), aligned(4)));
typedef double vd __attribute__((vector_size(QVL_VW * 4)));

static inline vf vload(const float* p) { return *(const vfu*)p; }
static inline void vstore(float* p, vf v) { *(vfu*)p = v; }
/** x in every lane (a real broadcast: `(vf){} + x` would cost an add, since 0 + −0 is +0). */
static inline vf vsplat(float x) {
#if defined(QVL_ISA_AVX512)
  return _mm512_set1_ps(x);
#elif defined(QVL_ISA_AVX2)
  return _mm256_set1_ps(x);
#elif defined(__SSE2__)
  return _mm_set1_ps(x);
#else
  vf v;
  for (int i = 0; i < QVL_VW; i++) v[i] = x;
  return v;
#endif
}
static inline vd vdload_f(const float* p) { return __builtin_convertvector(*(const vfh*)p, vd); }

static inline float vhsum(vf v) {
#if defined(QVL_ISA_AVX512)
  return _mm512_reduce_add_ps(v);  // a log-depth tree of shuffles and adds
#else
  float s = 0;
  for (int i = 0; i < QVL_VW; i++) s += v[i];
  return s;
#endif
}
static inline double vdhsum(vd v) {
  double s = 0;
  for (int i = 0; i < QVL_VW / 2; i++) s += v[i];
  return s;
}
static inline float vhmax(vf v) {
#if defined(QVL_ISA_AVX512)
  return _mm512_reduce_max_ps(v);
#else
  float m = v[0];
  for (int i = 1; i < QVL_VW; i++) m = v[i] > m ? v[i] : m;
  return m;
#endif
}
static inline vf vmax(vf a, vf b) { return a > b ? a : b; }
static inline vf vmin(vf a, vf b) { return a < b ? a : b; }

/**
 * e^x for float32 lanes, relative error about 2e-7: x = n·ln2 + r with |r| ≤ ln2/2 (ln2 split
 * in two for an exact reduction), e^r by its Taylor series to degree 7, 2^n through the exponent
 * bits. Results below FLT_MIN flush to 0; x ≥ 88.376 saturates at 2^127.5 (n stays ≤ 127).
 */
/** x = n·ln2 + r with n an integer (*n) and |r| ≤ ln2/2 (ln2 split in two for an exact reduction); returns r. */
static inline vf vexp_reduce(vf x, vf* n) {
  const vf magic = vsplat(12582912.0f);  // 1.5·2^23: adding it rounds to an integer
  *n = (x * vsplat(1.44269504088896341f) + magic) - magic;
  const vf r = x - *n * vsplat(0.693145751953125f);
  return r - *n * vsplat(1.42860682030941723212e-6f);
}

/** p·2^n (n an integer ≤ 127), 0 in the lanes of `under`. */
static inline vf vexp_scale(vf p, vf n, vi under) {
  vi e = (__builtin_convertvector(n, vi) + 127) << 23;
  vf s;
  __builtin_memcpy(&s, &e, sizeof s);
  vf y = p * s;
  return under ? vsplat(0.0f) : y;
}

static inline vf vexp(vf x) {
  const vf hi = vsplat(88.3762626647949f), lo = vsplat(-87.3365f);
  vi under = x < lo;
  x = vmin(vmax(x, lo), hi);
  vf n;
  const vf r = vexp_reduce(x, &n);
  vf p = vsplat(1.0f / 5040);
  p = p * r + vsplat(1.0f / 720);
  p = p * r + vsplat(1.0f / 120);
  p = p * r + vsplat(1.0f / 24);
  p = p * r + vsplat(1.0f / 6);
  p = p * r + vsplat(0.5f);
  p = p * r + vsplat(1.0f);
  p = p * r + vsplat(1.0f);
  return vexp_scale(p, n, under);
}
