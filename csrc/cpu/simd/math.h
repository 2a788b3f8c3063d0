// Element-wise math on simd.h's Vec for the attention kernels: arithmetic,
// comparisons into a lane Mask, select, and exp / tanh accurate to a few
// ulp. Same rules as simd.h (one ISA per TU, internal linkage); include
// simd.h first.
#pragma once

namespace sparsecore::cpu::SPARSECORE_ISA_NS {
namespace {

#if defined(SPARSECORE_ISA_AVX512)
struct Mask { __mmask16 m; };
inline Vec vmul(Vec a, Vec b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline Vec vsub(Vec a, Vec b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline Vec vdiv(Vec a, Vec b) { return {_mm512_div_ps(a.v, b.v)}; }
inline Vec vmax(Vec a, Vec b) { return {_mm512_max_ps(a.v, b.v)}; }
inline Vec vmin(Vec a, Vec b) { return {_mm512_min_ps(a.v, b.v)}; }
inline Mask vlt(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask vle(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_LE_OQ)}; }
inline Mask veq(Vec a, Vec b) { return {_mm512_cmp_ps_mask(a.v, b.v, _CMP_EQ_OQ)}; }
inline Mask mand(Mask a, Mask b) { return {__mmask16(a.m & b.m)}; }
inline Mask mor(Mask a, Mask b) { return {__mmask16(a.m | b.m)}; }
inline Mask mnot(Mask a) { return {__mmask16(~a.m)}; }
inline bool many(Mask a) { return a.m != 0; }
inline Vec vsel(Mask m, Vec a, Vec b) { return {_mm512_mask_blend_ps(m.m, b.v, a.v)}; }
// 2^n for integral n in [-126, 127].
inline Vec vpow2i(Vec n) {
  const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(n.v), _mm512_set1_epi32(127));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(e, 23))};
}
// 0x08: round to nearest, no exceptions (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC; SIMDe has no alias).
inline Vec vround(Vec a) { return {_mm512_roundscale_ps(a.v, 0x08)}; }
inline __m128 vhalves4(__m512 a, bool max) {
  const __m256 lo = _mm512_castps512_ps256(a), hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a), 1));
  const __m256 x = max ? _mm256_max_ps(lo, hi) : _mm256_add_ps(lo, hi);
  const __m128 l4 = _mm256_castps256_ps128(x), h4 = _mm256_extractf128_ps(x, 1);
  return max ? _mm_max_ps(l4, h4) : _mm_add_ps(l4, h4);
}
inline float vhsum(Vec a) {
  __m128 x = vhalves4(a.v, false);
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
}
// out[0..3] = the horizontal sums of a, b, c and d: one transpose-add tree
// (9 shuffles) instead of four reductions (20).
inline void vhsum4(Vec a, Vec b, Vec c, Vec d, float* out) {
  // 128-bit lanes: [a0+a2, a1+a3, b0+b2, b1+b3], then [A, B, C, D] of 4 partials each.
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_f32x4(a.v, b.v, 0x44), _mm512_shuffle_f32x4(a.v, b.v, 0xEE));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_f32x4(c.v, d.v, 0x44), _mm512_shuffle_f32x4(c.v, d.v, 0xEE));
  __m512 t = _mm512_add_ps(_mm512_shuffle_f32x4(ab, cd, 0x88), _mm512_shuffle_f32x4(ab, cd, 0xDD));
  t = _mm512_add_ps(t, _mm512_shuffle_ps(t, t, 0x4E));  // within lanes: [p0+p2, p1+p3, ..]
  t = _mm512_add_ps(t, _mm512_shuffle_ps(t, t, 0xB1));  // every element holds its lane's sum
  const __m512 first = _mm512_permutexvar_ps(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), t);
  _mm_storeu_ps(out, _mm512_castps512_ps128(first));
}
inline float vhmax(Vec a) {
  __m128 x = vhalves4(a.v, true);
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_max_ss(x, _mm_shuffle_ps(x, x, 1)));
}
#elif defined(SPARSECORE_ISA_AVX2)
struct Mask { __m256 m; };
inline Vec vmul(Vec a, Vec b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline Vec vsub(Vec a, Vec b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline Vec vdiv(Vec a, Vec b) { return {_mm256_div_ps(a.v, b.v)}; }
inline Vec vmax(Vec a, Vec b) { return {_mm256_max_ps(a.v, b.v)}; }
inline Vec vmin(Vec a, Vec b) { return {_mm256_min_ps(a.v, b.v)}; }
inline Mask vlt(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline Mask vle(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline Mask veq(Vec a, Vec b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_EQ_OQ)}; }
inline Mask mand(Mask a, Mask b) { return {_mm256_and_ps(a.m, b.m)}; }
inline Mask mor(Mask a, Mask b) { return {_mm256_or_ps(a.m, b.m)}; }
inline Mask mnot(Mask a) { return {_mm256_xor_ps(a.m, _mm256_castsi256_ps(_mm256_set1_epi32(-1)))}; }
inline bool many(Mask a) { return _mm256_movemask_ps(a.m) != 0; }
inline Vec vsel(Mask m, Vec a, Vec b) { return {_mm256_blendv_ps(b.v, a.v, m.m)}; }
inline Vec vpow2i(Vec n) {
  const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n.v), _mm256_set1_epi32(127));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(e, 23))};
}
inline Vec vround(Vec a) { return {_mm256_round_ps(a.v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)}; }
inline float vhsum(Vec a) {
  __m128 x = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  x = _mm_add_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_add_ss(x, _mm_shuffle_ps(x, x, 1)));
}
// out[0..3] = the horizontal sums of a, b, c and d (three hadds instead of four reductions).
inline void vhsum4(Vec a, Vec b, Vec c, Vec d, float* out) {
  // [a0123, b0123, c0123, d0123 | a4567, b4567, c4567, d4567]
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a.v, b.v), _mm256_hadd_ps(c.v, d.v));
  _mm_storeu_ps(out, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
inline float vhmax(Vec a) {
  __m128 x = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  x = _mm_max_ps(x, _mm_movehl_ps(x, x));
  return _mm_cvtss_f32(_mm_max_ss(x, _mm_shuffle_ps(x, x, 1)));
}
#else
struct Mask { bool m[4]; };
#define SC_LANES4(expr) \
  Vec r;                \
  for (int i = 0; i < 4; ++i) r.v[i] = (expr); \
  return r
#define SC_MASK4(expr) \
  Mask r;              \
  for (int i = 0; i < 4; ++i) r.m[i] = (expr); \
  return r
inline Vec vmul(Vec a, Vec b) { SC_LANES4(a.v[i] * b.v[i]); }
inline Vec vsub(Vec a, Vec b) { SC_LANES4(a.v[i] - b.v[i]); }
inline Vec vdiv(Vec a, Vec b) { SC_LANES4(a.v[i] / b.v[i]); }
// max/min as the x86 instructions define them (the second operand when either is NaN).
inline Vec vmax(Vec a, Vec b) { SC_LANES4(a.v[i] > b.v[i] ? a.v[i] : b.v[i]); }
inline Vec vmin(Vec a, Vec b) { SC_LANES4(a.v[i] < b.v[i] ? a.v[i] : b.v[i]); }
inline Mask vlt(Vec a, Vec b) { SC_MASK4(a.v[i] < b.v[i]); }
inline Mask vle(Vec a, Vec b) { SC_MASK4(a.v[i] <= b.v[i]); }
inline Mask veq(Vec a, Vec b) { SC_MASK4(a.v[i] == b.v[i]); }
inline Mask mand(Mask a, Mask b) { SC_MASK4(a.m[i] && b.m[i]); }
inline Mask mor(Mask a, Mask b) { SC_MASK4(a.m[i] || b.m[i]); }
inline Mask mnot(Mask a) { SC_MASK4(!a.m[i]); }
inline bool many(Mask a) { return a.m[0] || a.m[1] || a.m[2] || a.m[3]; }
inline Vec vsel(Mask m, Vec a, Vec b) { SC_LANES4(m.m[i] ? a.v[i] : b.v[i]); }
inline Vec vpow2i(Vec n) { SC_LANES4(bits_to_float(uint32_t(int32_t(n.v[i]) + 127) << 23)); }
// Round half to even, as the vector instructions do (the default rounding mode).
inline Vec vround(Vec a) { SC_LANES4(__builtin_rintf(a.v[i])); }
inline float vhsum(Vec a) { return (a.v[0] + a.v[1]) + (a.v[2] + a.v[3]); }
inline void vhsum4(Vec a, Vec b, Vec c, Vec d, float* out) {
  out[0] = vhsum(a), out[1] = vhsum(b), out[2] = vhsum(c), out[3] = vhsum(d);
}
inline float vhmax(Vec a) {
  const float x = a.v[0] > a.v[1] ? a.v[0] : a.v[1], y = a.v[2] > a.v[3] ? a.v[2] : a.v[3];
  return x > y ? x : y;
}
#undef SC_LANES4
#undef SC_MASK4
#endif

inline bool mall(Mask a) { return !many(mnot(a)); }

// exp(x): x = n ln2 + r with |r| <= ln2 / 2, exp(r) by its degree-6 Taylor
// polynomial (relative error < 3e-7), times 2^n. Exact 0 below -87.3 (and
// for -inf), +inf above 88.7; NaN stays NaN.
inline Vec vexp(Vec x) {
  const Vec lo = vset1(-87.3f), hi = vset1(88.7f);
  const Vec xc = vmin(vmax(x, lo), hi);  // NaN -> lo (fixed below)
  const Vec n = vround(vmul(xc, vset1(1.44269504088896341f)));
  Vec r = vfma(n, vset1(-0.693145751953125f), xc);  // ln2 split in two for an exact n*ln2_hi
  r = vfma(n, vset1(-1.42860682030941723212e-6f), r);
  Vec p = vset1(1.f / 720.f);
  p = vfma(p, r, vset1(1.f / 120.f));
  p = vfma(p, r, vset1(1.f / 24.f));
  p = vfma(p, r, vset1(1.f / 6.f));
  p = vfma(p, r, vset1(0.5f));
  p = vfma(p, r, vset1(1.f));
  p = vfma(p, r, vset1(1.f));
  // 2^n with n <= 128: split as 2^(n-1) * 2 so n = 128 (x near 88.7) does not overflow the exponent.
  Vec y = vmul(vmul(p, vpow2i(vsub(n, vset1(1.f)))), vset1(2.f));
  y = vsel(vlt(x, lo), vzero(), y);
  y = vsel(vlt(hi, x), vset1(__builtin_inff()), y);
  return vsel(veq(x, x), y, x);  // NaN in, NaN out
}

// tanh(x) = sign(x) (1 - e) / (1 + e) with e = exp(-2|x|); absolute error < 1e-6.
inline Vec vtanh(Vec x) {
  const Vec ax = vmax(x, vsub(vzero(), x));
  const Vec e = vexp(vmul(ax, vset1(-2.f)));
  const Vec t = vdiv(vsub(vset1(1.f), e), vadd(vset1(1.f), e));
  return vsel(vlt(x, vzero()), vsub(vzero(), t), t);
}

}  // namespace
}  // namespace sparsecore::cpu::SPARSECORE_ISA_NS
