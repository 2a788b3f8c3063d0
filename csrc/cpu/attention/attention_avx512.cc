// Attention kernels compiled for the avx512 path (per-source flags in CMake).
#define SPARSECORE_ISA_AVX512 1
#define SPARSECORE_ISA_NS avx512
#include "attention_kernels.inc"
