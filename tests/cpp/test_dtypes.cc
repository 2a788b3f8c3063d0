// Scalar fp16 / bf16 conversions against the compiler's own _Float16 and
// against exhaustive round trips.
#include <cmath>
#include <cstring>
#include <random>

#include "sparsecore/dtypes.h"
#include "test_harness.h"

using namespace sparsecore;

int main() {
  // Every fp16 bit pattern decodes like the compiler's _Float16.
  for (uint32_t h = 0; h < 65536; ++h) {
    _Float16 ref;
    const uint16_t bits = uint16_t(h);
    std::memcpy(&ref, &bits, 2);
    const float want = float(ref), got = fp16_to_float(bits);
    if (std::isnan(want)) CHECK(std::isnan(got), "fp16 %04x", h);
    else CHECK(std::memcmp(&want, &got, 4) == 0, "fp16 %04x: %g vs %g", h, double(got), double(want));
  }
  // fp32 -> fp16 rounding (nearest even, overflow, subnormals) matches.
  std::mt19937 rng(5);
  for (int i = 0; i < 2000000; ++i) {
    uint32_t u = rng();
    float f;
    std::memcpy(&f, &u, 4);
    if (i % 2) f = std::ldexp(float(int32_t(rng() % 200000) - 100000), int(rng() % 40) - 40);
    const _Float16 ref = _Float16(f);
    uint16_t want;
    std::memcpy(&want, &ref, 2);
    const uint16_t got = float_to_fp16(f);
    if (std::isnan(f)) CHECK((got & 0x7c00) == 0x7c00 && (got & 0x3ff), "nan");
    else if (got != want) CHECK(got == want, "fp32 %a -> fp16 %04x, want %04x", double(f), got, want);
  }
  // bf16: round to nearest even on the low 16 bits.
  CHECK(float_to_bf16(1.0f) == 0x3f80, "1.0");
  CHECK(float_to_bf16(bits_to_float(0x3f808000u)) == 0x3f80, "tie to even (down)");
  CHECK(float_to_bf16(bits_to_float(0x3f818000u)) == 0x3f82, "tie to even (up)");
  CHECK(float_to_bf16(bits_to_float(0x3f808001u)) == 0x3f81, "above half rounds up");
  CHECK(std::isnan(bf16_to_float(float_to_bf16(std::nanf("")))), "NaN stays NaN");
  CHECK(float_to_bf16(bits_to_float(0x7f7fffffu)) == 0x7f80, "max float rounds to inf");
  for (uint32_t h = 0; h < 65536; ++h) {
    const float f = bf16_to_float(uint16_t(h));
    if (!std::isnan(f)) CHECK(float_to_bf16(f) == h, "bf16 round trip %04x", h);
  }
  return sparsecore::testing::finish("test_dtypes");
}
