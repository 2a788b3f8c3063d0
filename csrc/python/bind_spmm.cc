// Bindings of the CSR / BSR family (sparsecore/spmm.h).
#include <stdexcept>

#include "bind_common.h"
#include "sparsecore/spmm.h"

namespace sparsecore::bind {
namespace {

CsrView make_csr(int64_t rows, int64_t cols, int64_t nnz, uintptr_t row_ptr, uintptr_t col_idx, int index_type,
                 uintptr_t values, int value_dtype) {
  if (rows < 0 || cols < 0 || nnz < 0) value_error("CSR: negative size");
  if (row_ptr == 0) value_error("CSR: null row_ptr");
  if (nnz > 0 && (col_idx == 0 || values == 0)) value_error("CSR: null col_idx or values");
  CsrView a;
  a.rows = rows;
  a.cols = cols;
  a.nnz = nnz;
  a.row_ptr = reinterpret_cast<const int64_t*>(row_ptr);
  a.col_idx = reinterpret_cast<const void*>(col_idx);
  a.index_type = to_index_type(index_type);
  a.values = reinterpret_cast<const void*>(values);
  a.value_dtype = to_dtype(value_dtype, "values");
  return a;
}

BsrView make_bsr(int64_t block_rows, int64_t block_cols, int64_t block_h, int64_t block_w, int64_t nnzb,
                 uintptr_t row_ptr, uintptr_t col_idx, int index_type, uintptr_t values, int value_dtype) {
  if (block_rows < 0 || block_cols < 0 || nnzb < 0) value_error("BSR: negative size");
  if (block_h < 1 || block_w < 1 || block_h > 256 || block_w > 256) value_error("BSR: block sides must be within 1..256");
  if (row_ptr == 0) value_error("BSR: null row_ptr");
  if (nnzb > 0 && (col_idx == 0 || values == 0)) value_error("BSR: null col_idx or values");
  BsrView a;
  a.block_rows = block_rows;
  a.block_cols = block_cols;
  a.block_h = block_h;
  a.block_w = block_w;
  a.nnzb = nnzb;
  a.row_ptr = reinterpret_cast<const int64_t*>(row_ptr);
  a.col_idx = reinterpret_cast<const void*>(col_idx);
  a.index_type = to_index_type(index_type);
  a.values = reinterpret_cast<const void*>(values);
  a.value_dtype = to_dtype(value_dtype, "values");
  return a;
}

void csr_spmm(int64_t rows, int64_t cols, int64_t nnz, uintptr_t row_ptr, uintptr_t col_idx, int index_type,
              uintptr_t values, int value_dtype, uintptr_t row_chunks, int64_t num_chunks, uintptr_t bitmap,
              const MatrixTuple& b_t, uintptr_t bias, int bias_dtype, const MatrixTuple& c_t, bool on_cuda,
              uintptr_t stream) {
  CsrView a = make_csr(rows, cols, nnz, row_ptr, col_idx, index_type, values, value_dtype);
  if (num_chunks < 0 || (num_chunks > 0 && row_chunks == 0)) value_error("csr_spmm: bad row_chunks");
  a.row_chunks = reinterpret_cast<const int64_t*>(row_chunks);
  a.num_chunks = num_chunks;
  a.bitmap = on_cuda ? nullptr : reinterpret_cast<const uint8_t*>(bitmap);
  const MatrixView b = to_view(b_t, "dense operand");
  const MatrixView c = to_view(c_t, "output");
  check_product(rows, cols, b, c, "csr_spmm");
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  if (on_cuda) require_cuda_build();
  Status s;
  {
    py::gil_scoped_release release;
    s = on_cuda ? csr_spmm_cuda(a, b, ep, c, reinterpret_cast<void*>(stream)) : csr_spmm_cpu(a, b, ep, c);
  }
  check_status(s, "csr_spmm");
}

void bsr_spmm(int64_t block_rows, int64_t block_cols, int64_t block_h, int64_t block_w, int64_t nnzb,
              uintptr_t row_ptr, uintptr_t col_idx, int index_type, uintptr_t values, int value_dtype,
              uintptr_t row_chunks, int64_t num_chunks, const MatrixTuple& b_t, uintptr_t bias, int bias_dtype,
              const MatrixTuple& c_t) {
  BsrView a = make_bsr(block_rows, block_cols, block_h, block_w, nnzb, row_ptr, col_idx, index_type, values,
                       value_dtype);
  if (num_chunks < 0 || (num_chunks > 0 && row_chunks == 0)) value_error("bsr_spmm: bad row_chunks");
  a.row_chunks = reinterpret_cast<const int64_t*>(row_chunks);
  a.num_chunks = num_chunks;
  const MatrixView b = to_view(b_t, "dense operand");
  const MatrixView c = to_view(c_t, "output");
  check_product(bsr_total_rows(a), bsr_total_cols(a), b, c, "bsr_spmm");
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  Status s;
  {
    py::gil_scoped_release release;
    s = bsr_spmm_cpu(a, b, ep, c);
  }
  check_status(s, "bsr_spmm");
}

void csr_to_dense(int64_t rows, int64_t cols, int64_t nnz, uintptr_t row_ptr, uintptr_t col_idx, int index_type,
                  uintptr_t values, int value_dtype, const MatrixTuple& c_t) {
  const CsrView a = make_csr(rows, cols, nnz, row_ptr, col_idx, index_type, values, value_dtype);
  const MatrixView c = to_view(c_t, "output");
  if (c.rows != rows || c.cols != cols) value_error("csr_to_dense: output shape does not match the matrix");
  if (c.dtype != a.value_dtype) value_error("csr_to_dense: output dtype must be the values' dtype");
  if (c.col_stride != 1) value_error("csr_to_dense: output rows must be contiguous");
  Status s;
  {
    py::gil_scoped_release release;
    s = csr_to_dense_cpu(a, c);
  }
  check_status(s, "csr_to_dense");
}

void raise_validation(Status s, const char* msg) {
  if (s != Status::kOk) throw py::value_error(msg);
}

void csr_validate_py(int64_t rows, int64_t cols, int64_t nnz, uintptr_t row_ptr, uintptr_t col_idx, int index_type,
                     uintptr_t values, int value_dtype) {
  const CsrView a = make_csr(rows, cols, nnz, row_ptr, col_idx, index_type, values, value_dtype);
  char msg[512] = {0};
  Status s;
  {
    py::gil_scoped_release release;
    s = csr_validate(a, msg, sizeof msg);
  }
  raise_validation(s, msg);
}

void bsr_validate_py(int64_t block_rows, int64_t block_cols, int64_t block_h, int64_t block_w, int64_t nnzb,
                     uintptr_t row_ptr, uintptr_t col_idx, int index_type, uintptr_t values, int value_dtype) {
  const BsrView a = make_bsr(block_rows, block_cols, block_h, block_w, nnzb, row_ptr, col_idx, index_type, values,
                             value_dtype);
  char msg[512] = {0};
  Status s;
  {
    py::gil_scoped_release release;
    s = bsr_validate(a, msg, sizeof msg);
  }
  raise_validation(s, msg);
}

void plan_csr_bitmap_py(int64_t rows, int64_t cols, int64_t nnz, uintptr_t row_ptr, uintptr_t col_idx,
                        int index_type, uintptr_t out) {
  if (out == 0) value_error("plan_csr_bitmap: null output");
  // Values are not read by the bitmap planner.
  const CsrView a = make_csr(rows, cols, nnz, row_ptr, col_idx, index_type, nnz > 0 ? 1 : 0, 0);
  Status s;
  {
    py::gil_scoped_release release;
    s = plan_csr_bitmap(a, reinterpret_cast<uint8_t*>(out));
  }
  check_status(s, "plan_csr_bitmap");
}

void plan_row_chunks_py(uintptr_t row_ptr, int64_t rows, int64_t row_cost, int64_t num_chunks, uintptr_t out) {
  if (row_ptr == 0 || out == 0) value_error("plan_row_chunks: null pointer");
  if (rows < 0 || num_chunks < 1) value_error("plan_row_chunks: bad sizes");
  plan_row_chunks(reinterpret_cast<const int64_t*>(row_ptr), rows, row_cost, num_chunks,
                  reinterpret_cast<int64_t*>(out));
}

}  // namespace

void register_spmm(py::module_& m) {
  m.def("csr_validate", &csr_validate_py);
  m.def("bsr_validate", &bsr_validate_py);
  m.def("plan_row_chunks", &plan_row_chunks_py);
  m.def("plan_csr_bitmap", &plan_csr_bitmap_py);
  m.def("csr_spmm", &csr_spmm);
  m.def("bsr_spmm", &bsr_spmm);
  m.def("csr_to_dense", &csr_to_dense);
}

}  // namespace sparsecore::bind
