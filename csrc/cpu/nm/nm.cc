// CPU entry points for N:M sparse x dense: validation of the format, argument
// checks, packing of the dense operand, ISA dispatch and threading. Baseline
// TU (no -m flags).
#include <cmath>
#include <algorithm>
#include <cstdio>

#include "../common/isa_pick.h"
#include "../common/run_parts.h"
#include "../thread_pool.h"
#include "nm_isa.h"
#include "../common/validate_fail.h"
#include "sparsecore/nm.h"

namespace sparsecore {
namespace {

bool pattern_ok(const NmView& a) {
  return a.rows >= 0 && a.cols >= 0 && (a.m == 2 || a.m == 4 || a.m == 8) && a.n >= 1 && a.n < a.m &&
         a.cols % a.m == 0;
}

}  // namespace

Status nm_validate(const NmView& a, char* msg, int len) {
  if (a.rows < 0 || a.cols < 0) return validation_failure(msg, len, "N:M: negative size");
  if (!(a.m == 2 || a.m == 4 || a.m == 8) || a.n < 1 || a.n >= a.m)
    return validation_failure(msg, len, "N:M: pattern %d:%d is not supported (m must be 2, 4 or 8 and 1 <= n < m)", a.n, a.m);
  if (a.cols % a.m != 0)
    return validation_failure(msg, len, "N:M: %lld columns are not a multiple of m = %d", (long long)a.cols, a.m);
  if (a.rows > 0 && a.cols > 0 && (a.values == nullptr || a.bitmap == nullptr))
    return validation_failure(msg, len, "N:M: values or bitmap is null");
  const int64_t stride = bitmap_row_bytes(a.cols);
  for (int64_t r = 0; r < a.rows; ++r) {
    const uint8_t* row = a.bitmap + r * stride;
    for (int64_t g = 0; g < a.cols / a.m; ++g) {
      int count = 0;
      for (int64_t c = g * a.m; c < (g + 1) * a.m; ++c) count += bit_at(row, c);
      if (count != a.n)
        return validation_failure(msg, len, "N:M: row %lld, columns %lld..%lld mark %d stored values, expected exactly %d",
                    (long long)r, (long long)(g * a.m), (long long)((g + 1) * a.m - 1), count, a.n);
    }
    for (int64_t c = a.cols; c < stride * 8; ++c)
      if (bit_at(row, c))
        return validation_failure(msg, len, "N:M: row %lld marks column %lld past the %lld columns", (long long)r, (long long)c,
                    (long long)a.cols);
  }
  const int64_t count = a.rows * nm_values_per_row(a);
  for (int64_t i = 0; i < count; ++i)
    if (!std::isfinite(load_as_float(a.values, i, a.value_dtype)))
      return validation_failure(msg, len, "N:M: values contain NaN or Inf (at flat position %lld)", (long long)i);
  return Status::kOk;
}

namespace {

Status nm_spmm_impl(const NmView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c) {
  if (!pattern_ok(a)) return Status::kInvalidArgument;
  if (!cpu::matrix_view_ok(b) || !cpu::matrix_view_ok(c)) return Status::kInvalidArgument;
  if (b.rows != a.cols || c.rows != a.rows || c.cols != b.cols) return Status::kInvalidArgument;
  if (a.rows > 0 && a.cols > 0 && (a.values == nullptr || a.bitmap == nullptr)) return Status::kInvalidArgument;
  if (c.rows == 0 || c.cols == 0) return Status::kOk;
  const bool parallel = a.rows * a.cols * b.cols >= 2 * cpu::kMinParallelWork;
  const bool decode = b.cols <= cpu::kNmMaxDecodeCols;
  cpu::PackedDense packed;
  if (Status s = cpu::pack_dense(b, decode ? 1 : cpu::spmm_tile(b.cols), parallel, &packed); s != Status::kOk)
    return s;
  cpu::SpmmOutput out;
  out.c = c;
  if (Status s = cpu::convert_bias(ep, a.rows, &out.bias); s != Status::kOk) return s;
  if (a.cols == 0) {
    cpu::store_bias_only(c, out.bias);
    return Status::kOk;
  }
  using RowsFn = bool (*)(const NmView&, const cpu::PackedDense&, const cpu::SpmmOutput&, int64_t, int64_t);
  const RowsFn fn = cpu::pick<RowsFn>(&cpu::scalar::nm_rows, SC_AVX2(nm_rows), SC_AVX512(nm_rows), SC_SIMDE(nm_rows));
  // Every row costs the same: an even split, a few parts per thread so a
  // thread that is descheduled does not hold up the call. Panel kernels want
  // long row ranges (the B panel is reused across them).
  const int64_t min_rows = decode ? 16 : 64;
  const int64_t parts =
      parallel ? std::max<int64_t>(1, std::min<int64_t>(a.rows / min_rows, 4 * cpu_num_threads())) : 1;
  if (Status s = cpu::run_parts(parts, parallel,
                                [&](int64_t i) { return fn(a, packed, out, a.rows * i / parts, a.rows * (i + 1) / parts); });
      s != Status::kOk)
    return s;
  cpu::poison_columns(packed, c);
  return Status::kOk;
}

}  // namespace

Status nm_spmm_cpu(const NmView& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c) {
  return cpu::guarded([&] { return nm_spmm_impl(a, b, ep, c); });
}

}  // namespace sparsecore
