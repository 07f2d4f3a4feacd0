// N-API surface of the native backend. Argument checking here is a safety net (the TypeScript
// wrapper checks first and reports QvlErrors); every size is verified before a kernel runs so
// that no call can read or write outside the arrays it was given.
#include <napi.h>

#include <errno.h>
#include <string.h>

#include <algorithm>
#include <iterator>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <sys/mman.h>

#include "heap.h"
#include "kernels.h"
#include "kv_write.h"
#include "mmap.h"
#include "q4x8.h"
#include "q8x8.h"
#include "platform.h"

namespace {

using qvl::KernelTable;
using qvl::WeightDesc;

// What one Node environment (the main thread or a worker) uses: its own thread pool and kernel
// set. Nothing is shared between environments, so one worker's setThreads or setIsa never
// changes another's, and the pool's threads are joined when the environment ends, before Node
// unloads the addon.
struct EnvState {
  qvl::Pool* pool;
  const KernelTable* kernels;
};

// Every N-API call runs on its environment's thread, so a thread-local pointer finds the state.
thread_local EnvState* tls_env = nullptr;

const KernelTable* kernels() { return tls_env->kernels; }

const KernelTable* bestKernels() {
  if (qvl::cpu_has_avx512vnni() && qvl::kernels_avx512vnni()) {
    // AMD: the one-row float GEMV from an AVX2 set (Zen 4 and Zen 5), the int8 GEMV too where
    // 512-bit operations run as two halves and the CPU has AVX-VNNI (kernels_mixed.cc)
    if (qvl::cpu_is_amd_with_avx512() && qvl::cpu_has_avx2()) {
      if (qvl::cpu_splits_512bit_ops() && qvl::kernels_avx2vnni())
        return qvl::kernels_wide_with_narrow_gemv(qvl::kernels_avx512vnni(), qvl::kernels_avx2vnni(), true);
      if (const KernelTable* narrow = qvl::kernels_avx2() ? qvl::kernels_avx2() : qvl::kernels_avx2vnni())
        return qvl::kernels_wide_with_narrow_gemv(qvl::kernels_avx512vnni(), narrow, false);
    }
    return qvl::kernels_avx512vnni();
  }
  if (qvl::cpu_has_avx512() && qvl::kernels_avx512()) return qvl::kernels_avx512();
  if (qvl::cpu_has_avx2() && qvl::kernels_avx2vnni()) return qvl::kernels_avx2vnni();
  if (qvl::cpu_has_avx2() && qvl::kernels_avx2()) return qvl::kernels_avx2();
  return qvl::kernels_base();
}

[[noreturn]] void fail(Napi::Env env, const std::string& msg) { throw Napi::RangeError::New(env, msg); }

template <class T, napi_typedarray_type TYPE>
std::pair<T*, size_t> typed(const Napi::Value& v, const char* name, const char* typeName) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != TYPE)
    throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a " + typeName);
  auto a = v.As<Napi::TypedArrayOf<T>>();
  return {a.Data(), a.ElementLength()};
}

std::pair<float*, size_t> f32(const Napi::Value& v, const char* name) {
  return typed<float, napi_float32_array>(v, name, "Float32Array");
}

int64_t integer(const Napi::Value& v, const char* name, int64_t min = 0) {
  if (!v.IsNumber()) throw Napi::TypeError::New(v.Env(), std::string(name) + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= double(min)) || d != double(int64_t(d)) || d > 9.0e15)
    fail(v.Env(), std::string(name) + " must be an integer ≥ " + std::to_string(min) + ", got " + std::to_string(d));
  return int64_t(d);
}

WeightDesc* handleAny(const Napi::Value& v) {
  if (!v.IsExternal()) throw Napi::TypeError::New(v.Env(), "weight handle expected (from prepare)");
  return v.As<Napi::External<WeightDesc>>().Data();
}

const WeightDesc* handle(const Napi::Value& v) {
  const WeightDesc* w = handleAny(v);
  if (w->released) fail(v.Env(), "the weight was released (releaseWeight)");
  return w;
}

// ---- configuration ----

Napi::Value Info(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("isa", kernels()->name);
  o.Set("threads", qvl::pool_threads());
  o.Set("physicalCores", qvl::physical_cores());
  o.Set("avx512", qvl::cpu_has_avx512());
  o.Set("avx512vnni", qvl::cpu_has_avx512vnni());
  o.Set("avx2", qvl::cpu_has_avx2());
  o.Set("splits512BitOps", qvl::cpu_splits_512bit_ops());
  o.Set("int8Gemv512", qvl::int8_gemv_512());
  return o;
}

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = info[0].As<Napi::String>().Utf8Value();
  // the names of src/kernels/native/instruction-sets.ts (test/isa-option.test.ts checks both lists agree)
  static const char* const kNames[] = {"best", "avx512vnni", "avx512", "avx2vnni", "avx2", "scalar"};
  if (std::find(std::begin(kNames), std::end(kNames), name) == std::end(kNames)) fail(env, "unknown instruction set '" + name + "'");
  const KernelTable* k = nullptr;
  if (name == "best") k = bestKernels();
  else if (name == "avx512vnni" && qvl::cpu_has_avx512vnni()) k = qvl::kernels_avx512vnni();
  else if (name == "avx512" && qvl::cpu_has_avx512()) k = qvl::kernels_avx512();
  else if (name == "avx2vnni" && qvl::cpu_has_avx2()) k = qvl::kernels_avx2vnni();
  else if (name == "avx2" && qvl::cpu_has_avx2()) k = qvl::kernels_avx2();
  else if (name == "scalar") k = qvl::kernels_base();
  if (!k) fail(env, "instruction set '" + name + "' is not available on this CPU");
  tls_env->kernels = k;
  return Napi::String::New(env, k->name);
}

// Process-wide, unlike setIsa: the choice changes speed only, never a result (kernels.h).
Napi::Value SetInt8Gemv512(const Napi::CallbackInfo& info) {
  const Napi::Value v = info[0];
  if (!v.IsBoolean() && !v.IsNull()) throw Napi::TypeError::New(info.Env(), "int8Gemv512 must be a boolean or null");
  qvl::set_int8_gemv_512(v.IsNull() ? -1 : v.As<Napi::Boolean>().Value() ? 1 : 0);
  return Napi::Boolean::New(info.Env(), qvl::int8_gemv_512());
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  int64_t n = integer(info[0], "threads", 1);
  if (n > 256) fail(info.Env(), "threads must be at most 256");
  if (n != qvl::pool_threads()) {
    qvl::Pool* old = tls_env->pool;
    tls_env->pool = qvl::pool_new(int(n));
    qvl::pool_use(tls_env->pool);
    qvl::pool_delete(old);
  }
  return Napi::Number::New(info.Env(), qvl::pool_threads());
}

// ---- weights ----

// Asks for transparent huge pages over the whole 2 MiB pages of a fresh output array before it is
// first written (a request only: it applies where THP is set to "madvise" or "always"). The
// quantizers write gigabytes into new arrays at load, and one fault per 4 KiB page is a large
// share of that time (tens of microseconds each on some virtual machines); the repacked streams
// (allocStream) are read end to end every decode step.
void adviseHugePages(void* p, size_t bytes) {
#if defined(MADV_HUGEPAGE)
  const uintptr_t huge = uintptr_t(2) << 20;
  const uintptr_t b = (uintptr_t(p) + huge - 1) & ~(huge - 1), e = (uintptr_t(p) + bytes) & ~(huge - 1);
  if (e > b) madvise((void*)b, e - b, MADV_HUGEPAGE);
#else
  (void)p;
  (void)bytes;
#endif
}

// A buffer for a repacked weight stream, freed by the weight handle's finalizer: 64-byte
// aligned, and from 2 MiB on 2 MiB aligned with huge pages asked for. Decode reads these streams
// end to end every step, and with 4 KiB pages the int8 GEMVs lost 8–26%: 2 Zen 4 cores, weights
// from DRAM, both kinds prepared in one process and alternated (a temporary script), q4 2560→9728
// 1 / 4 / 8 tokens 0.49 / 0.63 / 0.92 → 0.42 / 0.51 / 0.85 ms, 9728→2560 0.49 / 0.67 / 0.93 →
// 0.39 / 0.58 / 0.84, q8 2560→9728 0.80 / 0.92 / 1.17 → 0.71 / 0.80 / 1.03. (bf16 read in
// place from a file mapping ran at the same speed when copied into huge pages, 1.18 ms both, for
// one matrix alone; not inside a model's decode step: copyMappedFloat.)
// The alignment's slack is never touched, so it is address space, not memory. V8 is told of the
// bytes, and of their release (releaseWeight, or the handle's finalizer): otherwise it sees a
// handle of a few bytes and has no reason to collect it.
uint8_t* allocStream(Napi::Env env, WeightDesc* w, size_t bytes, const char* format) {
  const size_t huge = size_t(2) << 20;
  void* out = nullptr;
  if (posix_memalign(&out, bytes >= huge ? huge : 64, (bytes + 63) / 64 * 64) != 0) out = nullptr;
  if (!out) fail(env, "prepare: cannot allocate " + std::to_string(bytes) + " bytes for the repacked " + format + " weight");
  adviseHugePages(out, bytes);
  Napi::MemoryManagement::AdjustExternalMemory(env, int64_t(bytes));
  w->ownedBytes += int64_t(bytes);
  return (uint8_t*)out;
}

// Repacks a q4 weight into the eight-row layout (q4x8.h) that every q4 kernel then reads; the
// row-major arrays are no longer referenced, and where they lie in a file mapping their pages
// are released (they come back from the file if read again), so the weights stay in memory once.
void packQ4x8(Napi::Env env, WeightDesc* w) {
  const bool f16 = qvl::q4x8_scales_fit_f16(w);
  const qvl::Q4x8Layout l = qvl::q4x8_layout(w->rows, w->cols, w->groupSize, w->zeros != nullptr, f16);
  uint8_t* out = allocStream(env, w, size_t(qvl::q4x8_bytes(l)), "q4");
  qvl::q4x8_pack(w, f16, out);
  qvl::advise_dontneed_at(w->data, size_t(w->rows) * size_t((w->cols + 1) / 2));
  qvl::advise_dontneed_at(w->scales, size_t(w->rows) * size_t(w->nGroups) * 4);
  if (w->zeros) qvl::advise_dontneed_at(w->zeros, size_t(w->rows) * size_t(w->nGroups));
  w->q4x8 = out;
  w->q4x8Zeros = w->zeros != nullptr;
  w->q4x8F16 = f16;
  w->data = nullptr;
  w->scales = nullptr;
  w->zeros = nullptr;
}

// Whether a repacked copy leaves the weights in memory once. Pages of a file mapping are released
// (advise_dontneed_at), and arrays the caller gives away (`consume`) are detached; other arrays on
// the JavaScript heap stay until V8 collects them, which it may put off for long: after a 4B q4
// load the row-major copy of the 0.44 GB q8 head was still resident (VmRSS 3.77 GiB, 3.37 GiB
// after a forced collection). Small ones are collected along the way.
bool repackPays(const WeightDesc* w, bool consume) {
  constexpr int64_t kHeapCopyMax = 64 << 20;
  const int64_t bytes = w->format == qvl::FMT_Q4 ? w->rows * ((w->cols + 1) / 2) : w->rows * w->cols;
  return consume || bytes <= kHeapCopyMax || qvl::is_mapped(w->data, size_t(bytes));
}

// Detaches the ArrayBuffers behind a consumed weight's arrays, so that V8 frees them now rather
// than at some later collection (the addon's heap policy then unmaps them: heap.h). A buffer
// that also holds other data (the array is a view of part of it) is left alone.
void detachWhole(Napi::Object d, std::initializer_list<const char*> keys) {
  for (const char* k : keys) {
    Napi::Value v = d.Get(k);
    if (!v.IsTypedArray()) continue;
    Napi::TypedArray a = v.As<Napi::TypedArray>();
    Napi::ArrayBuffer b = a.ArrayBuffer();
    if (a.ByteOffset() == 0 && a.ByteLength() == b.ByteLength() && !b.IsDetached()) b.Detach();
  }
}

// One 2 MiB piece of copyMappedFloat's copy per task: the time goes to faulting in the mapping's
// pages and the new huge pages (kernel time), which the pool's threads do side by side.
struct CopyCtx {
  const uint8_t* src;
  uint8_t* dst;
  size_t bytes;
};
constexpr size_t kCopyPiece = size_t(2) << 20;
void copy_piece(void* p, int64_t task, int) {
  const CopyCtx* c = (const CopyCtx*)p;
  const size_t o = size_t(task) * kCopyPiece, n = c->bytes - o < kCopyPiece ? c->bytes - o : kCopyPiece;
  memcpy(c->dst + o, c->src + o, n);
}

// A float matrix read in place from a file mapping (a BF16 checkpoint) is copied into memory of
// its own, in 2 MiB pages where it can, and the mapping's pages are released: the decode step
// read page-cache pages measurably slower than anonymous memory (a 4B BF16 decode step on 2 Zen 5
// cores, runs alternated: 229 / 261 ms mapped, 195 / 217 read into memory, 152 / 172 copied
// here). Below 1 MiB the copy is not worth its page.
void copyMappedFloat(Napi::Env env, WeightDesc* w) {
  const size_t elem = w->format == qvl::FMT_F32 ? 4 : 2;
  const size_t bytes = size_t(w->rows) * size_t(w->cols) * elem;
  if (bytes < (size_t(1) << 20) || !qvl::is_mapped(w->data, bytes)) return;
  uint8_t* out = allocStream(env, w, bytes, "float");
  CopyCtx c{(const uint8_t*)w->data, out, bytes};
  qvl::parallel_for(int64_t((bytes + kCopyPiece - 1) / kCopyPiece), copy_piece, &c);
  qvl::advise_dontneed_at(w->data, bytes);
  w->data = out;
  w->ownedData = out;
}

// The same for q8 (q8x8.h).
void packQ8x8(Napi::Env env, WeightDesc* w) {
  const bool f16 = qvl::q8x8_scales_fit_f16(w);
  uint8_t* out = allocStream(env, w, size_t(qvl::q8x8_bytes(w->rows, w->cols, f16)), "q8");
  qvl::q8x8_pack(w, f16, out);
  qvl::advise_dontneed_at(w->data, size_t(w->rows) * size_t(w->cols));
  qvl::advise_dontneed_at(w->scales, size_t(w->rows) * size_t(qvl::q8x8_blocks(w->cols)) * 4);
  w->q8x8 = out;
  w->q8x8F16 = f16;
  w->data = nullptr;
  w->scales = nullptr;
}

// Frees the memory prepare allocated for `w` and tells V8 it went.
void freeOwned(Napi::Env env, WeightDesc* w) {
  if (w->ownedBytes) Napi::MemoryManagement::AdjustExternalMemory(env, -w->ownedBytes);
  w->ownedBytes = 0;
  free((void*)w->q4x8);
  free((void*)w->q8x8);
  free(w->ownedData);
  w->q4x8 = nullptr;
  w->q8x8 = nullptr;
  w->ownedData = nullptr;
}

// The values of a float weight object (f32: Float32Array, bf16 / f16: Uint16Array), at least `elems`.
const void* floatData(Napi::Env env, Napi::Object d, int32_t format, uint64_t elems) {
  size_t have;
  const void* p;
  if (format == qvl::FMT_F32) {
    auto a = f32(d.Get("data"), "data");
    p = a.first, have = a.second;
  } else {
    auto a = typed<uint16_t, napi_uint16_array>(d.Get("data"), "data", "Uint16Array");
    p = a.first, have = a.second;
  }
  if (have < elems) fail(env, "data has " + std::to_string(have) + " elements, the shape needs " + std::to_string(elems));
  return p;
}

Napi::Value Prepare(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object d = info[0].As<Napi::Object>();
  auto w = std::make_unique<WeightDesc>();
  *w = WeightDesc{};
  w->format = int32_t(integer(d.Get("format"), "format"));
  w->rows = integer(d.Get("rows"), "rows");
  w->cols = integer(d.Get("cols"), "cols");
  const uint64_t elems = uint64_t(w->rows) * uint64_t(w->cols);
  auto need = [&](size_t have, uint64_t want, const char* what) {
    if (have < want)
      fail(env, std::string(what) + " has " + std::to_string(have) + " elements, the shape needs " + std::to_string(want));
  };
  switch (w->format) {
    case qvl::FMT_F32:
    case qvl::FMT_BF16:
    case qvl::FMT_F16:
      w->data = floatData(env, d, w->format, elems);
      break;
    case qvl::FMT_Q8: {
      auto q = typed<int8_t, napi_int8_array>(d.Get("qs"), "qs", "Int8Array");
      auto s = f32(d.Get("scales"), "scales");
      need(q.second, elems, "qs");
      need(s.second, uint64_t(w->rows) * uint64_t((w->cols + qvl::kQ8Block - 1) / qvl::kQ8Block), "scales");
      w->data = q.first;
      w->scales = s.first;
      break;
    }
    case qvl::FMT_Q4: {
      auto q = typed<uint8_t, napi_uint8_array>(d.Get("qs"), "qs", "Uint8Array");
      auto s = f32(d.Get("scales"), "scales");
      w->groupSize = int32_t(integer(d.Get("groupSize"), "groupSize", 1));
      w->nGroups = int32_t(integer(d.Get("nGroups"), "nGroups", 1));
      need(q.second, uint64_t(w->rows) * uint64_t((w->cols + 1) / 2), "qs");
      need(s.second, uint64_t(w->rows) * uint64_t(w->nGroups), "scales");
      w->data = q.first;
      w->scales = s.first;
      Napi::Value z = d.Get("zeros");
      if (!z.IsUndefined() && !z.IsNull()) {
        auto za = typed<uint8_t, napi_uint8_array>(z, "zeros", "Uint8Array");
        need(za.second, uint64_t(w->rows) * uint64_t(w->nGroups), "zeros");
        w->zeros = za.first;
      }
      Napi::Value g = d.Get("gIdx");
      if (!g.IsUndefined() && !g.IsNull()) {
        auto ga = typed<int32_t, napi_int32_array>(g, "gIdx", "Int32Array");
        need(ga.second, uint64_t(w->cols), "gIdx");
        for (int64_t c = 0; c < w->cols; c++)
          if (ga.first[c] < 0 || ga.first[c] >= w->nGroups)
            fail(env, "gIdx[" + std::to_string(c) + "] = " + std::to_string(ga.first[c]) + " is outside 0.." +
                          std::to_string(w->nGroups - 1));
        w->gIdx = ga.first;
      } else if (int64_t(w->nGroups) < (w->cols + w->groupSize - 1) / w->groupSize) {
        fail(env, "nGroups " + std::to_string(w->nGroups) + " is less than ceil(cols/groupSize)");
      }
      break;
    }
    case qvl::FMT_FP8: {
      auto q = typed<uint8_t, napi_uint8_array>(d.Get("qs"), "qs", "Uint8Array");
      auto s = f32(d.Get("scales"), "scales");
      w->blockRows = int32_t(integer(d.Get("blockRows"), "blockRows", 1));
      w->blockCols = int32_t(integer(d.Get("blockCols"), "blockCols", 1));
      need(q.second, elems, "qs");
      need(s.second,
           uint64_t((w->rows + w->blockRows - 1) / w->blockRows) * uint64_t((w->cols + w->blockCols - 1) / w->blockCols),
           "scales");
      w->data = q.first;
      w->scales = s.first;
      break;
    }
    default:
      fail(env, "unknown weight format code " + std::to_string(w->format));
  }
  Napi::Value pack = d.Get("pack");
  Napi::Value consume = d.Get("consume");
  Napi::Value fine = d.Get("fineActivations");
  w->q8Fine = w->format == qvl::FMT_Q8 && fine.IsBoolean() && fine.As<Napi::Boolean>().Value();
  const bool mayConsume = consume.IsBoolean() && consume.As<Napi::Boolean>().Value();
  const bool mayPack = pack.IsBoolean() && pack.As<Napi::Boolean>().Value();
  const bool fl = w->format == qvl::FMT_BF16 || w->format == qvl::FMT_F16 || w->format == qvl::FMT_F32;
  if (mayPack && fl) copyMappedFloat(env, w.get());
  if (mayPack && repackPays(w.get(), mayConsume)) {
    if (qvl::q4x8_eligible(w.get())) packQ4x8(env, w.get());
    else if (qvl::q8x8_eligible(w.get())) packQ8x8(env, w.get());
    if (mayConsume && (w->q4x8 || w->q8x8)) detachWhole(d, {"qs", "scales", "zeros"});
  }
  return Napi::External<WeightDesc>::New(env, w.release(), [](Napi::Env env, WeightDesc* p) {
    freeOwned(env, p);
    delete p;
  });
}

// releaseWeight(handle): frees what prepare allocated for the weight (its repacked stream or
// copied floats) now, rather than when V8 collects the handle: Node runs add-on finalizers from
// the event loop, so a long synchronous loop that swaps weights (a calibration, layer after
// layer) kept every released one until it ended. The handle is refused from then on.
Napi::Value ReleaseWeight(const Napi::CallbackInfo& info) {
  WeightDesc* w = handleAny(info[0]);
  freeOwned(info.Env(), w);
  w->released = 1;
  w->data = nullptr;
  w->scales = nullptr;
  w->zeros = nullptr;
  w->gIdx = nullptr;
  return info.Env().Undefined();
}

// How a prepared weight is kept: {layout: 'q4x8', 'q4x8-f16', 'q8x8' or 'q8x8-f16' (repacked by
// prepare, with float32 or binary16 scales), bytes: of the repacked stream} or {layout:
// 'row-major'} (the caller's arrays); fineActivations: a q8 weight prepared for fine
// activations.
Napi::Value WeightLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const WeightDesc* w = handle(info[0]);
  Napi::Object o = Napi::Object::New(env);
  o.Set("layout", w->q8x8 ? (w->q8x8F16 ? "q8x8-f16" : "q8x8") : !w->q4x8 ? "row-major" : w->q4x8F16 ? "q4x8-f16" : "q4x8");
  if (w->q4x8) o.Set("bytes", double(qvl::q4x8_bytes(qvl::q4x8_layout(w))));
  if (w->q8x8) o.Set("bytes", double(qvl::q8x8_bytes(w->rows, w->cols, w->q8x8F16 != 0)));
  o.Set("fineActivations", w->q8Fine != 0);
  return o;
}

// ---- ops ----

Napi::Value Matmul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0], "x");
  const int64_t n = integer(info[1], "n");
  const WeightDesc* w = handle(info[2]);
  const float* bias = nullptr;
  if (!info[3].IsNull() && !info[3].IsUndefined()) {
    auto b = f32(info[3], "bias");
    if (int64_t(b.second) < w->rows) fail(env, "bias is shorter than the weight's rows");
    bias = b.first;
  }
  auto y = f32(info[4], "y");
  if (uint64_t(x.second) != uint64_t(n) * uint64_t(w->cols))
    fail(env, "x has " + std::to_string(x.second) + " values, expected " + std::to_string(n) + "×" + std::to_string(w->cols));
  if (uint64_t(y.second) != uint64_t(n) * uint64_t(w->rows)) fail(env, "y has the wrong length");
  kernels()->matmul(x.first, n, w, bias, y.first);
  return env.Undefined();
}

// matmulMany(x, n, weights[], biases[] (each null or Float32Array), ys[]): matmul over each weight
// of the same x (kernels.h), in one job where the kernels allow.
Napi::Value MatmulMany(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0], "x");
  const int64_t n = integer(info[1], "n");
  if (!info[2].IsArray() || !info[3].IsArray() || !info[4].IsArray()) fail(env, "matmulMany: weights, biases and ys must be arrays");
  Napi::Array ws = info[2].As<Napi::Array>(), bs = info[3].As<Napi::Array>(), ys = info[4].As<Napi::Array>();
  const uint32_t count = ws.Length();
  if (count < 1 || count > uint32_t(qvl::kMatmulManyMax))
    fail(env, "matmulMany: " + std::to_string(count) + " weights, expected 1.." + std::to_string(qvl::kMatmulManyMax));
  if (bs.Length() != count || ys.Length() != count) fail(env, "matmulMany: biases and ys must have one entry per weight");
  const qvl::WeightDesc* w[qvl::kMatmulManyMax];
  const float* bias[qvl::kMatmulManyMax];
  float* y[qvl::kMatmulManyMax];
  for (uint32_t i = 0; i < count; i++) {
    const std::string at = "[" + std::to_string(i) + "]";
    w[i] = handle(ws.Get(i));
    if (w[i]->cols != w[0]->cols)
      fail(env, "matmulMany: weights" + at + " has " + std::to_string(w[i]->cols) + " columns, weights[0] " + std::to_string(w[0]->cols));
    bias[i] = nullptr;
    Napi::Value b = bs.Get(i);
    if (!b.IsNull() && !b.IsUndefined()) {
      auto bv = f32(b, ("biases" + at).c_str());
      if (int64_t(bv.second) < w[i]->rows) fail(env, "biases" + at + " is shorter than the weight's rows");
      bias[i] = bv.first;
    }
    auto yv = f32(ys.Get(i), ("ys" + at).c_str());
    if (uint64_t(yv.second) != uint64_t(n) * uint64_t(w[i]->rows)) fail(env, "ys" + at + " has the wrong length");
    y[i] = yv.first;
  }
  if (uint64_t(x.second) != uint64_t(n) * uint64_t(w[0]->cols))
    fail(env, "x has " + std::to_string(x.second) + " values, expected " + std::to_string(n) + "×" + std::to_string(w[0]->cols));
  kernels()->matmulMany(x.first, n, int(count), w, bias, y);
  return env.Undefined();
}

Napi::Value GatherRows(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const WeightDesc* w = handle(info[0]);
  auto ids = typed<int32_t, napi_int32_array>(info[1], "ids", "Int32Array");
  auto out = f32(info[2], "out");
  if (uint64_t(out.second) != uint64_t(ids.second) * uint64_t(w->cols)) fail(env, "out has the wrong length");
  for (size_t i = 0; i < ids.second; i++)
    if (ids.first[i] < 0 || ids.first[i] >= w->rows)
      fail(env, "gatherRows: id " + std::to_string(ids.first[i]) + " outside 0.." + std::to_string(w->rows - 1));
  kernels()->gatherRows(w, ids.first, int64_t(ids.second), out.first);
  return env.Undefined();
}

Napi::Value RmsNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0], "x");
  const int64_t dim = integer(info[1], "dim", 1);
  auto w = f32(info[2], "weight");
  const double eps = info[3].As<Napi::Number>().DoubleValue();
  auto out = f32(info[4], "out");
  if (x.second % dim != 0 || int64_t(w.second) < dim || out.second != x.second) fail(env, "rmsNorm: bad sizes");
  kernels()->rmsNorm(x.first, int64_t(x.second) / dim, dim, w.first, float(eps), out.first);
  return env.Undefined();
}

Napi::Value LayerNorm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0], "x");
  const int64_t dim = integer(info[1], "dim", 1);
  auto w = f32(info[2], "weight");
  auto b = f32(info[3], "bias");
  const double eps = info[4].As<Napi::Number>().DoubleValue();
  auto out = f32(info[5], "out");
  if (x.second % dim != 0 || int64_t(w.second) < dim || int64_t(b.second) < dim || out.second != x.second)
    fail(env, "layerNorm: bad sizes");
  kernels()->layerNorm(x.first, int64_t(x.second) / dim, dim, w.first, b.first, float(eps), out.first);
  return env.Undefined();
}

/** Values that n rows of `width`, each `stride` after the last, reach over (no stride after the last row). */
static uint64_t rows_span(uint64_t n, uint64_t stride, uint64_t width) {
  return n ? (n - 1) * stride + width : 0;
}

Napi::Value Rope(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto x = f32(info[0], "x");
  const int64_t n = integer(info[1], "n");
  const int64_t heads = integer(info[2], "heads", 1);
  const int64_t hd = integer(info[3], "headDim", 2);
  auto c = f32(info[4], "cos");
  auto s = f32(info[5], "sin");
  // stride: values from a token's row to the next (0: heads·headDim, rows packed)
  const int64_t width = heads * hd;
  const int64_t stride = info.Length() > 6 && !info[6].IsUndefined() ? integer(info[6], "stride") : 0;
  const int64_t st = stride ? stride : width;
  const uint64_t span = rows_span(uint64_t(n), uint64_t(st), uint64_t(width));
  if (hd % 2 || st < width || (stride ? uint64_t(x.second) < span : uint64_t(x.second) != span) || uint64_t(c.second) < uint64_t(n * hd) ||
      uint64_t(s.second) < uint64_t(n * hd))
    fail(env, "rope: bad sizes");
  kernels()->rope(x.first, n, st, int32_t(heads), int32_t(hd), c.first, s.first);
  return env.Undefined();
}

// The attention options shared by both entry points: sizes, scale, causal, qOffset, segments.
void attentionOptions(const Napi::CallbackInfo& info, int first, qvl::AttentionArgs* a) {
  Napi::Env env = info.Env();
  a->nQ = int32_t(integer(info[first], "nQ"));
  a->nKv = int32_t(integer(info[first + 1], "nKv"));
  a->heads = int32_t(integer(info[first + 2], "heads", 1));
  a->kvHeads = int32_t(integer(info[first + 3], "kvHeads", 1));
  a->headDim = int32_t(integer(info[first + 4], "headDim", 1));
  a->scale = float(info[first + 5].As<Napi::Number>().DoubleValue());
  a->causal = info[first + 6].ToBoolean().Value() ? 1 : 0;
  a->qOffset = int32_t(integer(info[first + 7], "qOffset"));
  if (a->heads % a->kvHeads) fail(env, "heads must be a multiple of kvHeads");
  const Napi::Value segv = info[first + 8];
  if (!segv.IsNull() && !segv.IsUndefined()) {
    auto seg = typed<int32_t, napi_int32_array>(segv, "segments", "Int32Array");
    if (seg.second < 2 || seg.first[0] != 0 || seg.first[seg.second - 1] != a->nQ || a->nQ != a->nKv)
      fail(env, "segments must run from 0 to nQ (= nKv)");
    for (size_t i = 1; i < seg.second; i++)
      if (seg.first[i] < seg.first[i - 1]) fail(env, "segments must be non-decreasing");
    a->segments = seg.first;
    a->nSegments = int32_t(seg.second - 1);
  }
}

// attention(q, k, v, out, nQ, nKv, heads, kvHeads, headDim, scale, causal, qOffset, segments, int16,
// qStride, kvStride): keys and values in float32 arrays, a token's row kvStride values after the
// last (kvHeads·headDim when 0), queries likewise (qStride, heads·headDim when 0); out is packed
// [nQ, heads·headDim]. int16: products in int16 where the kernel set has them
// (native/attention_i16.inc).
Napi::Value Attention(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qvl::AttentionArgs a{};
  auto q = f32(info[0], "q");
  auto k = f32(info[1], "k");
  auto v = f32(info[2], "v");
  auto out = f32(info[3], "out");
  attentionOptions(info, 4, &a);
  a.int16 = info.Length() > 13 && info[13].ToBoolean().Value() ? 1 : 0;
  const uint64_t qw = uint64_t(a.heads) * a.headDim, kvw = uint64_t(a.kvHeads) * a.headDim;
  const int64_t qStride = info.Length() > 14 && !info[14].IsUndefined() ? integer(info[14], "qStride") : 0;
  const int64_t kvStride = info.Length() > 15 && !info[15].IsUndefined() ? integer(info[15], "kvStride") : 0;
  a.qStride = qStride ? qStride : int64_t(qw);
  a.kv.rowStride = kvStride ? kvStride : int64_t(kvw);
  if (uint64_t(a.qStride) < qw || uint64_t(a.kv.rowStride) < kvw) fail(env, "attention: a row stride is below the row's width");
  if (q.second < rows_span(a.nQ, a.qStride, qw) || out.second != uint64_t(a.nQ) * qw || k.second < rows_span(a.nKv, a.kv.rowStride, kvw) ||
      v.second < rows_span(a.nKv, a.kv.rowStride, kvw))
    fail(env, "attention: bad sizes");
  const void* kb[1] = {k.first};
  const void* vb[1] = {v.first};
  a.kv.type = qvl::KV_F32;
  a.kv.blockTokens = a.nKv > 0 ? a.nKv : 1;
  a.kv.k = kb;
  a.kv.v = vb;
  a.q = q.first;
  a.out = out.first;
  kernels()->attention(&a);
  return env.Undefined();
}

// A KV cache layer's layout as the JavaScript side sends it: a Float64Array [type, blockTokens,
// blockBytes, kOffset, vOffset, kScaleOffset, vScaleOffset] (src/kernels/kv.ts), checked against
// the heads' geometry.
struct KvLayoutArgs {
  int64_t type, B, blockBytes, kOff, vOff, ksOff, vsOff, elem, rowBytes;
};

KvLayoutArgs kvLayout(Napi::Env env, const Napi::Value& v, int64_t kvHeads, int64_t headDim, const char* op) {
  auto lay = typed<double, napi_float64_array>(v, "layout", "Float64Array");
  const std::string o(op);
  if (lay.second != 7) fail(env, o + ": layout must have 7 values");
  KvLayoutArgs l{};
  l.type = int64_t(lay.first[0]);
  l.B = int64_t(lay.first[1]);
  l.blockBytes = int64_t(lay.first[2]);
  l.kOff = int64_t(lay.first[3]);
  l.vOff = int64_t(lay.first[4]);
  l.ksOff = int64_t(lay.first[5]);
  l.vsOff = int64_t(lay.first[6]);
  if (l.type < 0 || l.type > 3 || l.B < 1 || l.blockBytes < 1) fail(env, o + ": bad layout");
  l.elem = qvl::kv_elem_bytes(int32_t(l.type));
  l.rowBytes = kvHeads * headDim * l.elem;
  const int64_t dataBytes = l.B * l.rowBytes, scaleBytes = l.type == qvl::KV_Q8 ? l.B * kvHeads * 4 : 0;
  auto inside = [&](int64_t off, int64_t len) { return off >= 0 && off + len <= l.blockBytes; };
  if (!inside(l.kOff, dataBytes) || !inside(l.vOff, dataBytes) || (scaleBytes && (!inside(l.ksOff, scaleBytes) || !inside(l.vsOff, scaleBytes))))
    fail(env, o + ": the layer's offsets fall outside the block");
  if ((l.kOff | l.vOff) % l.elem || (scaleBytes && (l.ksOff | l.vsOff) % 4)) fail(env, o + ": misaligned offsets");
  return l;
}

// The first `used` blocks of a block table ((slab index, byte offset) pairs) as pointers to the
// layer's keys, values and their scales; every block is checked to lie inside its slab.
struct KvBlockPtrs {
  std::vector<const void*> k, v;
  std::vector<const float*> ks, vs;
};

void kvBlockPtrs(Napi::Env env, Napi::Array slabs, const int32_t* table, int64_t used, const KvLayoutArgs& l, const char* op, KvBlockPtrs* p) {
  const std::string o(op);
  p->k.resize(used + 1);
  p->v.resize(used + 1);
  p->ks.resize(used + 1);
  p->vs.resize(used + 1);
  int64_t lastSlab = -1;
  uint8_t* base = nullptr;
  size_t len = 0;
  for (int64_t b = 0; b < used; b++) {
    const int64_t si = table[2 * b], off = table[2 * b + 1];
    if (si != lastSlab) {
      if (si < 0 || uint32_t(si) >= slabs.Length()) fail(env, o + ": a block names a missing slab");
      Napi::Value sv = slabs.Get(uint32_t(si));
      if (!sv.IsArrayBuffer()) throw Napi::TypeError::New(env, "slabs must be ArrayBuffers");
      auto ab = sv.As<Napi::ArrayBuffer>();
      base = (uint8_t*)ab.Data();
      len = ab.ByteLength();
      lastSlab = si;
    }
    if (off < 0 || uint64_t(off) + uint64_t(l.blockBytes) > len || off % 64) fail(env, o + ": a block lies outside its slab");
    p->k[b] = base + off + l.kOff;
    p->v[b] = base + off + l.vOff;
    p->ks[b] = (const float*)(base + off + l.ksOff);
    p->vs[b] = (const float*)(base + off + l.vsOff);
  }
}

// Points an attention's keys and values at KV cache blocks.
void useKvBlocks(qvl::AttentionArgs* a, const KvLayoutArgs& l, KvBlockPtrs& p) {
  a->kv.type = int32_t(l.type);
  a->kv.headMajor = 1;
  a->kv.rowStride = int64_t(a->kvHeads) * a->headDim;
  a->qStride = int64_t(a->heads) * a->headDim;
  a->kv.blockTokens = l.B;
  a->kv.k = p.k.data();
  a->kv.v = p.v.data();
  a->kv.kScale = p.ks.data();
  a->kv.vScale = p.vs.data();
}

// attentionKv(q, out, slabs, blocks, layout, nQ, nKv, heads, kvHeads, headDim, scale, causal, qOffset):
// keys and values read in place from KV cache blocks (src/kernels/kv.ts). `blocks` holds
// (slab index, byte offset) per block; `layout` as kvLayout reads it. Every block is checked to
// lie inside its slab.
Napi::Value AttentionKv(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qvl::AttentionArgs a{};
  auto q = f32(info[0], "q");
  auto out = f32(info[1], "out");
  if (!info[2].IsArray()) throw Napi::TypeError::New(env, "slabs must be an array of ArrayBuffers");
  Napi::Array slabs = info[2].As<Napi::Array>();
  auto blocks = typed<int32_t, napi_int32_array>(info[3], "blocks", "Int32Array");
  attentionOptions(info, 5, &a);
  if (a.segments) fail(env, "attentionKv: segments are for float32 keys only");
  const KvLayoutArgs l = kvLayout(env, info[4], a.kvHeads, a.headDim, "attentionKv");
  const uint64_t qs = uint64_t(a.heads) * a.headDim;
  if (q.second != uint64_t(a.nQ) * qs || out.second != q.second) fail(env, "attentionKv: bad sizes");
  const int64_t nBlocks = int64_t(blocks.second / 2);
  if (blocks.second % 2 || nBlocks * l.B < a.nKv) fail(env, "attentionKv: too few blocks for nKv");
  KvBlockPtrs p;
  kvBlockPtrs(env, slabs, blocks.first, (int64_t(a.nKv) + l.B - 1) / l.B, l, "attentionKv", &p);
  useKvBlocks(&a, l, p);
  a.q = q.first;
  a.out = out.first;
  kernels()->attention(&a);
  return env.Undefined();
}

// attentionKvBatch(q, k, v, out, slabs, blocks, layout, parts, heads, kvHeads, headDim, scale):
// one decoder layer of several sequences (src/kernels/backend.ts appendAttendKv). `parts` holds
// [rows, past, first block, blocks] per sequence, its blocks a range of `blocks` ((slab, offset)
// pairs); q / k / v / out hold the sequences' rows in order. Each sequence's new keys and values
// are written at positions past.. of its blocks, then its rows attend causally to positions
// 0..past+rows−1.
Napi::Value AttentionKvBatch(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto q = f32(info[0], "q");
  auto k = f32(info[1], "k");
  auto v = f32(info[2], "v");
  auto out = f32(info[3], "out");
  if (!info[4].IsArray()) throw Napi::TypeError::New(env, "slabs must be an array of ArrayBuffers");
  Napi::Array slabs = info[4].As<Napi::Array>();
  auto blocks = typed<int32_t, napi_int32_array>(info[5], "blocks", "Int32Array");
  auto parts = typed<int32_t, napi_int32_array>(info[7], "parts", "Int32Array");
  const int64_t heads = integer(info[8], "heads", 1), kvHeads = integer(info[9], "kvHeads", 1), hd = integer(info[10], "headDim", 1);
  const float scale = float(info[11].As<Napi::Number>().DoubleValue());
  if (heads % kvHeads) fail(env, "heads must be a multiple of kvHeads");
  const KvLayoutArgs l = kvLayout(env, info[6], kvHeads, hd, "attentionKvBatch");
  if (parts.second == 0 || parts.second % 4) fail(env, "attentionKvBatch: parts must hold 4 values per sequence");
  const int64_t nParts = int64_t(parts.second / 4), tableBlocks = int64_t(blocks.second / 2);
  if (blocks.second % 2) fail(env, "attentionKvBatch: blocks must hold (slab, offset) pairs");
  int64_t rows = 0;
  for (int64_t i = 0; i < nParts; i++) {
    const int64_t n = parts.first[4 * i], past = parts.first[4 * i + 1], b0 = parts.first[4 * i + 2], nb = parts.first[4 * i + 3];
    if (n < 1 || past < 0 || b0 < 0 || nb < 0 || b0 + nb > tableBlocks || nb * l.B < past + n) fail(env, "attentionKvBatch: bad part " + std::to_string(i));
    rows += n;
  }
  const uint64_t qw = uint64_t(heads) * hd, kvw = uint64_t(kvHeads) * hd;
  if (q.second != uint64_t(rows) * qw || out.second != q.second || k.second != uint64_t(rows) * kvw || v.second != k.second)
    fail(env, "attentionKvBatch: bad sizes");
  std::vector<KvBlockPtrs> ptrs(nParts);
  std::vector<qvl::AttentionArgs> args(nParts);
  int64_t r = 0;
  for (int64_t i = 0; i < nParts; i++) {
    const int64_t n = parts.first[4 * i], past = parts.first[4 * i + 1], b0 = parts.first[4 * i + 2];
    KvBlockPtrs& p = ptrs[i];
    kvBlockPtrs(env, slabs, blocks.first + 2 * b0, (past + n + l.B - 1) / l.B, l, "attentionKvBatch", &p);
    qvl::AttentionArgs& a = args[i];
    a = qvl::AttentionArgs{};
    a.nQ = int32_t(n);
    a.nKv = int32_t(past + n);
    a.heads = int32_t(heads);
    a.kvHeads = int32_t(kvHeads);
    a.headDim = int32_t(hd);
    a.scale = scale;
    a.causal = 1;
    a.qOffset = int32_t(past);
    useKvBlocks(&a, l, p);
    a.q = q.first + r * qw;
    a.out = out.first + r * qw;
    // the new rows go into their blocks ([kvHead][token][headDim]) inside the job (attention_batch)
    a.newK = k.first + r * kvw;
    a.newV = v.first + r * kvw;
    r += n;
  }
  kernels()->attentionBatch(args.data(), nParts);
  return env.Undefined();
}

Napi::Value SiluMul(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto g = f32(info[0], "gate");
  auto u = f32(info[1], "up");
  auto o = f32(info[2], "out");
  if (u.second != g.second || o.second != g.second) fail(env, "siluMul: lengths differ");
  kernels()->siluMul(g.first, u.first, o.first, int64_t(g.second));
  return env.Undefined();
}

Napi::Value Gelu(const Napi::CallbackInfo& info) {
  auto x = f32(info[0], "x");
  const bool erf = info[1].ToBoolean().Value();
  if (erf) kernels()->geluErf(x.first, int64_t(x.second));
  else kernels()->geluTanh(x.first, int64_t(x.second));
  return info.Env().Undefined();
}

Napi::Value Add(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto a = f32(info[0], "a");
  auto b = f32(info[1], "b");
  if (a.second != b.second) fail(env, "addInPlace: lengths differ");
  kernels()->add(a.first, b.first, int64_t(a.second));
  return env.Undefined();
}

Napi::Value Argmax(const Napi::CallbackInfo& info) {
  auto x = f32(info[0], "x");
  if (x.second >= (size_t(1) << 36)) fail(info.Env(), "argmax: x holds 2^36 values or more");
  return Napi::Number::New(info.Env(), double(kernels()->argmax(x.first, int64_t(x.second))));
}

// ---- load-time quantization ----

// The float matrix a quantizer reads (f32, bf16 or f16), from a weight object.
void quantSource(Napi::Env env, Napi::Value v, qvl::QuantArgs* a, const char* op) {
  if (!v.IsObject()) throw Napi::TypeError::New(env, std::string(op) + ": the source must be a weight object");
  Napi::Object d = v.As<Napi::Object>();
  a->format = int32_t(integer(d.Get("format"), "format"));
  a->rows = integer(d.Get("rows"), "rows");
  a->cols = integer(d.Get("cols"), "cols");
  if (a->format != qvl::FMT_F32 && a->format != qvl::FMT_BF16 && a->format != qvl::FMT_F16)
    fail(env, std::string(op) + ": source format " + std::to_string(a->format) + " is not f32, bf16 or f16");
  a->data = floatData(env, d, a->format, uint64_t(a->rows) * uint64_t(a->cols));
}

// The AVX2 build wherever the kernel set in use is an AVX2 or AVX-512 one (setIsa("scalar")
// selects the portable build, which is how the tests cover both).
qvl::QuantizeFn quantizerInUse() {
  return kernels() != qvl::kernels_base() && qvl::cpu_has_avx2() && qvl::quantizer_avx2() ? qvl::quantizer_avx2() : qvl::quantizer_base();
}

// quantize(src, bits, refit, groupSize, symmetric, qs, scales, zeros): refit 0 (none), 1 or 2
// (binary16 scales), q8 only; `src` is {format, rows,
// cols, data} of f32, bf16 or f16; the outputs are the q8 (Int8Array) or q4 (Uint8Array) codes,
// the scales and, for asymmetric q4, the zero points. Returns −1, or row·cols + col of the first
// NaN/±Infinity weight in row-major order (the one the TypeScript quantizers name).
Napi::Value Quantize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qvl::QuantArgs a{};
  quantSource(env, info[0], &a, "quantize");
  const uint64_t elems = uint64_t(a.rows) * uint64_t(a.cols);
  auto need = [&](size_t have, uint64_t want, const char* what) {
    if (have < want)
      fail(env, std::string(what) + " has " + std::to_string(have) + " elements, the shape needs " + std::to_string(want));
  };
  a.bits = int32_t(integer(info[1], "bits", 4));
  if (a.bits != 4 && a.bits != 8) fail(env, "quantize: bits must be 4 or 8");
  a.refit = info[2].IsNumber() ? int32_t(info[2].As<Napi::Number>().Int32Value()) : info[2].ToBoolean().Value() ? 1 : 0;
  if (a.refit < 0 || a.refit > 2) throw Napi::RangeError::New(env, "quantize: refit must be 0 (none), 1 or 2 (binary16 scales)");
  const int64_t g = integer(info[3], "groupSize", 1);
  if (g > (int64_t(1) << 30)) fail(env, "quantize: groupSize is too large");
  a.groupSize = int32_t(g);
  a.symmetric = info[4].ToBoolean().Value() ? 1 : 0;
  const int64_t per = a.bits == 8 ? qvl::kQ8Block : g;
  const uint64_t nScales = uint64_t(a.rows) * uint64_t((a.cols + per - 1) / per);
  auto s = f32(info[6], "scales");
  need(s.second, nScales, "scales");
  a.scales = s.first;
  if (a.bits == 8) {
    auto q = typed<int8_t, napi_int8_array>(info[5], "qs", "Int8Array");
    need(q.second, elems, "qs");
    a.qs = q.first;
  } else {
    auto q = typed<uint8_t, napi_uint8_array>(info[5], "qs", "Uint8Array");
    need(q.second, uint64_t(a.rows) * uint64_t((a.cols + 1) / 2), "qs");
    a.qs = q.first;
    if (!a.symmetric) {
      auto z = typed<uint8_t, napi_uint8_array>(info[7], "zeros", "Uint8Array");
      need(z.second, nScales, "zeros");
      a.zeros = z.first;
    }
  }
  adviseHugePages(a.qs, a.bits == 8 ? size_t(elems) : size_t(a.rows) * size_t((a.cols + 1) / 2));
  adviseHugePages(a.scales, size_t(nScales) * 4);
  if (a.zeros) adviseHugePages(a.zeros, size_t(nScales));
  return Napi::Number::New(env, double(quantizerInUse()(&a)));
}

// quantizeQ4x8(source, groupSize, symmetric): quantize's q4 (a group size that is a multiple of
// 32) written straight into the eight-row stream prepare would make of it, as a prepared weight.
// No row-major copy is made, so a load does not allocate, write and repack one (a 4B q4 load: the
// repacking was 12% of its time, and fresh pages cost tens of microseconds each on some virtual
// machines). The stream takes binary16 scales, as prepare's would, unless one needs float32:
// then the matrix is quantized again into a stream of float32 scales. Returns the weight's
// handle, or row·cols + col of the first NaN/±Infinity weight.
Napi::Value QuantizeQ4x8(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qvl::QuantArgs a{};
  quantSource(env, info[0], &a, "quantizeQ4x8");
  a.bits = 4;
  const int64_t g = integer(info[1], "groupSize", 32);
  if (g % 32 != 0 || g > (int64_t(1) << 30)) fail(env, "quantizeQ4x8: groupSize must be a multiple of 32");
  a.groupSize = int32_t(g);
  a.symmetric = info[2].ToBoolean().Value() ? 1 : 0;
  if (a.rows < 1 || a.cols < 1) fail(env, "quantizeQ4x8: the matrix is empty");
  auto w = std::make_unique<WeightDesc>();
  *w = WeightDesc{};
  w->format = qvl::FMT_Q4;
  w->rows = a.rows;
  w->cols = a.cols;
  w->groupSize = a.groupSize;
  w->nGroups = int32_t((a.cols + g - 1) / g);
  w->q4x8Zeros = !a.symmetric;
  int64_t r = -2;
  for (int f16 = 1; f16 >= 0 && r == -2; f16--) {
    freeOwned(env, w.get());
    const qvl::Q4x8Layout l = qvl::q4x8_layout(a.rows, a.cols, g, !a.symmetric, f16 != 0);
    a.q4x8 = allocStream(env, w.get(), size_t(qvl::q4x8_bytes(l)), "q4");
    a.q4x8F16 = f16;
    w->q4x8 = a.q4x8;
    w->q4x8F16 = f16;
    r = quantizerInUse()(&a);
  }
  if (r != -1) {
    freeOwned(env, w.get());
    return Napi::Number::New(env, double(r));
  }
  return Napi::External<WeightDesc>::New(env, w.release(), [](Napi::Env env, WeightDesc* p) {
    freeOwned(env, p);
    delete p;
  });
}

// gptqSweepQ4(w, rows, cols, k0, k1, groupSize, u, err, qs, scales, zeros): GPTQ's sweep of
// columns [k0, k1) (native/gptq_sweep.inc) into the caller's arrays; returns −1, or row·cols +
// col of the first NaN/±Infinity weight a group met. Same build choice as quantize.
Napi::Value GptqSweepQ4(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  qvl::GptqSweepArgs a{};
  auto w = f32(info[0], "w");
  a.rows = integer(info[1], "rows", 1);
  a.cols = integer(info[2], "cols", 1);
  a.k0 = integer(info[3], "k0");
  a.k1 = integer(info[4], "k1");
  a.groupSize = integer(info[5], "groupSize", 1);
  if (a.k1 <= a.k0 || a.k1 > a.cols) fail(env, "gptqSweepQ4: columns [k0, k1) must be a non-empty range within cols");
  if (a.k0 % a.groupSize != 0) fail(env, "gptqSweepQ4: k0 must be a multiple of groupSize");
  const uint64_t elems = uint64_t(a.rows) * uint64_t(a.cols), groups = uint64_t(a.rows) * uint64_t((a.cols + a.groupSize - 1) / a.groupSize);
  auto u = f32(info[6], "u");
  auto err = f32(info[7], "err");
  auto qs = typed<uint8_t, napi_uint8_array>(info[8], "qs", "Uint8Array");
  auto scales = f32(info[9], "scales");
  auto zeros = typed<uint8_t, napi_uint8_array>(info[10], "zeros", "Uint8Array");
  auto need = [&](size_t have, uint64_t want, const char* what) {
    if (have < want) fail(env, std::string("gptqSweepQ4: ") + what + " has " + std::to_string(have) + " elements, the shape needs " + std::to_string(want));
  };
  need(w.second, elems, "w");
  need(u.second, uint64_t(a.cols) * uint64_t(a.cols), "u");
  need(err.second, elems, "err");
  need(qs.second, uint64_t(a.rows) * uint64_t((a.cols + 1) / 2), "qs");
  need(scales.second, groups, "scales");
  need(zeros.second, groups, "zeros");
  a.w = w.first;
  a.u = u.first;
  a.err = err.first;
  a.qs = qs.first;
  a.scales = scales.first;
  a.zeros = zeros.first;
  qvl::GptqSweepFn sweep = kernels() != qvl::kernels_base() && qvl::cpu_has_avx2() && qvl::gptq_sweeper_avx2()
                               ? qvl::gptq_sweeper_avx2()
                               : qvl::gptq_sweeper_base();
  return Napi::Number::New(env, double(sweep(&a)));
}

// ---- files ----

Napi::Value MmapFile(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = info[0].As<Napi::String>().Utf8Value();
  qvl::Mapping m;
  std::string err;
  if (!qvl::map_file(path, &m, &err)) {
    Napi::Error e = Napi::Error::New(env, err);
    e.Set("errno", Napi::Number::New(env, m.err));
    throw e;
  }
  if (m.size == 0) return Napi::ArrayBuffer::New(env, 0);
  return Napi::ArrayBuffer::New(
      env, m.base, m.size, [](Napi::Env, void* base, size_t* size) {
        qvl::unmap(base, *size);
        delete size;
      },
      new size_t(m.size));
}

// allocPages(bytes): a zero-filled ArrayBuffer of its own mapping in huge pages where the system
// gives them (qvl::map_pages), unmapped when collected. For the KV cache's slabs: V8's buffers come
// from the C heap in 4 KiB pages, and a decode step that writes new positions then faults a page
// per (layer, kv head, K or V) every few tokens, while the attention reads hop pages.
Napi::Value AllocPages(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int64_t bytes = integer(info[0], "bytes", 1);
  size_t mapped = 0;
  void* p = qvl::map_pages(size_t(bytes), &mapped);
  if (!p) {
    const int err = errno;  // before anything else can set it
    Napi::Error e = Napi::Error::New(env, "allocPages: cannot map " + std::to_string(bytes) + " bytes: " + strerror(err));
    e.Set("errno", Napi::Number::New(env, err));
    throw e;
  }
  Napi::MemoryManagement::AdjustExternalMemory(env, int64_t(mapped));
  return Napi::ArrayBuffer::New(
      env, p, size_t(bytes), [](Napi::Env env, void* base, size_t* len) {
        Napi::MemoryManagement::AdjustExternalMemory(env, -int64_t(*len));
        qvl::unmap_pages(base, *len);
        delete len;
      },
      new size_t(mapped));
}

Napi::Value AdviseDontNeed(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (!info[0].IsArrayBuffer()) throw Napi::TypeError::New(env, "adviseDontNeed needs the ArrayBuffer from mmapFile");
  Napi::ArrayBuffer ab = info[0].As<Napi::ArrayBuffer>();
  const int64_t off = integer(info[1], "offset"), len = integer(info[2], "length");
  if (uint64_t(off) + uint64_t(len) > ab.ByteLength()) fail(env, "range is outside the buffer");
  int64_t advised = qvl::advise_dontneed(ab.Data(), ab.ByteLength(), off, len);
  if (advised < 0) fail(env, "adviseDontNeed: the buffer is not a mapping made by mmapFile");
  return Napi::Number::New(env, double(advised));
}

// ---- probes ----

struct ProbeCtx {
  const KernelTable* k;
  const float* buf;
  int64_t chunk, len;
  double sink[256];
};

/** The sum over the pool's threads of one throughput probe (GFLOP/s or GMAC/s per thread), run on each. */
Napi::Value ProbeEveryThread(const Napi::CallbackInfo& info, double (*KernelTable::*probe)(int64_t)) {
  struct Ctx {
    const KernelTable* k;
    double (*KernelTable::*probe)(int64_t);
    int64_t iters;
    double rate[256];
  } c{};
  c.k = kernels();
  c.probe = probe;
  c.iters = integer(info[0], "iters", 1);
  const int nt = qvl::pool_threads();
  qvl::parallel_for(
      nt, [](void* p, int64_t t, int) { Ctx* c = (Ctx*)p; c->rate[t] = (c->k->*(c->probe))(c->iters); }, &c);
  double s = 0;
  for (int i = 0; i < nt; i++) s += c.rate[i];
  return Napi::Number::New(info.Env(), s);
}

Napi::Value ProbeFma(const Napi::CallbackInfo& info) { return ProbeEveryThread(info, &KernelTable::fmaProbe); }

Napi::Value ProbeInt8(const Napi::CallbackInfo& info) { return ProbeEveryThread(info, &KernelTable::int8Probe); }

Napi::Value ProbeRead(const Napi::CallbackInfo& info) {
  auto b = f32(info[0], "buffer");
  ProbeCtx c{};
  c.k = kernels();
  c.buf = b.first;
  c.len = int64_t(b.second);
  c.chunk = (c.len + 255) / 256;
  qvl::parallel_for(
      256,
      [](void* p, int64_t t, int th) {
        ProbeCtx* c = (ProbeCtx*)p;
        int64_t s = t * c->chunk, e = std::min(c->len, s + c->chunk);
        if (s < e) c->sink[t] = c->k->readProbe(c->buf + s, e - s);
      },
      &c);
  double s = 0;
  for (int i = 0; i < 256; i++) s += c.sink[i];
  return Napi::Number::New(info.Env(), s);
}

void ReleaseEnv(void* arg) {
  EnvState* s = static_cast<EnvState*>(arg);
  qvl::pool_delete(s->pool);
  if (tls_env == s) tls_env = nullptr;
  delete s;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  qvl::unmap_large_frees();
  if (!tls_env) {
    tls_env = new EnvState{qvl::pool_new(qvl::physical_cores()), bestKernels()};
    qvl::pool_use(tls_env->pool);
    NAPI_THROW_IF_FAILED(env, napi_add_env_cleanup_hook(env, ReleaseEnv, tls_env), exports);
  }
  exports.Set("info", Napi::Function::New(env, Info));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("setInt8Gemv512", Napi::Function::New(env, SetInt8Gemv512));
  exports.Set("prepare", Napi::Function::New(env, Prepare));
  exports.Set("weightLayout", Napi::Function::New(env, WeightLayout));
  exports.Set("matmul", Napi::Function::New(env, Matmul));
  exports.Set("matmulMany", Napi::Function::New(env, MatmulMany));
  exports.Set("gatherRows", Napi::Function::New(env, GatherRows));
  exports.Set("rmsNorm", Napi::Function::New(env, RmsNorm));
  exports.Set("layerNorm", Napi::Function::New(env, LayerNorm));
  exports.Set("rope", Napi::Function::New(env, Rope));
  exports.Set("attention", Napi::Function::New(env, Attention));
  exports.Set("attentionKv", Napi::Function::New(env, AttentionKv));
  exports.Set("attentionKvBatch", Napi::Function::New(env, AttentionKvBatch));
  exports.Set("siluMul", Napi::Function::New(env, SiluMul));
  exports.Set("gelu", Napi::Function::New(env, Gelu));
  exports.Set("add", Napi::Function::New(env, Add));
  exports.Set("argmax", Napi::Function::New(env, Argmax));
  exports.Set("releaseWeight", Napi::Function::New(env, ReleaseWeight));
  exports.Set("quantize", Napi::Function::New(env, Quantize));
  exports.Set("quantizeQ4x8", Napi::Function::New(env, QuantizeQ4x8));
  exports.Set("gptqSweepQ4", Napi::Function::New(env, GptqSweepQ4));
  exports.Set("mmapFile", Napi::Function::New(env, MmapFile));
  exports.Set("allocPages", Napi::Function::New(env, AllocPages));
  exports.Set("adviseDontNeed", Napi::Function::New(env, AdviseDontNeed));
  exports.Set("probeFma", Napi::Function::New(env, ProbeFma));
  exports.Set("probeRead", Napi::Function::New(env, ProbeRead));
  exports.Set("probeInt8", Napi::Function::New(env, ProbeInt8));
  return exports;
}

}  // namespace

NODE_API_MODULE(qvl_native, Init)
