// CSR and BSR sparse x dense matmul: C = A @ B (+ bias[row]) with A sparse
// (rows x cols), B dense (A.cols x N, any strides, any dtype), C dense
// (A.rows x N, any strides, any dtype), fp32 accumulation. x @ W.T is the
// same call with B = x viewed transposed and C = y viewed transposed.
//
// Contents are checked as the kernels read them: a row_ptr that is not a
// partition of [0, nnz], a row chunk outside [0, rows], a column index outside
// [0, cols) or a bitmap row whose count differs from its row length returns
// kInvalidIndex and never makes a kernel read outside its arrays.
//
// A NaN or Inf in column j of B (row j of x) makes column j of C NaN.
#pragma once
#include <cstdint>

#include "sparsecore/core.h"

namespace sparsecore {

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
};
static inline int64_t bsr_total_rows(const BsrView& a) { return a.block_rows * a.block_h; }
static inline int64_t bsr_total_cols(const BsrView& a) { return a.block_cols * a.block_w; }

// Cheap O(rows + nnz) structural checks used at construction time (plan),
// returning kInvalidArgument and a message naming the first problem.
Status csr_validate(const CsrView& a, char* message, int message_len);
Status bsr_validate(const BsrView& a, char* message, int message_len);

// Plan: split rows into num_chunks contiguous ranges of roughly equal work
// (nnz plus a per-row cost). chunks must hold num_chunks + 1 entries.
// row_ptr must be validated.
void plan_row_chunks(const int64_t* row_ptr, int64_t rows, int64_t row_cost, int64_t num_chunks, int64_t* chunks);

// Plan: fill bitmap (rows x bitmap_row_bytes(cols) bytes) from a CSR; entries
// with a column index outside [0, cols) return kInvalidIndex.
Status plan_csr_bitmap(const CsrView& a, uint8_t* bitmap);

Status csr_spmm_cpu(const CsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c);
// C = A densely (zeros elsewhere): C is rows x cols of the values' dtype with
// unit column stride; values are copied bit for bit. Bad row_ptr or column
// indices return kInvalidIndex (C then holds garbage, never an overrun).
Status csr_to_dense_cpu(const CsrView& a, const MatrixView& c);
Status bsr_spmm_cpu(const BsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c);

// CUDA entry point (kUnsupported in builds without CUDA). All pointers are
// device pointers; stream is a cudaStream_t passed as void* so that this
// header stays free of CUDA headers. Launches on the current device.
Status csr_spmm_cuda(const CsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c, void* stream);

}  // namespace sparsecore
