// The AVX-512 attention kernels compiled against SIMDe's emulation,
// so their logic runs (and is tested) on CPUs without AVX-512. Test builds only.
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define SPARSECORE_SIMDE 1
#define SPARSECORE_ISA_AVX512 1
#define SPARSECORE_ISA_NS avx512_simde
#include "attention_kernels.inc"
