// What every binding file shares: the dense-matrix tuple the Python layer
// passes, dtype codes, status -> exception. The only pybind11 code is under
// csrc/python/; it takes plain integers (pointers, sizes, strides, dtype
// codes), checks them, calls a kernel with the GIL released and turns a bad
// status into a Python exception. No torch here.
#pragma once
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <tuple>

#include "sparsecore/core.h"

namespace sparsecore::bind {

namespace py = pybind11;

// (data_ptr, rows, cols, row_stride, col_stride, dtype_code)
using MatrixTuple = std::tuple<uintptr_t, int64_t, int64_t, int64_t, int64_t, int>;

[[noreturn]] void value_error(const std::string& msg);
DType to_dtype(int code, const char* what);
IndexType to_index_type(int code);
MatrixView to_view(const MatrixTuple& t, const char* what);
Epilogue to_epilogue(uintptr_t bias, int bias_dtype);
// ValueError for bad input (arguments, contents, NaN where not allowed),
// MemoryError for kOutOfMemory, RuntimeError otherwise; the message names the
// op and the status, plus error_detail() when set.
void check_status(Status s, const char* op);
void check_product(int64_t a_rows, int64_t a_cols, const MatrixView& b, const MatrixView& c, const char* op);
void require_cuda_build();

// One registration function per family (bind_<family>.cc).
void register_runtime(py::module_& m);
void register_spmm(py::module_& m);
void register_nm(py::module_& m);
void register_act(py::module_& m);
void register_attention(py::module_& m);

}  // namespace sparsecore::bind
