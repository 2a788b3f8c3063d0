// N:M semi-structured sparse x dense matmul (2:4, 4:8, 1:4, ...): the CPU
// layout and kernels, and 2:4 on sparse tensor cores (CUDA). Same product
// and NaN rule as spmm.h.
#pragma once
#include <cstdint>

#include "sparsecore/core.h"

namespace sparsecore {

// N:M semi-structured rows, CPU layout: every group of m consecutive columns
// stores exactly n values (a group with fewer nonzeros stores explicit
// zeros), so row r's values start at r * nm_values_per_row() and a group's at
// a fixed offset: no pointer chasing, no counting. One bit per column marks
// the stored positions, in bitmap rows of bitmap_row_bytes(cols) bytes (the
// CSR bitmap plan's layout). m divides 16 and cols (checked by nm_validate),
// so every 8- or 16-column group of the kernels holds a fixed number of values.
// Bytes per weight: n/m * sizeof(value) + 1/8; 2:4 bf16 is 1.125 (dense: 2).
struct NmView {
  int64_t rows = 0;
  int64_t cols = 0;
  int n = 2;
  int m = 4;
  const void* values = nullptr;
  DType value_dtype = DType::kFloat32;
  const uint8_t* bitmap = nullptr;
};
static inline int64_t nm_values_per_row(const NmView& a) { return a.m > 0 ? a.cols / a.m * a.n : 0; }

// 2:4 for sparse tensor cores (CUDA): rows % 16 == 0, cols % 32 == 0; the
// values are the kept entries of each row in column order (rows x cols / 2,
// bf16 or fp16, the same array as NmView's for 2:4) and the metadata is in
// the instruction's register order (see nm24_pack_metadata).
struct Nm24View {
  int64_t rows = 0;
  int64_t cols = 0;
  const void* values = nullptr;
  DType value_dtype = DType::kBFloat16;
  const uint32_t* metadata = nullptr;
};

// Checks n < m, m in {2, 4, 8}, m | cols, that every group of the bitmap
// marks exactly n columns, and that the values are finite.
Status nm_validate(const NmView& a, char* message, int message_len);

// The kernels check, as they read the bitmap, that each of their groups marks
// its fixed share of values (kInvalidIndex otherwise).
Status nm_spmm_cpu(const NmView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c);

// 2:4 on sparse tensor cores (mma.sp, sm_80+). Host side: the metadata words
// (nm24_metadata_words of them) from a 2:4 bitmap in the NmView layout;
// kInvalidArgument when rows % 16, cols % 32 or some chunk is not 2 of 4.
int64_t nm24_metadata_words(int64_t rows, int64_t cols);
Status nm24_pack_metadata(const uint8_t* bitmap, int64_t rows, int64_t cols, uint32_t* metadata);
// C = A @ B (+ bias) on the GPU. B (A.cols x n) has A's value dtype and
// row_stride 1 (k contiguous: x @ W.T passes x^T), an even col_stride and a
// 4-byte aligned base; C any strides, dtype of B. Launches on the current device.
Status nm24_spmm_cuda(const Nm24View& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c,
                      void* stream);

}  // namespace sparsecore
