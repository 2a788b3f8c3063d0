// Structural checks and load-balance planning, run once when a format is
// built. O(rows + nnz); the per-call path only re-checks row_ptr bounds.
#include <cmath>
#include <cstdio>

#include "../common/validate_fail.h"
#include "sparsecore/spmm.h"

namespace sparsecore {
namespace {

// Shared by CSR and BSR: row pointers, sorted in-range indices, finite values.
Status validate_compressed(const char* what, int64_t rows, int64_t cols, int64_t nnz, const int64_t* row_ptr,
                           const void* col_idx, IndexType itype, const void* values, DType vtype,
                           int64_t values_per_entry, char* msg, int len) {
  if (rows < 0 || cols < 0 || nnz < 0) return validation_failure(msg, len, "%s: negative size", what);
  if (itype == IndexType::kUInt16 && cols > 65536)
    return validation_failure(msg, len, "%s: uint16 column indices cannot address %lld columns", what, (long long)cols);
  if (row_ptr == nullptr) return validation_failure(msg, len, "%s: row_ptr is null", what);
  if (nnz > 0 && (col_idx == nullptr || values == nullptr))
    return validation_failure(msg, len, "%s: col_idx or values is null", what);
  if (row_ptr[0] != 0) return validation_failure(msg, len, "%s: row_ptr[0] must be 0, got %lld", what, (long long)row_ptr[0]);
  if (row_ptr[rows] != nnz)
    return validation_failure(msg, len, "%s: row_ptr[-1] = %lld does not match the number of stored entries %lld", what,
                (long long)row_ptr[rows], (long long)nnz);
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t p0 = row_ptr[r], p1 = row_ptr[r + 1];
    if (p1 < p0)
      return validation_failure(msg, len, "%s: row_ptr must be non-decreasing, row_ptr[%lld] = %lld > row_ptr[%lld] = %lld",
                  what, (long long)r, (long long)p0, (long long)(r + 1), (long long)p1);
    if (p1 > nnz) return validation_failure(msg, len, "%s: row_ptr[%lld] = %lld exceeds nnz", what, (long long)(r + 1), (long long)p1);
    int64_t prev = -1;
    for (int64_t p = p0; p < p1; ++p) {
      const int64_t c = load_index(col_idx, p, itype);
      if (c < 0 || c >= cols)
        return validation_failure(msg, len, "%s: column index %lld in row %lld is out of range [0, %lld)", what, (long long)c,
                    (long long)r, (long long)cols);
      if (c <= prev)
        return validation_failure(msg, len, "%s: column indices in row %lld are not sorted and unique (%lld after %lld)", what,
                    (long long)r, (long long)c, (long long)prev);
      prev = c;
    }
  }
  const int64_t count = nnz * values_per_entry;
  for (int64_t i = 0; i < count; ++i) {
    if (!std::isfinite(load_as_float(values, i, vtype)))
      return validation_failure(msg, len, "%s: values contain NaN or Inf (at flat position %lld)", what, (long long)i);
  }
  return Status::kOk;
}

}  // namespace

Status csr_validate(const CsrView& a, char* msg, int len) {
  return validate_compressed("CSR", a.rows, a.cols, a.nnz, a.row_ptr, a.col_idx, a.index_type, a.values,
                             a.value_dtype, 1, msg, len);
}

Status bsr_validate(const BsrView& a, char* msg, int len) {
  if (a.block_h < 1 || a.block_w < 1 || a.block_h > 256 || a.block_w > 256)
    return validation_failure(msg, len, "BSR: block shape %lldx%lld must be within 1..256 on each side", (long long)a.block_h,
                (long long)a.block_w);
  return validate_compressed("BSR", a.block_rows, a.block_cols, a.nnzb, a.row_ptr, a.col_idx, a.index_type,
                             a.values, a.value_dtype, a.block_h * a.block_w, msg, len);
}

Status plan_csr_bitmap(const CsrView& a, uint8_t* bitmap) {
  const int64_t stride = bitmap_row_bytes(a.cols);
  for (int64_t r = 0; r < a.rows; ++r) {
    uint8_t* row = bitmap + r * stride;
    for (int64_t i = 0; i < stride; ++i) row[i] = 0;
    for (int64_t p = a.row_ptr[r]; p < a.row_ptr[r + 1]; ++p) {
      const int64_t c = load_index(a.col_idx, p, a.index_type);
      if (c < 0 || c >= a.cols) return Status::kInvalidIndex;
      set_bit(row, c);
    }
  }
  return Status::kOk;
}

void plan_row_chunks(const int64_t* row_ptr, int64_t rows, int64_t row_cost, int64_t num_chunks, int64_t* chunks) {
  if (num_chunks < 1) num_chunks = 1;
  // work(r) = row_ptr[r] + r * row_cost is non-decreasing; cut it into equal parts.
  const int64_t total = row_ptr[rows] + rows * row_cost;
  chunks[0] = 0;
  int64_t r = 0;
  for (int64_t i = 1; i < num_chunks; ++i) {
    const int64_t target = int64_t((__int128)total * i / num_chunks);
    // Binary search the first row whose start-of-row work reaches target.
    int64_t lo = r, hi = rows;
    while (lo < hi) {
      const int64_t mid = lo + (hi - lo) / 2;
      if (row_ptr[mid] + mid * row_cost < target) lo = mid + 1;
      else hi = mid;
    }
    r = lo;
    chunks[i] = r;
  }
  chunks[num_chunks] = rows;
}

}  // namespace sparsecore
