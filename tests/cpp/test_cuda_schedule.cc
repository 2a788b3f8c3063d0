// The CUDA CSR kernel's work assignment, checked on the CPU: every nonzero of
// every row is read by exactly one lane of its warp, and every output column
// is owned by exactly one lane of one column tile.
#include <vector>

#include "../../csrc/cuda/spmm/csr_schedule.h"
#include "test_harness.h"

using namespace sparsecore::cuda;

int main() {
  using Cfg = CsrSpmmConfig;
  // Rows -> warps.
  for (int64_t rows : {1, 3, 4, 5, 127, 1000}) {
    std::vector<int> seen(size_t(rows), 0);
    const int64_t blocks = csr_grid_rows(rows, Cfg::kWarpsPerBlock);
    for (int64_t b = 0; b < blocks; ++b)
      for (int w = 0; w < Cfg::kWarpsPerBlock; ++w) {
        const int64_t r = csr_row_of_warp(b, w, Cfg::kWarpsPerBlock);
        if (r < rows) ++seen[size_t(r)];
      }
    for (int64_t r = 0; r < rows; ++r) CHECK(seen[size_t(r)] == 1, "row %lld of %lld covered %d times", (long long)r, (long long)rows, seen[size_t(r)]);
  }
  // Nonzeros of a row -> lanes (GEMV).
  for (int64_t p0 : {0, 5, 31, 64})
    for (int64_t len : {0, 1, 31, 32, 33, 100, 257}) {
      const int64_t p1 = p0 + len;
      std::vector<int> seen(size_t(len), 0);
      for (int64_t s = 0; s < csr_gemv_steps(p0, p1); ++s)
        for (int lane = 0; lane < Cfg::kWarpSize; ++lane) {
          const int64_t p = csr_gemv_element(p0, p1, lane, s);
          if (p >= 0) {
            CHECK(p >= p0 && p < p1, "element %lld outside row", (long long)p);
            if (p >= p0 && p < p1) ++seen[size_t(p - p0)];
          }
        }
      for (int64_t i = 0; i < len; ++i) CHECK(seen[size_t(i)] == 1, "nnz %lld covered %d times", (long long)i, seen[size_t(i)]);
    }
  // Output columns -> (tile, lane, q).
  for (int64_t n : {2, 3, 4, 5, 127, 128, 129, 1000}) {
    std::vector<int> seen(size_t(n), 0);
    for (int64_t t = 0; t < csr_grid_col_tiles(n); ++t)
      for (int lane = 0; lane < Cfg::kWarpSize; ++lane)
        for (int q = 0; q < Cfg::kColsPerLane; ++q) {
          const int64_t c = csr_spmm_first_col(t, lane) + q;
          if (c < n) ++seen[size_t(c)];
        }
    for (int64_t c = 0; c < n; ++c) CHECK(seen[size_t(c)] == 1, "column %lld of %lld covered %d times", (long long)c, (long long)n, seen[size_t(c)]);
  }
  // Output columns -> (tile, lane) of the multi-column GEMV, and when it runs.
  for (int64_t n : {2, 7, 8, 9, 16, 17, 64}) {
    std::vector<int> seen(size_t(n), 0);
    for (int64_t t = 0; t < csr_gemv_n_tiles(n); ++t)
      for (int j = 0; j < Cfg::kGemvCols; ++j)
        if (t * Cfg::kGemvCols + j < n) ++seen[size_t(t * Cfg::kGemvCols + j)];
    for (int64_t c = 0; c < n; ++c) CHECK(seen[size_t(c)] == 1, "gemv_n column %lld of %lld covered %d times", (long long)c, (long long)n, seen[size_t(c)]);
  }
  CHECK(!csr_use_gemv_n(1, 1) && csr_use_gemv_n(2, 64) && csr_use_gemv_n(16, 64) && !csr_use_gemv_n(17, 64),
        "gemv_n for 2..16 columns of a row-major B");
  CHECK(csr_use_gemv_n(64, 1) && !csr_use_gemv_n(65, 1), "gemv_n up to 64 k-contiguous columns");
  return sparsecore::testing::finish("test_cuda_schedule");
}
