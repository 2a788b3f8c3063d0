// CSR -> dense scatter. A layer whose sparse kernel loses to the dense GEMM at
// a prompt's length (bf16 prefill on CPUs with fast bf16 GEMMs, for example)
// writes its weight densely for that one call and hands it to the GEMM; at
// 128+ tokens the scatter costs a fraction of the product. Values are copied
// bit for bit (the output has the values' dtype), so the dense weight is exact.
#include <algorithm>
#include <atomic>
#include <cstring>

#include "../thread_pool.h"
#include "sparsecore/spmm.h"

namespace sparsecore {
namespace {

template <typename Elem, typename Index>
bool scatter_rows(const CsrView& a, const MatrixView& c, int64_t r0, int64_t r1) {
  const auto* values = static_cast<const Elem*>(a.values);
  const auto* cols = static_cast<const Index*>(a.col_idx);
  for (int64_t r = r0; r < r1; ++r) {
    Elem* out = static_cast<Elem*>(c.data) + r * c.row_stride;
    std::memset(out, 0, size_t(a.cols) * sizeof(Elem));
    const int64_t p0 = a.row_ptr[r], p1 = a.row_ptr[r + 1];
    if (p0 < 0 || p1 < p0 || p1 > a.nnz) return false;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t col = int64_t(cols[p]);
      if (col < 0 || col >= a.cols) return false;
      out[col] = values[p];
    }
  }
  return true;
}

template <typename Elem>
bool scatter(const CsrView& a, const MatrixView& c, int64_t r0, int64_t r1) {
  return a.index_type == IndexType::kUInt16 ? scatter_rows<Elem, uint16_t>(a, c, r0, r1)
                                            : scatter_rows<Elem, int32_t>(a, c, r0, r1);
}

}  // namespace

Status csr_to_dense_cpu(const CsrView& a, const MatrixView& c) {
  if (a.rows < 0 || a.cols < 0 || a.nnz < 0 || a.row_ptr == nullptr) return Status::kInvalidArgument;
  if (a.nnz > 0 && (a.values == nullptr || a.col_idx == nullptr)) return Status::kInvalidArgument;
  if (c.rows != a.rows || c.cols != a.cols || c.dtype != a.value_dtype || c.col_stride != 1 ||
      c.row_stride < a.cols || (a.rows > 0 && a.cols > 0 && c.data == nullptr))
    return Status::kInvalidArgument;
  if (a.rows == 0 || a.cols == 0) return Status::kOk;
  if (a.row_ptr[0] != 0 || a.row_ptr[a.rows] != a.nnz) return Status::kInvalidIndex;
  // Rows in tasks of about 64 KiB of output each.
  const int64_t row_bytes = a.cols * dtype_size(a.value_dtype);
  const int64_t rows_per_task = row_bytes >= 65536 ? 1 : 65536 / row_bytes;
  const int64_t tasks = (a.rows + rows_per_task - 1) / rows_per_task;
  std::atomic<bool> bad{false};
  const Status s = cpu::parallel_for(tasks, [&](int64_t t) {
    const int64_t r0 = t * rows_per_task, r1 = std::min(a.rows, r0 + rows_per_task);
    const bool ok = dtype_size(a.value_dtype) == 4 ? scatter<uint32_t>(a, c, r0, r1) : scatter<uint16_t>(a, c, r0, r1);
    if (!ok) bad.store(true);
  });
  if (s != Status::kOk) return s;
  return bad.load() ? Status::kInvalidIndex : Status::kOk;
}

}  // namespace sparsecore
