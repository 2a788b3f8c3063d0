#include "bind_common.h"

#include <stdexcept>

namespace sparsecore::bind {

void value_error(const std::string& msg) { throw py::value_error(msg); }

DType to_dtype(int code, const char* what) {
  if (code < 0 || code > 2) value_error(std::string(what) + ": unknown dtype code " + std::to_string(code));
  return DType(code);
}

IndexType to_index_type(int code) {
  if (code < 0 || code > 1) value_error("unknown index type code " + std::to_string(code));
  return IndexType(code);
}

MatrixView to_view(const MatrixTuple& t, const char* what) {
  MatrixView m;
  m.data = reinterpret_cast<void*>(std::get<0>(t));
  m.rows = std::get<1>(t);
  m.cols = std::get<2>(t);
  m.row_stride = std::get<3>(t);
  m.col_stride = std::get<4>(t);
  m.dtype = to_dtype(std::get<5>(t), what);
  if (m.rows < 0 || m.cols < 0) value_error(std::string(what) + ": negative size");
  if (m.row_stride < 0 || m.col_stride < 0) value_error(std::string(what) + ": negative stride");
  if (m.rows > 0 && m.cols > 0 && m.data == nullptr) value_error(std::string(what) + ": null data pointer");
  return m;
}

Epilogue to_epilogue(uintptr_t bias, int bias_dtype) {
  Epilogue ep;
  ep.bias = reinterpret_cast<const void*>(bias);
  if (bias) ep.bias_dtype = to_dtype(bias_dtype, "bias");
  return ep;
}

void check_status(Status s, const char* op) {
  if (s == Status::kOk) return;
  std::string msg = std::string("sparsecore.") + op + ": " + status_name(s);
  const char* detail = error_detail();
  if (detail && *detail) msg += std::string(" (") + detail + ")";
  set_error_detail("");
  switch (s) {
    case Status::kInvalidArgument:
    case Status::kNonFinite:
    case Status::kInvalidIndex: throw py::value_error(msg);
    case Status::kOutOfMemory: throw std::bad_alloc();
    default: throw std::runtime_error(msg);
  }
}

void check_product(int64_t a_rows, int64_t a_cols, const MatrixView& b, const MatrixView& c, const char* op) {
  if (b.rows != a_cols)
    value_error(std::string(op) + ": dense operand has " + std::to_string(b.rows) + " rows, the sparse matrix " +
                std::to_string(a_cols) + " columns");
  if (c.rows != a_rows || c.cols != b.cols)
    value_error(std::string(op) + ": output shape does not match (" + std::to_string(a_rows) + ", " +
                std::to_string(b.cols) + ")");
}

void require_cuda_build() {
  if (!cuda_compiled()) throw std::runtime_error("sparsecore was built without CUDA kernels");
}

}  // namespace sparsecore::bind
