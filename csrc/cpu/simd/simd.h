// The one vector abstraction the CPU kernels are written against. Each ISA
// translation unit defines exactly one of
//   SPARSECORE_ISA_SCALAR, SPARSECORE_ISA_AVX2, SPARSECORE_ISA_AVX512
// plus SPARSECORE_ISA_NS (its namespace name), then includes this header and
// the kernel sources. Everything here has internal linkage (anonymous
// namespace inside the per-ISA namespace), so an AVX-512 inline function can
// never be picked by the linker for a CPU without AVX-512.
//
// For the SIMDe build the TU includes <simde/x86/avx512.h> with native aliases
// before this header; the _mm512_* names below then resolve to SIMDe.
#pragma once
#include <cstdint>
#include <cstring>

#if defined(SPARSECORE_ISA_AVX2) || (defined(SPARSECORE_ISA_AVX512) && !defined(SPARSECORE_SIMDE))
#include <immintrin.h>
#endif

#include "sparsecore/dtypes.h"

namespace sparsecore::cpu::SPARSECORE_ISA_NS {
namespace {

#if defined(SPARSECORE_ISA_AVX512)
constexpr int kLanes = 16;
struct Vec { __m512 v; };
struct IVec { __m512i v; };
inline Vec vzero() { return {_mm512_setzero_ps()}; }
inline Vec vset1(float x) { return {_mm512_set1_ps(x)}; }
inline Vec vload(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void vstore(float* p, Vec a) { _mm512_storeu_ps(p, a.v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec vadd(Vec a, Vec b) { return {_mm512_add_ps(a.v, b.v)}; }
inline Vec vgather(const float* base, IVec idx) { return {_mm512_i32gather_ps(idx.v, base, 4)}; }
inline IVec iload_u16(const uint16_t* p) {
  return {_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
inline IVec iload_i32(const int32_t* p) { return {_mm512_loadu_si512(p)}; }
inline IVec iload_any(const uint16_t* p) { return iload_u16(p); }
inline IVec iload_any(const int32_t* p) { return iload_i32(p); }
template <typename IS>
inline Vec vgather_at(const float* base, const IS* idx) { return vgather(base, iload_any(idx)); }
inline Vec vload_bf16(const uint16_t* p) {
  __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
}
inline Vec vload_fp16(const uint16_t* p) {
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
#elif defined(SPARSECORE_ISA_AVX2)
constexpr int kLanes = 8;
struct Vec { __m256 v; };
inline Vec vzero() { return {_mm256_setzero_ps()}; }
inline Vec vset1(float x) { return {_mm256_set1_ps(x)}; }
inline Vec vload(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void vstore(float* p, Vec a) { _mm256_storeu_ps(p, a.v); }
inline Vec vfma(Vec a, Vec b, Vec c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
inline Vec vadd(Vec a, Vec b) { return {_mm256_add_ps(a.v, b.v)}; }
// On Zen 3 eight scalar loads + inserts beat vgatherdps by about 1.5x (the
// hardware gather is microcoded there); Intel cores are close either way.
template <typename IS>
inline Vec vgather_at(const float* base, const IS* idx) {
  return {_mm256_setr_ps(base[idx[0]], base[idx[1]], base[idx[2]], base[idx[3]], base[idx[4]], base[idx[5]],
                         base[idx[6]], base[idx[7]])};
}
inline Vec vload_bf16(const uint16_t* p) {
  __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
}
inline Vec vload_fp16(const uint16_t* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
#elif defined(SPARSECORE_ISA_SCALAR)
// The scalar path keeps the same structure with 4 independent lanes, so the
// compiler's baseline auto-vectorisation (SSE2) still has something to use.
constexpr int kLanes = 4;
struct Vec { float v[4]; };
inline Vec vzero() { return {{0.f, 0.f, 0.f, 0.f}}; }
inline Vec vset1(float x) { return {{x, x, x, x}}; }
inline Vec vload(const float* p) { Vec r; memcpy(r.v, p, sizeof r.v); return r; }
inline void vstore(float* p, Vec a) { memcpy(p, a.v, sizeof a.v); }
inline Vec vfma(Vec a, Vec b, Vec c) {
  for (int i = 0; i < 4; ++i) c.v[i] = a.v[i] * b.v[i] + c.v[i];
  return c;
}
inline Vec vadd(Vec a, Vec b) {
  for (int i = 0; i < 4; ++i) a.v[i] += b.v[i];
  return a;
}
template <typename IS>
inline Vec vgather_at(const float* base, const IS* idx) {
  Vec r;
  for (int i = 0; i < 4; ++i) r.v[i] = base[idx[i]];
  return r;
}
inline Vec vload_bf16(const uint16_t* p) {
  Vec r;
  for (int i = 0; i < 4; ++i) r.v[i] = bf16_to_float(p[i]);
  return r;
}
inline Vec vload_fp16(const uint16_t* p) {
  Vec r;
  for (int i = 0; i < 4; ++i) r.v[i] = fp16_to_float(p[i]);
  return r;
}
#else
#error "define one SPARSECORE_ISA_* before including simd.h"
#endif

inline float vsum(Vec a) {
  alignas(64) float t[kLanes];
  vstore(t, a);
  float s = 0.f;
  for (int i = 0; i < kLanes; ++i) s += t[i];
  return s;
}

// Typed loads used by the kernels: a storage type tag selects the decode.
template <DType T> struct ValueTraits;
template <> struct ValueTraits<DType::kFloat32> {
  using Storage = float;
  static Vec load(const float* p) { return vload(p); }
  static float scalar(float x) { return x; }
};
template <> struct ValueTraits<DType::kBFloat16> {
  using Storage = uint16_t;
  static Vec load(const uint16_t* p) { return vload_bf16(p); }
  static float scalar(uint16_t x) { return bf16_to_float(x); }
};
template <> struct ValueTraits<DType::kFloat16> {
  using Storage = uint16_t;
  static Vec load(const uint16_t* p) { return vload_fp16(p); }
  static float scalar(uint16_t x) { return fp16_to_float(x); }
};

template <IndexType I> struct IndexTraits;
template <> struct IndexTraits<IndexType::kUInt16> { using Storage = uint16_t; };
template <> struct IndexTraits<IndexType::kInt32> { using Storage = int32_t; };


// ---------------------------------------------------------------------------
// Bitmap groups: kGroupCols columns share one mask (bit l = column l stored);
// the stored values of the group lie packed at v. group_fma adds
// sum_l value(l) * x_j[l] over the set bits into acc[j]. v may be read up to
// kGroupCols elements ahead (callers guarantee that), each x_j likewise.
#if defined(SPARSECORE_ISA_AVX2)
constexpr int kGroupCols = 8;

// Expansion tables, built at compile time (constant-initialised: no code
// runs at load, as the per-ISA rules require).
struct ExpandTables {
  // bf16: vpshufb control on the 8 values broadcast to both 128-bit halves;
  // puts value j in the top half of dword l, zeros elsewhere.
  uint8_t bf16[256][32];
  // fp16: vpshufb control on 8 values, value j to 16-bit slot l, zeros elsewhere.
  uint8_t fp16[256][16];
  // fp32: vpermps index j per lane; sign bit set = lane is not stored.
  int32_t fp32[256][8];
};

constexpr ExpandTables make_expand_tables() {
  ExpandTables t{};
  for (int m = 0; m < 256; ++m) {
    int j = 0;
    for (int l = 0; l < 8; ++l) {
      const bool set = (m >> l) & 1;
      for (int b = 0; b < 4; ++b) t.bf16[m][4 * l + b] = 0x80;
      t.fp16[m][2 * l] = t.fp16[m][2 * l + 1] = 0x80;
      t.fp32[m][l] = int32_t(0x80000000u);
      if (set) {
        t.bf16[m][4 * l + 2] = uint8_t(2 * j);
        t.bf16[m][4 * l + 3] = uint8_t(2 * j + 1);
        t.fp16[m][2 * l] = uint8_t(2 * j);
        t.fp16[m][2 * l + 1] = uint8_t(2 * j + 1);
        t.fp32[m][l] = j;
        ++j;
      }
    }
  }
  return t;
}
alignas(64) constexpr ExpandTables kExpand = make_expand_tables();

inline unsigned group_mask(const uint8_t* bitmap_row, int64_t g) { return bitmap_row[g]; }

template <DType VT>
inline Vec expand_group(const typename ValueTraits<VT>::Storage* v, unsigned m) {
  __m256 f;
  if constexpr (VT == DType::kBFloat16) {
    // One load + one shuffle: expand, zero the gaps and widen bf16 to fp32.
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v)));
    const __m256i ctrl = _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpand.bf16[m]));
    f = _mm256_castsi256_ps(_mm256_shuffle_epi8(both, ctrl));
  } else if constexpr (VT == DType::kFloat16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v));
    const __m128i ctrl = _mm_load_si128(reinterpret_cast<const __m128i*>(kExpand.fp16[m]));
    f = _mm256_cvtph_ps(_mm_shuffle_epi8(h, ctrl));
  } else {
    const __m256i idx = _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpand.fp32[m]));
    const __m256 p = _mm256_permutevar8x32_ps(_mm256_loadu_ps(v), idx);
    f = _mm256_blendv_ps(p, _mm256_setzero_ps(), _mm256_castsi256_ps(idx));
  }
  return {f};
}

// acc[j] += sum over the group's stored columns of value * x_j, for the NB
// columns x_j = x + j * x_stride of the dense operand. The values are
// expanded once and reused for every column.
template <DType VT, int NB>
inline void group_fma(Vec* acc, const typename ValueTraits<VT>::Storage* v, unsigned m, const float* x,
                      int64_t x_stride) {
  const Vec f = expand_group<VT>(v, m);
  for (int j = 0; j < NB; ++j) acc[j] = vfma(f, vload(x + j * x_stride), acc[j]);
}

// The same controls for a group whose 4 values sit 8 bytes further into the
// loaded 16 (the second group of a pair at 4 values per group): 16 columns
// then cost one value load instead of two.
struct ExpandHiTables {
  uint8_t bf16[256][32];
  uint8_t fp16[256][16];
};
constexpr ExpandHiTables make_expand_hi_tables() {
  ExpandHiTables t{};
  for (int m = 0; m < 256; ++m) {
    for (int b = 0; b < 32; ++b) t.bf16[m][b] = kExpand.bf16[m][b] == 0x80 ? 0x80 : uint8_t(kExpand.bf16[m][b] + 8);
    for (int b = 0; b < 16; ++b) t.fp16[m][b] = kExpand.fp16[m][b] == 0x80 ? 0x80 : uint8_t(kExpand.fp16[m][b] + 8);
  }
  return t;
}
alignas(64) constexpr ExpandHiTables kExpandHi = make_expand_hi_tables();

// Two consecutive groups with exactly 4 values each (2:4, 4:8 at 8 columns
// per group): acc0 += group m0 (values v[0..4)), acc1 += group m1 (v[4..8)).
template <DType VT, int NB>
inline void group_pair4_fma(Vec* acc0, Vec* acc1, const typename ValueTraits<VT>::Storage* v, unsigned m0,
                            unsigned m1, const float* x, int64_t x_stride) {
  __m256 lo, hi;
  if constexpr (VT == DType::kBFloat16) {
    const __m256i both = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(v)));
    lo = _mm256_castsi256_ps(_mm256_shuffle_epi8(both, _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpand.bf16[m0]))));
    hi = _mm256_castsi256_ps(_mm256_shuffle_epi8(both, _mm256_load_si256(reinterpret_cast<const __m256i*>(kExpandHi.bf16[m1]))));
  } else if constexpr (VT == DType::kFloat16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(v));
    lo = _mm256_cvtph_ps(_mm_shuffle_epi8(h, _mm_load_si128(reinterpret_cast<const __m128i*>(kExpand.fp16[m0]))));
    hi = _mm256_cvtph_ps(_mm_shuffle_epi8(h, _mm_load_si128(reinterpret_cast<const __m128i*>(kExpandHi.fp16[m1]))));
  } else {
    lo = expand_group<VT>(v, m0).v;
    hi = expand_group<VT>(v + 4, m1).v;
  }
  for (int j = 0; j < NB; ++j) {
    const float* xj = x + j * x_stride;
    acc0[j].v = _mm256_fmadd_ps(lo, _mm256_loadu_ps(xj), acc0[j].v);
    acc1[j].v = _mm256_fmadd_ps(hi, _mm256_loadu_ps(xj + 8), acc1[j].v);
  }
}
#elif defined(SPARSECORE_ISA_AVX512)
constexpr int kGroupCols = 16;

inline unsigned group_mask(const uint8_t* bitmap_row, int64_t g) {
  return unsigned(bitmap_row[2 * g]) | (unsigned(bitmap_row[2 * g + 1]) << 8);
}

// Compress x to the stored columns instead of expanding the values. The
// lanes past the group's count hold the next group's values: they are zeroed
// too (one masked move), so that a NaN or Inf there (raw-op input is not
// validated) cannot leak into this row as 0 * Inf.
template <DType VT, int NB>
inline void group_fma(Vec* acc, const typename ValueTraits<VT>::Storage* v, unsigned m, const float* x,
                      int64_t x_stride) {
  const __mmask16 live = __mmask16((1u << __builtin_popcount(m)) - 1u);
  const Vec vals = {_mm512_maskz_mov_ps(live, ValueTraits<VT>::load(v).v)};
  for (int j = 0; j < NB; ++j) {
    const __m512 xs = _mm512_maskz_compress_ps(__mmask16(m), _mm512_loadu_ps(x + j * x_stride));
    acc[j].v = _mm512_fmadd_ps(vals.v, xs, acc[j].v);
  }
}
#else
constexpr int kGroupCols = 8;

inline unsigned group_mask(const uint8_t* bitmap_row, int64_t g) { return bitmap_row[g]; }

template <DType VT, int NB>
inline void group_fma(Vec* acc, const typename ValueTraits<VT>::Storage* v, unsigned m, const float* x,
                      int64_t x_stride) {
  int i = 0;
  for (int l = 0; l < kGroupCols; ++l) {
    if (!((m >> l) & 1u)) continue;
    const float value = ValueTraits<VT>::scalar(v[i++]);
    for (int j = 0; j < NB; ++j) acc[j].v[l & 3] += value * x[j * x_stride + l];
  }
}
#endif

#if !defined(SPARSECORE_ISA_AVX2)
// Other paths: a pair is two groups.
template <DType VT, int NB>
inline void group_pair4_fma(Vec* acc0, Vec* acc1, const typename ValueTraits<VT>::Storage* v, unsigned m0,
                            unsigned m1, const float* x, int64_t x_stride) {
  constexpr int kPerGroup = kGroupCols / 2;  // 4 values per 8 columns = half of any group
  group_fma<VT, NB>(acc0, v, m0, x, x_stride);
  group_fma<VT, NB>(acc1, v + kPerGroup, m1, x + kGroupCols, x_stride);
}
#endif

}  // namespace
}  // namespace sparsecore::cpu::SPARSECORE_ISA_NS
