// Attention kernels compiled for the scalar path (per-source flags in CMake).
#define SPARSECORE_ISA_SCALAR 1
#define SPARSECORE_ISA_NS scalar
#include "attention_kernels.inc"
