// pybind11 module sparsecore._C: the only binding code. Thin: it receives
// pointers, sizes, strides and type codes as plain integers, checks all of
// them, calls a kernel with the GIL released and turns a bad status into a
// Python exception. No torch here, so the extension is not tied to a torch
// version.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <tuple>

#include "sparsecore/cpu_isa.h"
#include "sparsecore/act_layout.h"
#include "sparsecore/memory.h"
#include "sparsecore/ops.h"

namespace py = pybind11;
using namespace sparsecore;

namespace {

// (data_ptr, rows, cols, row_stride, col_stride, dtype_code)
using MatrixTuple = std::tuple<uintptr_t, int64_t, int64_t, int64_t, int64_t, int>;

[[noreturn]] void value_error(const std::string& msg) { throw py::value_error(msg); }

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

void check_status(Status s, const char* op) {
  if (s == Status::kOk) return;
  std::string msg = std::string("sparsecore.") + op + ": " + status_name(s);
  if (s == Status::kInvalidArgument || s == Status::kNonFinite) throw py::value_error(msg);
  throw std::runtime_error(msg);
}

void check_product(int64_t a_rows, int64_t a_cols, const MatrixView& b, const MatrixView& c, const char* op) {
  if (b.rows != a_cols)
    value_error(std::string(op) + ": dense operand has " + std::to_string(b.rows) + " rows, the sparse matrix " +
                std::to_string(a_cols) + " columns");
  if (c.rows != a_rows || c.cols != b.cols)
    value_error(std::string(op) + ": output shape does not match (" + std::to_string(a_rows) + ", " +
                std::to_string(b.cols) + ")");
}

Epilogue to_epilogue(uintptr_t bias, int bias_dtype) {
  Epilogue ep;
  ep.bias = reinterpret_cast<const void*>(bias);
  if (bias) ep.bias_dtype = to_dtype(bias_dtype, "bias");
  return ep;
}

CsrView make_csr(int64_t rows, int64_t cols, int64_t nnz, uintptr_t row_ptr, uintptr_t col_idx, int index_type,
                 uintptr_t values, int value_dtype) {
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
  a.row_chunks = reinterpret_cast<const int64_t*>(row_chunks);
  a.num_chunks = num_chunks;
  a.bitmap = on_cuda ? nullptr : reinterpret_cast<const uint8_t*>(bitmap);
  if (rows < 0 || cols < 0 || nnz < 0 || num_chunks < 0) value_error("csr_spmm: negative size");
  if (a.row_ptr == nullptr) value_error("csr_spmm: null row_ptr");
  if (nnz > 0 && (a.col_idx == nullptr || a.values == nullptr)) value_error("csr_spmm: null col_idx or values");
  if (num_chunks > 0 && a.row_chunks == nullptr) value_error("csr_spmm: null row_chunks");
  const MatrixView b = to_view(b_t, "dense operand");
  const MatrixView c = to_view(c_t, "output");
  check_product(rows, cols, b, c, "csr_spmm");
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  Status s;
  if (on_cuda) {
    if (!cuda_compiled()) throw std::runtime_error("sparsecore was built without CUDA kernels");
    py::gil_scoped_release release;
    s = csr_spmm_cuda(a, b, ep, c, reinterpret_cast<void*>(stream));
  } else {
    py::gil_scoped_release release;
    s = csr_spmm_cpu(a, b, ep, c);
  }
  check_status(s, "csr_spmm");
}

void bsr_spmm(int64_t block_rows, int64_t block_cols, int64_t block_h, int64_t block_w, int64_t nnzb,
              uintptr_t row_ptr, uintptr_t col_idx, int index_type, uintptr_t values, int value_dtype,
              uintptr_t row_chunks, int64_t num_chunks, const MatrixTuple& b_t, uintptr_t bias, int bias_dtype,
              const MatrixTuple& c_t) {
  BsrView a = make_bsr(block_rows, block_cols, block_h, block_w, nnzb, row_ptr, col_idx, index_type, values,
                       value_dtype);
  a.row_chunks = reinterpret_cast<const int64_t*>(row_chunks);
  a.num_chunks = num_chunks;
  if (block_rows < 0 || block_cols < 0 || nnzb < 0 || num_chunks < 0) value_error("bsr_spmm: negative size");
  if (block_h < 1 || block_w < 1 || block_h > 256 || block_w > 256)
    value_error("bsr_spmm: block sides must be within 1..256");
  if (a.row_ptr == nullptr) value_error("bsr_spmm: null row_ptr");
  if (nnzb > 0 && (a.col_idx == nullptr || a.values == nullptr)) value_error("bsr_spmm: null col_idx or values");
  if (num_chunks > 0 && a.row_chunks == nullptr) value_error("bsr_spmm: null row_chunks");
  const MatrixView b = to_view(b_t, "dense operand");
  const MatrixView c = to_view(c_t, "output");
  check_product(a.rows(), a.cols(), b, c, "bsr_spmm");
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  Status s;
  {
    py::gil_scoped_release release;
    s = bsr_spmm_cpu(a, b, ep, c);
  }
  check_status(s, "bsr_spmm");
}

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

void nm24_pack_metadata_py(uintptr_t bitmap, int64_t rows, int64_t cols, uintptr_t out) {
  if (rows % 16 || cols % 32)
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
  if (rows % 16 || cols % 32) value_error("nm24_spmm: rows must be a multiple of 16 and columns of 32");
  if (a.value_dtype == DType::kFloat32) value_error("nm24_spmm: tensor cores take bf16 or fp16 values");
  if (rows > 0 && cols > 0 && (values == 0 || metadata == 0)) value_error("nm24_spmm: null values or metadata");
  const MatrixView b = to_view(b_t, "dense operand");
  const MatrixView c = to_view(c_t, "output");
  check_product(rows, cols, b, c, "nm24_spmm");
  if (b.dtype != a.value_dtype || c.dtype != b.dtype)
    value_error("nm24_spmm: the dense operand and output must have the weight's dtype");
  if (b.cols > 0 && (b.row_stride != 1 || (b.cols > 1 && b.col_stride % 2) || (std::get<0>(b_t) % 4)))
    value_error("nm24_spmm: the dense operand must be k-contiguous with an even stride and 4-byte alignment");
  if (!cuda_compiled()) throw std::runtime_error("sparsecore was built without CUDA kernels");
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  Status s;
  {
    py::gil_scoped_release release;
    s = nm24_spmm_cuda(a, b, ep, c, reinterpret_cast<void*>(stream));
  }
  check_status(s, "nm24_spmm");
}

// Activation-sparse linear: the weight is (out x in) packed (act_layout.h).
ActWeightView make_act_weight(int64_t out, int64_t in, uintptr_t values, int value_dtype) {
  if (out < 0 || in < 0) value_error("act_linear: negative weight size");
  if (out > 0 && in > 0 && values == 0) value_error("act_linear: null packed weight");
  ActWeightView w;
  w.out = out;
  w.in = in;
  w.values = reinterpret_cast<const void*>(values);
  w.value_dtype = to_dtype(value_dtype, "packed weight");
  return w;
}

void act_pack_weight_py(const MatrixTuple& w_t, uintptr_t packed) {
  const MatrixView w = to_view(w_t, "weight");
  if (w.rows > 0 && w.cols > 0 && packed == 0) value_error("act_pack_weight: null output");
  Status s;
  {
    py::gil_scoped_release release;
    s = act_pack_weight(w, reinterpret_cast<void*>(packed));
  }
  check_status(s, "act_pack_weight");
}

int64_t act_bitmap_values_py(const MatrixTuple& w_t) {
  const MatrixView w = to_view(w_t, "weight");
  py::gil_scoped_release release;
  return act_bitmap_values(w);
}

void act_pack_bitmap_py(const MatrixTuple& w_t, uintptr_t bitmap, uintptr_t offsets, uintptr_t values) {
  const MatrixView w = to_view(w_t, "weight");
  if (w.cols > 0 && (bitmap == 0 || offsets == 0 || values == 0)) value_error("act_pack_bitmap: null output");
  Status s;
  {
    py::gil_scoped_release release;
    s = act_pack_bitmap(w, reinterpret_cast<uint8_t*>(bitmap), reinterpret_cast<int64_t*>(offsets),
                        reinterpret_cast<void*>(values));
  }
  check_status(s, "act_pack_bitmap");
}

void act_linear(int64_t out, int64_t in, uintptr_t values, int value_dtype, uintptr_t bitmap, uintptr_t offsets,
                double threshold, uintptr_t scale, bool complement, const MatrixTuple& x_t, uintptr_t bias,
                int bias_dtype, const MatrixTuple& y_t, bool on_cuda, uintptr_t stream) {
  ActWeightView w = make_act_weight(out, in, values, value_dtype);
  if ((bitmap == 0) != (offsets == 0)) value_error("act_linear: weight-sparse runs need both bitmap and offsets");
  if (bitmap != 0 && on_cuda) value_error("act_linear: weight-sparse runs run on CPU only");
  w.bitmap = reinterpret_cast<const uint8_t*>(bitmap);
  w.offsets = reinterpret_cast<const int64_t*>(offsets);
  const MatrixView x = to_view(x_t, "input");
  const MatrixView y = to_view(y_t, "output");
  if (x.cols != in) value_error("act_linear: input has " + std::to_string(x.cols) + " features, the weight " +
                                std::to_string(in));
  if (y.rows != x.rows || y.cols != out) value_error("act_linear: output shape does not match");
  if (threshold != threshold) value_error("act_linear: threshold is NaN");
  ActSelect sel;
  sel.threshold = float(threshold);
  sel.scale = reinterpret_cast<const float*>(scale);
  sel.complement = complement;
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  if (on_cuda && !cuda_compiled()) throw std::runtime_error("sparsecore was built without CUDA kernels");
  Status s;
  {
    py::gil_scoped_release release;
    s = on_cuda ? act_linear_cuda(w, sel, x, ep, y, reinterpret_cast<void*>(stream)) : act_linear_cpu(w, sel, x, ep, y);
  }
  check_status(s, "act_linear");
}

int64_t act_packed_elements_py(int64_t out, int64_t in) { return act_packed_elements(out, in); }

void validate_or_raise(Status s, const char* msg) {
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
  validate_or_raise(s, msg);
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
  validate_or_raise(s, msg);
}

void nm_validate_py(int64_t rows, int64_t cols, int n, int m, uintptr_t values, int value_dtype, uintptr_t bitmap) {
  const NmView a = make_nm(rows, cols, n, m, values, value_dtype, bitmap);
  char msg[512] = {0};
  Status s;
  {
    py::gil_scoped_release release;
    s = nm_validate(a, msg, sizeof msg);
  }
  validate_or_raise(s, msg);
}

void plan_csr_bitmap_py(int64_t rows, int64_t cols, int64_t nnz, uintptr_t row_ptr, uintptr_t col_idx,
                        int index_type, uintptr_t out) {
  if (row_ptr == 0 || out == 0 || (nnz > 0 && col_idx == 0)) value_error("plan_csr_bitmap: null pointer");
  // Values are not read by the bitmap planner.
  const CsrView a = make_csr(rows, cols, nnz, row_ptr, col_idx, index_type, 0, 0);
  py::gil_scoped_release release;
  plan_csr_bitmap(a, reinterpret_cast<uint8_t*>(out));
}

void plan_row_chunks_py(uintptr_t row_ptr, int64_t rows, int64_t row_cost, int64_t num_chunks, uintptr_t out) {
  if (row_ptr == 0 || out == 0) value_error("plan_row_chunks: null pointer");
  if (rows < 0 || num_chunks < 1) value_error("plan_row_chunks: bad sizes");
  plan_row_chunks(reinterpret_cast<const int64_t*>(row_ptr), rows, row_cost, num_chunks,
                  reinterpret_cast<int64_t*>(out));
}

py::dict info() {
  py::dict d;
  py::list compiled, available;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Simde}) {
    bool built = isa == CpuIsa::kScalar;
#if defined(SPARSECORE_HAVE_AVX2)
    built |= isa == CpuIsa::kAvx2;
#endif
#if defined(SPARSECORE_HAVE_AVX512)
    built |= isa == CpuIsa::kAvx512;
#endif
#if defined(SPARSECORE_HAVE_AVX512_SIMDE)
    built |= isa == CpuIsa::kAvx512Simde;
#endif
    if (built) compiled.append(cpu_isa_name(isa));
    if (cpu_isa_available(isa)) available.append(cpu_isa_name(isa));
  }
  d["cpu_isa_compiled"] = compiled;
  d["cpu_isa_available"] = available;
  d["cpu_isa_selected"] = cpu_isa_name(cpu_isa_selected());
  d["cpu_threads"] = cpu_num_threads();
  d["cuda_compiled"] = cuda_compiled();
  d["cuda_archs"] = std::string(cuda_archs_compiled());
  d["cuda_devices"] = cuda_device_count();
  return d;
}

void set_cpu_isa(const std::string& name) {
  CpuIsa isa;
  if (!cpu_isa_parse(name.c_str(), &isa))
    value_error("unknown CPU ISA '" + name + "' (expected scalar, avx2, avx512 or avx512-simde)");
  if (!cpu_isa_set(isa)) value_error("CPU ISA '" + name + "' is not compiled into this build or not supported by this CPU");
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "sparsecore compiled kernels (torch-free); use the sparsecore package, not this module";
  m.def("info", &info);
  m.def("set_cpu_isa", &set_cpu_isa);
  m.def("get_cpu_isa", [] { return std::string(cpu_isa_name(cpu_isa_selected())); });
  m.def("set_num_threads", &cpu_set_num_threads);
  m.def("get_num_threads", &cpu_num_threads);
  m.def("csr_validate", &csr_validate_py);
  m.def("bsr_validate", &bsr_validate_py);
  m.def("plan_row_chunks", &plan_row_chunks_py);
  m.def("plan_csr_bitmap", &plan_csr_bitmap_py);
  m.def("bitmap_row_bytes", &bitmap_row_bytes);
  m.def("csr_spmm", &csr_spmm);
  m.def("bsr_spmm", &bsr_spmm);
  m.def("nm_validate", &nm_validate_py);
  m.def("nm_spmm", &nm_spmm);
  m.def("nm24_metadata_words", &nm24_metadata_words);
  m.def("nm24_pack_metadata", &nm24_pack_metadata_py);
  m.def("nm24_spmm", &nm24_spmm);
  m.def("act_pack_weight", &act_pack_weight_py);
  m.def("act_linear", &act_linear);
  m.def("advise_huge_pages", [](uintptr_t data, int64_t bytes) {
    return advise_huge_pages(reinterpret_cast<void*>(data), bytes);
  });
  m.def("act_packed_elements", &act_packed_elements_py);
  m.def("act_bitmap_values", &act_bitmap_values_py);
  m.def("act_pack_bitmap", &act_pack_bitmap_py);
  m.def("act_bitmap_row_bytes", [](int64_t out) { return act_bitmap_row_bytes(out); });
  m.def("act_offset_slots", [](int64_t out) { return act_offset_slots(out); });
  m.attr("ACT_VALUE_PAD") = kActValuePad;
  m.attr("ACT_TILE") = kActTile;
}
