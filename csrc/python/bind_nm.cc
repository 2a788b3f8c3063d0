// Bindings of the N:M family (sparsecore/nm.h).
#include "bind_common.h"
#include "sparsecore/nm.h"

namespace sparsecore::bind {
namespace {

NmView make_nm(int64_t rows, int64_t cols, int n, int m, uintptr_t values, int value_dtype, uintptr_t bitmap) {
  NmView a;
  a.rows = rows;
  a.cols = cols;
  a.n = n;
  a.m = m;
  a.values = reinterpret_cast<const void*>(values);
  a.value_dtype = to_dtype(value_dtype, "values");
  a.bitmap = reinterpret_cast<const uint8_t*>(bitmap);
  if (rows < 0 || cols < 0) value_error("N:M: negative size");
  if (!(m == 2 || m == 4 || m == 8) || n < 1 || n >= m)
    value_error("N:M: pattern " + std::to_string(n) + ":" + std::to_string(m) +
                " is not supported (m must be 2, 4 or 8 and 1 <= n < m)");
  if (cols % m != 0)
    value_error("N:M: " + std::to_string(cols) + " columns are not a multiple of m = " + std::to_string(m));
  if (rows > 0 && cols > 0 && (values == 0 || bitmap == 0)) value_error("N:M: null values or bitmap");
  return a;
}

void nm_spmm(int64_t rows, int64_t cols, int n, int m, uintptr_t values, int value_dtype, uintptr_t bitmap,
             const MatrixTuple& b_t, uintptr_t bias, int bias_dtype, const MatrixTuple& c_t) {
  const NmView a = make_nm(rows, cols, n, m, values, value_dtype, bitmap);
  const MatrixView b = to_view(b_t, "dense operand");
  const MatrixView c = to_view(c_t, "output");
  check_product(rows, cols, b, c, "nm_spmm");
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  Status s;
  {
    py::gil_scoped_release release;
    s = nm_spmm_cpu(a, b, ep, c);
  }
  check_status(s, "nm_spmm");
}

void nm_validate_py(int64_t rows, int64_t cols, int n, int m, uintptr_t values, int value_dtype, uintptr_t bitmap) {
  const NmView a = make_nm(rows, cols, n, m, values, value_dtype, bitmap);
  char msg[512] = {0};
  Status s;
  {
    py::gil_scoped_release release;
    s = nm_validate(a, msg, sizeof msg);
  }
  if (s != Status::kOk) throw py::value_error(msg);
}

void nm24_pack_metadata_py(uintptr_t bitmap, int64_t rows, int64_t cols, uintptr_t out) {
  if (rows < 0 || cols < 0 || rows % 16 || cols % 32)
    value_error("2:4 on tensor cores needs rows % 16 == 0 and columns % 32 == 0, got " + std::to_string(rows) + "x" +
                std::to_string(cols));
  if (rows > 0 && cols > 0 && (bitmap == 0 || out == 0)) value_error("nm24_pack_metadata: null pointer");
  Status s;
  {
    py::gil_scoped_release release;
    s = nm24_pack_metadata(reinterpret_cast<const uint8_t*>(bitmap), rows, cols, reinterpret_cast<uint32_t*>(out));
  }
  if (s != Status::kOk) value_error("nm24_pack_metadata: the bitmap is not 2:4 in every chunk of 4 columns");
}

void nm24_spmm(int64_t rows, int64_t cols, uintptr_t values, int value_dtype, uintptr_t metadata,
               const MatrixTuple& b_t, uintptr_t bias, int bias_dtype, const MatrixTuple& c_t, uintptr_t stream) {
  Nm24View a;
  a.rows = rows;
  a.cols = cols;
  a.values = reinterpret_cast<const void*>(values);
  a.value_dtype = to_dtype(value_dtype, "values");
  a.metadata = reinterpret_cast<const uint32_t*>(metadata);
  if (rows < 0 || cols < 0 || rows % 16 || cols % 32)
    value_error("nm24_spmm: rows must be a multiple of 16 and columns of 32");
  if (a.value_dtype == DType::kFloat32) value_error("nm24_spmm: tensor cores take bf16 or fp16 values");
  if (rows > 0 && cols > 0 && (values == 0 || metadata == 0)) value_error("nm24_spmm: null values or metadata");
  const MatrixView b = to_view(b_t, "dense operand");
  const MatrixView c = to_view(c_t, "output");
  check_product(rows, cols, b, c, "nm24_spmm");
  if (b.dtype != a.value_dtype || c.dtype != b.dtype)
    value_error("nm24_spmm: the dense operand and output must have the weight's dtype");
  if (b.cols > 0 && (b.row_stride != 1 || (b.cols > 1 && b.col_stride % 2) || (std::get<0>(b_t) % 4)))
    value_error("nm24_spmm: the dense operand must be k-contiguous with an even stride and 4-byte alignment");
  require_cuda_build();
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  Status s;
  {
    py::gil_scoped_release release;
    s = nm24_spmm_cuda(a, b, ep, c, reinterpret_cast<void*>(stream));
  }
  check_status(s, "nm24_spmm");
}

}  // namespace

void register_nm(py::module_& m) {
  m.def("nm_validate", &nm_validate_py);
  m.def("nm_spmm", &nm_spmm);
  m.def("nm24_metadata_words", &nm24_metadata_words);
  m.def("nm24_pack_metadata", &nm24_pack_metadata_py);
  m.def("nm24_spmm", &nm24_spmm);
}

}  // namespace sparsecore::bind
