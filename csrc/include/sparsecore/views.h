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

// N:M semi-structured rows, CPU layout: every group of m consecutive columns
// stores exactly n values (a group with fewer nonzeros stores explicit
// zeros), so row r's values start at r * values_per_row() and a group's at a
// fixed offset: no pointer chasing, no counting. One bit per column marks the
// stored positions, in bitmap rows of bitmap_row_bytes(cols) bytes (the CSR
// bitmap plan's layout). m divides 16 and cols (checked by nm_validate), so
// every 8- or 16-column group of the kernels holds a fixed number of values.
// Bytes per weight: n/m * sizeof(value) + 1/8; 2:4 bf16 is 1.125 (dense: 2).
struct NmView {
  int64_t rows = 0;
  int64_t cols = 0;
  int n = 2;
  int m = 4;
  const void* values = nullptr;
  DType value_dtype = DType::kFloat32;
  const uint8_t* bitmap = nullptr;
  int64_t values_per_row() const { return m > 0 ? cols / m * n : 0; }
};

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

// Activation-sparse linear: the weight W (out x in) packed as one run per
// input channel (act_layout.h), in its value dtype.
//
// With bitmap set the weight is also weight-sparse (pruned): run j keeps only
// its nonzeros, in output order, flagged by bitmap row j (act_bitmap_row_bytes
// bytes, bit o = W[o, j] stored), and offsets[j * act_offset_slots(out) + s]
// is where in values the stored entries of outputs >= s * kActOffsetStride of
// run j begin. Both sparsities then cut the bytes read: an active channel
// costs 1 bit per output plus its stored values.
struct ActWeightView {
  int64_t out = 0;
  int64_t in = 0;
  const void* values = nullptr;
  DType value_dtype = DType::kFloat32;
  const uint8_t* bitmap = nullptr;
  const int64_t* offsets = nullptr;
};

// Which input channels take part (act_selected): per call, not per weight, so
// one packed weight serves any threshold. scale is null or has `in` floats.
struct ActSelect {
  float threshold = 0.f;
  const float* scale = nullptr;
  bool complement = false;
};

}  // namespace sparsecore
