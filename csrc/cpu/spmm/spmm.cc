// CPU entry points for CSR and BSR SpMM: argument and plan checks, packing of
// the dense operand, ISA dispatch and threading. Baseline TU (no -m flags).
#include <algorithm>

#include "../common/isa_pick.h"
#include "../common/run_parts.h"
#include "../thread_pool.h"
#include "sparsecore/cpu_isa.h"
#include "sparsecore/spmm.h"
#include "spmm_isa.h"

namespace sparsecore {
namespace {

using cpu::kMinParallelWork;
using cpu::PackedDense;
using cpu::SpmmOutput;

// row_ptr must partition [0, nnz]: O(rows), every call (the kernels index
// values and col_idx with it).
bool row_ptr_ok(const int64_t* row_ptr, int64_t rows, int64_t nnz) {
  if (row_ptr == nullptr || row_ptr[0] != 0 || row_ptr[rows] != nnz) return false;
  for (int64_t r = 0; r < rows; ++r)
    if (row_ptr[r + 1] < row_ptr[r]) return false;
  return true;
}

// The plan's row chunks must partition [0, rows]: O(chunks), every call.
bool chunks_ok(const int64_t* chunks, int64_t num_chunks, int64_t rows) {
  if (num_chunks == 0) return true;
  if (chunks == nullptr || chunks[0] != 0 || chunks[num_chunks] != rows) return false;
  for (int64_t i = 0; i < num_chunks; ++i)
    if (chunks[i + 1] < chunks[i]) return false;
  return true;
}

using CsrRowsFn = bool (*)(const CsrView&, const PackedDense&, const SpmmOutput&, int64_t, int64_t);
using BsrRowsFn = bool (*)(const BsrView&, const PackedDense&, const SpmmOutput&, int64_t, int64_t);

// Runs rows_fn over the plan's chunks (or an even split when there is none).
template <typename View, typename Fn>
Status run_chunks(const View& a, int64_t rows, const PackedDense& b, const SpmmOutput& out, Fn rows_fn,
                  bool parallel) {
  if (!parallel) return rows_fn(a, b, out, 0, rows) ? Status::kOk : Status::kInvalidIndex;
  if (a.row_chunks != nullptr && a.num_chunks > 0)
    return cpu::run_parts(a.num_chunks, true,
                          [&](int64_t i) { return rows_fn(a, b, out, a.row_chunks[i], a.row_chunks[i + 1]); });
  const int64_t parts = std::min<int64_t>(rows, 4 * cpu_num_threads());
  return cpu::run_parts(parts, true,
                        [&](int64_t i) { return rows_fn(a, b, out, rows * i / parts, rows * (i + 1) / parts); });
}

Status check_common(int64_t rows, int64_t cols, const MatrixView& b, const MatrixView& c) {
  if (!cpu::matrix_view_ok(b) || !cpu::matrix_view_ok(c)) return Status::kInvalidArgument;
  if (b.rows != cols || c.rows != rows || c.cols != b.cols) return Status::kInvalidArgument;
  return Status::kOk;
}

Status csr_spmm_impl(const CsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c) {
  if (a.rows < 0 || a.cols < 0 || a.nnz < 0 || a.num_chunks < 0) return Status::kInvalidArgument;
  if (a.index_type == IndexType::kUInt16 && a.cols > 65536) return Status::kInvalidArgument;
  if (Status s = check_common(a.rows, a.cols, b, c); s != Status::kOk) return s;
  if (a.nnz > 0 && (a.col_idx == nullptr || a.values == nullptr)) return Status::kInvalidArgument;
  if (!row_ptr_ok(a.row_ptr, a.rows, a.nnz) || !chunks_ok(a.row_chunks, a.num_chunks, a.rows))
    return Status::kInvalidIndex;
  if (c.rows == 0 || c.cols == 0) return Status::kOk;
  const bool parallel = a.nnz * b.cols >= kMinParallelWork;
  // The GEMV and the bitmap kernel (up to 8 columns) read each column of B
  // contiguously; the SpMM kernel reads rows of 64-column tiles.
  const bool by_column = b.cols == 1 || (a.bitmap != nullptr && b.cols <= 8);
  PackedDense packed;
  if (Status s = cpu::pack_dense(b, by_column ? 1 : cpu::spmm_tile(b.cols), parallel, &packed); s != Status::kOk)
    return s;
  SpmmOutput out;
  out.c = c;
  if (Status s = cpu::convert_bias(ep, a.rows, &out.bias); s != Status::kOk) return s;
  if (a.cols == 0) {
    cpu::store_bias_only(c, out.bias);
    return Status::kOk;
  }
  CsrRowsFn fn = cpu::pick<CsrRowsFn>(&cpu::scalar::csr_rows, SC_AVX2(csr_rows), SC_AVX512(csr_rows), SC_SIMDE(csr_rows));
  if (Status s = run_chunks(a, a.rows, packed, out, fn, parallel); s != Status::kOk) return s;
  cpu::poison_columns(packed, c);
  return Status::kOk;
}

Status bsr_spmm_impl(const BsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c) {
  if (a.block_rows < 0 || a.block_cols < 0 || a.nnzb < 0 || a.num_chunks < 0) return Status::kInvalidArgument;
  if (a.block_h < 1 || a.block_w < 1 || a.block_h > 256 || a.block_w > 256) return Status::kInvalidArgument;
  if (a.index_type == IndexType::kUInt16 && a.block_cols > 65536) return Status::kInvalidArgument;
  if (Status s = check_common(bsr_total_rows(a), bsr_total_cols(a), b, c); s != Status::kOk) return s;
  if (a.nnzb > 0 && (a.col_idx == nullptr || a.values == nullptr)) return Status::kInvalidArgument;
  if (!row_ptr_ok(a.row_ptr, a.block_rows, a.nnzb) || !chunks_ok(a.row_chunks, a.num_chunks, a.block_rows))
    return Status::kInvalidIndex;
  if (c.rows == 0 || c.cols == 0) return Status::kOk;
  const bool parallel = a.nnzb * a.block_h * a.block_w * b.cols >= kMinParallelWork;
  PackedDense packed;
  if (Status s = cpu::pack_dense(b, b.cols == 1 ? 1 : cpu::spmm_tile(b.cols), parallel, &packed); s != Status::kOk)
    return s;
  SpmmOutput out;
  out.c = c;
  if (Status s = cpu::convert_bias(ep, bsr_total_rows(a), &out.bias); s != Status::kOk) return s;
  if (a.block_cols == 0) {
    cpu::store_bias_only(c, out.bias);
    return Status::kOk;
  }
  BsrRowsFn fn = cpu::pick<BsrRowsFn>(&cpu::scalar::bsr_rows, SC_AVX2(bsr_rows), SC_AVX512(bsr_rows), SC_SIMDE(bsr_rows));
  if (Status s = run_chunks(a, a.block_rows, packed, out, fn, parallel); s != Status::kOk) return s;
  cpu::poison_columns(packed, c);
  return Status::kOk;
}

}  // namespace

Status csr_spmm_cpu(const CsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c) {
  return cpu::guarded([&] { return csr_spmm_impl(a, b, ep, c); });
}

Status bsr_spmm_cpu(const BsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c) {
  return cpu::guarded([&] { return bsr_spmm_impl(a, b, ep, c); });
}

}  // namespace sparsecore
