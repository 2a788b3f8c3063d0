// Portability macros shared by host and device code. Functions marked
// SPARSECORE_HD are also written `inline`, so headers can define them.
#pragma once

#if defined(__CUDACC__)
#define SPARSECORE_HD __host__ __device__
#else
#define SPARSECORE_HD
#endif
