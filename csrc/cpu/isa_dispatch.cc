// Baseline translation unit: decides once which ISA path runs. Compiled
// without any -m flags so nothing here can execute an instruction the CPU
// lacks.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <initializer_list>

#include "sparsecore/cpu_isa.h"

namespace sparsecore {
namespace {

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
         __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

CpuIsa best_native() {
#if defined(SPARSECORE_HAVE_AVX512)
  if (cpu_has_avx512()) return CpuIsa::kAvx512;
#endif
#if defined(SPARSECORE_HAVE_AVX2)
  if (cpu_has_avx2()) return CpuIsa::kAvx2;
#endif
  return CpuIsa::kScalar;
}

CpuIsa initial_choice() {
  const char* env = std::getenv("SPARSECORE_CPU_ISA");
  CpuIsa isa;
  if (env && *env && cpu_isa_parse(env, &isa) && cpu_isa_available(isa)) return isa;
  // An unknown or unavailable request falls back to the best native path;
  // the Python layer reports the mismatch when it reads the variable.
  return best_native();
}

std::atomic<int>& selected() {
  static std::atomic<int> isa{int(initial_choice())};
  return isa;
}

}  // namespace

const char* cpu_isa_name(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return "scalar";
    case CpuIsa::kAvx2: return "avx2";
    case CpuIsa::kAvx512: return "avx512";
    case CpuIsa::kAvx512Simde: return "avx512-simde";
  }
  return "unknown";
}

bool cpu_isa_parse(const char* name, CpuIsa* out) {
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Simde}) {
    if (std::strcmp(name, cpu_isa_name(isa)) == 0) {
      *out = isa;
      return true;
    }
  }
  return false;
}

bool cpu_isa_available(CpuIsa isa) {
  switch (isa) {
    case CpuIsa::kScalar: return true;
    case CpuIsa::kAvx2:
#if defined(SPARSECORE_HAVE_AVX2)
      return cpu_has_avx2();
#else
      return false;
#endif
    case CpuIsa::kAvx512:
#if defined(SPARSECORE_HAVE_AVX512)
      return cpu_has_avx512();
#else
      return false;
#endif
    case CpuIsa::kAvx512Simde:
#if defined(SPARSECORE_HAVE_AVX512_SIMDE)
      // SIMDe emulates AVX-512 with the AVX2 instructions it was compiled for.
      return cpu_has_avx2();
#else
      return false;
#endif
  }
  return false;
}

CpuIsa cpu_isa_selected() { return CpuIsa(selected().load(std::memory_order_relaxed)); }

bool cpu_isa_set(CpuIsa isa) {
  if (!cpu_isa_available(isa)) return false;
  selected().store(int(isa), std::memory_order_relaxed);
  return true;
}

}  // namespace sparsecore
