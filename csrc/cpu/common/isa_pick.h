// Picks the kernel of the selected CPU ISA path (baseline code). SC_AVX2(f)
// and friends name cpu::<isa>::f when that path is compiled, else nullptr,
// and a missing path falls back to the scalar kernel.
#pragma once

#include "sparsecore/cpu_isa.h"

namespace sparsecore::cpu {

template <typename Fn>
Fn pick(Fn scalar_fn, Fn avx2_fn, Fn avx512_fn, Fn simde_fn) {
  switch (cpu_isa_selected()) {
    case CpuIsa::kAvx2: return avx2_fn ? avx2_fn : scalar_fn;
    case CpuIsa::kAvx512: return avx512_fn ? avx512_fn : scalar_fn;
    case CpuIsa::kAvx512Simde: return simde_fn ? simde_fn : scalar_fn;
    default: return scalar_fn;
  }
}

#if defined(SPARSECORE_HAVE_AVX2)
#define SC_AVX2(f) &cpu::avx2::f
#else
#define SC_AVX2(f) nullptr
#endif
#if defined(SPARSECORE_HAVE_AVX512)
#define SC_AVX512(f) &cpu::avx512::f
#else
#define SC_AVX512(f) nullptr
#endif
#if defined(SPARSECORE_HAVE_AVX512_SIMDE)
#define SC_SIMDE(f) &cpu::avx512_simde::f
#else
#define SC_SIMDE(f) nullptr
#endif

}  // namespace sparsecore::cpu
