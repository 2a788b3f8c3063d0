// Kernel entry points. The same functions are called by the Python bindings,
// the ctest tests and the C++ microbenchmarks.
//
// All matmuls compute  C = A @ B (+ bias[row] added to every column of row)
// with A sparse (rows x cols), B dense (A.cols x N, any strides, any dtype),
// C dense (A.rows x N, any strides, any dtype), fp32 accumulation.
// x @ W.T is the same call with B = x viewed transposed and C = y viewed
// transposed, which is why every view carries both strides.
#pragma once
#include <cstdint>

#include "sparsecore/status.h"
#include "sparsecore/views.h"

namespace sparsecore {

// bias may be null; otherwise bias has A.rows elements of bias_dtype.
struct Epilogue {
  const void* bias = nullptr;
  DType bias_dtype = DType::kFloat32;
};

// Cheap O(rows + nnz) structural checks used at construction time (plan),
// returning kInvalidArgument and a message naming the first problem.
Status csr_validate(const CsrView& a, char* message, int message_len);
Status bsr_validate(const BsrView& a, char* message, int message_len);

// Plan: split rows into num_chunks contiguous ranges of roughly equal work
// (nnz plus a per-row cost). chunks must hold num_chunks + 1 entries.
void plan_row_chunks(const int64_t* row_ptr, int64_t rows, int64_t row_cost,
                     int64_t num_chunks, int64_t* chunks);

// Plan: fill bitmap (rows x bitmap_row_bytes(cols) bytes) from a validated CSR.
void plan_csr_bitmap(const CsrView& a, uint8_t* bitmap);

// N:M: checks n < m, m in {2, 4, 8, 16}, m | cols, that every group of the
// bitmap marks exactly n columns, and that the values are finite.
Status nm_validate(const NmView& a, char* message, int message_len);

Status csr_spmm_cpu(const CsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c);
Status bsr_spmm_cpu(const BsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c);
Status nm_spmm_cpu(const NmView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c);

// Activation-sparse linear: y = (x * m) @ W.T (+ bias[o]), with m the
// channels act_selected picks in each row of x (N x in, any strides, the
// weight's dtype); y is N x out, any strides, x's dtype. The thresholding
// runs inside the call: x is read once, the weight only at active channels.
// kNonFinite when x holds NaN or Inf (a NaN must never pass as "small").
Status act_linear_cpu(const ActWeightView& w, const ActSelect& sel, const MatrixView& x, const Epilogue& ep,
                      const MatrixView& y);
// Packs W (out x in, any strides, dtype = packed dtype) into the
// column-blocked layout; packed holds act_packed_elements(out, in) values.
Status act_pack_weight(const MatrixView& w, void* packed);
// Weight-sparse runs (ActWeightView::bitmap) from W's nonzeros: the number of
// values to store, then the packing into values (act_bitmap_values(w) +
// kActValuePad elements of W's dtype), bitmap (in * act_bitmap_row_bytes(out)
// + 2 bytes) and offsets (in * act_offset_slots(out) int64).
int64_t act_bitmap_values(const MatrixView& w);
Status act_pack_bitmap(const MatrixView& w, uint8_t* bitmap, int64_t* offsets, void* values);
// The same product on the GPU (device pointers; scale, if any, on the device).
Status act_linear_cuda(const ActWeightView& w, const ActSelect& sel, const MatrixView& x, const Epilogue& ep,
                       const MatrixView& y, void* stream);

// CUDA entry point (kUnsupported in builds without CUDA). All pointers are
// device pointers; stream is a cudaStream_t passed as void* so that this
// header stays free of CUDA headers.
Status csr_spmm_cuda(const CsrView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c,
                     void* stream);
// 2:4 on sparse tensor cores (mma.sp, sm_80+). Host side: the metadata words
// (nm24_metadata_words of them) from a 2:4 bitmap in the NmView layout;
// kInvalidArgument when rows % 16, cols % 32 or some chunk is not 2 of 4.
int64_t nm24_metadata_words(int64_t rows, int64_t cols);
Status nm24_pack_metadata(const uint8_t* bitmap, int64_t rows, int64_t cols, uint32_t* metadata);
// C = A @ B (+ bias) on the GPU. B (A.cols x n) has A's value dtype and
// row_stride 1 (k contiguous: x @ W.T passes x^T), an even col_stride and a
// 4-byte aligned base; C any strides, dtype of B.
Status nm24_spmm_cuda(const Nm24View& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c,
                      void* stream);
bool cuda_compiled();
const char* cuda_archs_compiled();
int cuda_device_count();

}  // namespace sparsecore
