// Attention kernels compiled for the avx2 path (per-source flags in CMake).
#define SPARSECORE_ISA_AVX2 1
#define SPARSECORE_ISA_NS avx2
#include "attention_kernels.inc"
