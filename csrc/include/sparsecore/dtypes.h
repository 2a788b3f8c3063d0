// Element types understood by the kernels, and exact scalar conversions.
// Values and activations may be fp32, fp16 or bf16; accumulation is always fp32.
#pragma once
#include <cstdint>
#include <cstring>

#include "sparsecore/macros.h"

namespace sparsecore {

enum class DType : int { kFloat32 = 0, kFloat16 = 1, kBFloat16 = 2 };

// Column indices are stored as uint16 when the reduction dimension allows it:
// at 50% sparsity that is a third less traffic per fp32 nonzero than int32.
enum class IndexType : int { kUInt16 = 0, kInt32 = 1 };

SPARSECORE_HD static inline int dtype_size(DType t) { return t == DType::kFloat32 ? 4 : 2; }
SPARSECORE_HD static inline int index_size(IndexType t) { return t == IndexType::kUInt16 ? 2 : 4; }

static inline const char* dtype_name(DType t) {
  switch (t) {
    case DType::kFloat32: return "float32";
    case DType::kFloat16: return "float16";
    case DType::kBFloat16: return "bfloat16";
  }
  return "unknown";
}

SPARSECORE_HD static inline float bits_to_float(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
SPARSECORE_HD static inline uint32_t float_to_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

SPARSECORE_HD static inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }

// Round to nearest even, NaN stays NaN (quiet), as torch does.
SPARSECORE_HD static inline uint16_t float_to_bf16(float f) {
  uint32_t u = float_to_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return uint16_t((u >> 16) | 0x40);
  u += 0x7fffu + ((u >> 16) & 1u);
  return uint16_t(u >> 16);
}

// IEEE binary16 <-> binary32, exact for every input (subnormals, inf, NaN).
SPARSECORE_HD static inline float fp16_to_float(uint16_t h) {
  uint32_t sign = uint32_t(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_float(sign | 0x7f800000u | (man << 13));
  if (exp == 0) {
    if (man == 0) return bits_to_float(sign);
    // Subnormal: value = man * 2^-24, exactly representable in fp32.
    float v = float(man) * (1.0f / 16777216.0f);
    return sign ? -v : v;
  }
  return bits_to_float(sign | ((exp + 112u) << 23) | (man << 13));
}

SPARSECORE_HD static inline uint16_t float_to_fp16(float f) {
  uint32_t u = float_to_bits(f);
  uint16_t sign = uint16_t((u >> 16) & 0x8000u);
  uint32_t absu = u & 0x7fffffffu;
  if (absu > 0x7f800000u) return uint16_t(sign | 0x7e00u);  // NaN
  if (absu >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to inf
  if (absu < 0x38800000u) {
    // Result is subnormal or zero: scale so the integer part is the mantissa,
    // and let the float adder round to nearest even.
    float a = bits_to_float(absu) * 16777216.0f;  // 2^24
    float r = a + 8388608.0f - 8388608.0f;         // RNE to integer (|a| < 2^23)
    return uint16_t(sign | uint16_t(r));
  }
  uint32_t mant_odd = (absu >> 13) & 1u;
  absu += 0xfffu + mant_odd;  // round to nearest even on the dropped 13 bits
  return uint16_t(sign | uint16_t(((absu >> 13) - (112u << 10)) & 0x7fffu));
}

SPARSECORE_HD static inline float load_as_float(const void* p, int64_t i, DType t) {
  switch (t) {
    case DType::kFloat32: return static_cast<const float*>(p)[i];
    case DType::kFloat16: return fp16_to_float(static_cast<const uint16_t*>(p)[i]);
    default: return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
  }
}

SPARSECORE_HD static inline void store_from_float(void* p, int64_t i, DType t, float v) {
  switch (t) {
    case DType::kFloat32: static_cast<float*>(p)[i] = v; break;
    case DType::kFloat16: static_cast<uint16_t*>(p)[i] = float_to_fp16(v); break;
    default: static_cast<uint16_t*>(p)[i] = float_to_bf16(v); break;
  }
}

SPARSECORE_HD static inline int64_t load_index(const void* p, int64_t i, IndexType t) {
  return t == IndexType::kUInt16 ? int64_t(static_cast<const uint16_t*>(p)[i])
                                 : int64_t(static_cast<const int32_t*>(p)[i]);
}

}  // namespace sparsecore
