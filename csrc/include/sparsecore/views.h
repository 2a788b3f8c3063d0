// Plain views handed to kernels: pointers, sizes, strides and type codes.
// No ownership, no torch, no pybind11.
#pragma once
#include <cstdint>

#include "sparsecore/dtypes.h"

namespace sparsecore {

// A strided 2-D matrix. Strides are in elements and may be anything >= 0
// (a transposed view is just swapped strides).
struct MatrixView {
  void* data = nullptr;
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t row_stride = 0;
  int64_t col_stride = 1;
  DType dtype = DType::kFloat32;
};

// Compressed sparse rows: row_ptr[rows + 1] (int64), sorted column indices,
// values. row_chunks is the plan's nnz-balanced partition of the rows
// (num_chunks + 1 row boundaries) that the threads share out.
struct CsrView {
  int64_t rows = 0;
  int64_t cols = 0;
  int64_t nnz = 0;
  const int64_t* row_ptr = nullptr;
  const void* col_idx = nullptr;
  IndexType index_type = IndexType::kInt32;
  const void* values = nullptr;
  DType value_dtype = DType::kFloat32;
  const int64_t* row_chunks = nullptr;
  int64_t num_chunks = 0;
  // Optional plan for moderate sparsity: one bit per (row, column), rows of
  // bitmap_row_bytes(cols) bytes. The GEMV then reads values + 1 bit per
  // column instead of values + a 16-bit index per nonzero: at 50% sparsity a
  // bf16 weight costs 1.125 bytes instead of 2 (dense) or 2 (values+uint16).
  const uint8_t* bitmap = nullptr;
};

// Bytes per bitmap row: whole 16-column groups (the AVX-512 step), zero padded.
inline int64_t bitmap_row_bytes(int64_t cols) { return (cols + 15) / 16 * 2; }

// Block sparse rows: block_rows x block_cols grid of block_h x block_w blocks,
// each stored row-major and dense. row_ptr / col_idx index blocks.
struct BsrView {
  int64_t block_rows = 0;
  int64_t block_cols = 0;
  int64_t block_h = 1;
  int64_t block_w = 1;
  int64_t nnzb = 0;
  const int64_t* row_ptr = nullptr;
  const void* col_idx = nullptr;
  IndexType index_type = IndexType::kInt32;
  const void* values = nullptr;
  DType value_dtype = DType::kFloat32;
  const int64_t* row_chunks = nullptr;  // over block rows
  int64_t num_chunks = 0;
  int64_t rows() const { return block_rows * block_h; }
  int64_t cols() const { return block_cols * block_w; }
};

}  // namespace sparsecore
