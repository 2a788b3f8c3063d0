// N:M (2:4, 4:8, 1:4, 1:2) sparse x dense on every ISA path compiled into
// this build and runnable here, against the float64 reference. Small integer
// inputs over powers of two make fp32 accumulation exact, so every output
// must equal the reference rounded once to the output dtype, bit for bit.
#include <cmath>
#include <cstring>
#include <algorithm>
#include <random>
#include <vector>

#include "../../csrc/reference/spmm_reference.h"
#include "dense_check.h"
#include "random_sparse.h"
#include "sparsecore/cpu_isa.h"
#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"
#include "test_harness.h"

using namespace sparsecore;
using namespace sparsecore::testing;

namespace {

// An N:M matrix in the CPU layout. Some groups keep fewer than n nonzeros
// (stored as explicit zeros), as pruned weights do.
struct OwnedNm {
  int64_t rows = 0, cols = 0;
  int n = 2, m = 4;
  std::vector<uint8_t> bitmap;
  std::vector<float> val32;
  std::vector<uint16_t> val16;
  NmView view(DType vt) const {
    NmView v;
    v.rows = rows;
    v.cols = cols;
    v.n = n;
    v.m = m;
    v.bitmap = bitmap.data();
    v.value_dtype = vt;
    v.values = vt == DType::kFloat32 ? static_cast<const void*>(val32.data()) : val16.data();
    return v;
  }
};

OwnedNm random_nm(int64_t rows, int64_t cols, int n, int m, DType vt16, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> small(-8, 8);
  OwnedNm a;
  a.rows = rows;
  a.cols = cols;
  a.n = n;
  a.m = m;
  const int64_t stride = bitmap_row_bytes(cols);
  a.bitmap.assign(size_t(rows * stride), 0);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t g = 0; g < cols / m; ++g) {
      std::vector<int> lanes(static_cast<size_t>(m));
      for (int i = 0; i < m; ++i) lanes[size_t(i)] = i;
      std::shuffle(lanes.begin(), lanes.end(), rng);
      std::sort(lanes.begin(), lanes.begin() + n);
      for (int i = 0; i < n; ++i) {
        const int64_t c = g * m + lanes[size_t(i)];
        a.bitmap[size_t(r * stride + (c >> 3))] |= uint8_t(1u << (c & 7));
        const float v = float(small(rng)) / 8.f;  // zero now and then
        a.val32.push_back(v);
        a.val16.push_back(vt16 == DType::kFloat16 ? float_to_fp16(v) : float_to_bf16(v));
      }
    }
  return a;
}

const DType kTypes[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};

void test_nm(CpuIsa isa) {
  struct Shape { int64_t rows, cols; int n, m; };
  // Column counts off the 8- and 16-column kernel groups and across several
  // 128-column panels; a single row (every over-read is at the array's end);
  // many rows of over 1 KiB, split over threads (the decode prefetch runs
  // ahead across rows and past the end of the values).
  const Shape shapes[] = {{7, 96, 2, 4},    {33, 36, 2, 4},    {1, 12, 2, 4}, {130, 300, 2, 4},
                          {9, 1100, 2, 4},  {260, 1036, 2, 4}, {131, 1032, 4, 8},
                          {5, 72, 4, 8},    {17, 40, 1, 4},    {6, 34, 1, 2}, {3, 264, 3, 8},
                          {0, 16, 2, 4}};
  const int64_t ns[] = {1, 2, 3, 8, 9, 17, 64, 100};
  uint32_t seed = 1;
  for (const Shape& s : shapes)
    for (DType vt : kTypes) {
      if (sparsecore::testing::small_grid() && s.rows * s.cols > 40000) continue;
      const OwnedNm a = random_nm(s.rows, s.cols, s.n, s.m, vt == DType::kFloat16 ? vt : DType::kBFloat16, seed++);
      const NmView v = a.view(vt);
      char msg[256];
      CHECK(nm_validate(v, msg, sizeof msg) == Status::kOk, "valid N:M rejected: %s", msg);
      std::vector<float> bias(size_t(s.rows));
      for (int64_t i = 0; i < s.rows; ++i) bias[size_t(i)] = float(i % 5) - 2.f;
      for (int64_t n : ns)
        for (DType bt : kTypes)
          for (bool transposed : {false, true}) {
            if (sparsecore::testing::small_grid() && n > 17) continue;
            OwnedDense bd = random_dense(s.cols * n, bt, seed++);
            const MatrixView b = dense_view(bd, s.cols, n, transposed);
            const bool with_bias = (n % 2) == 1;
            Epilogue ep;
            if (with_bias) ep.bias = bias.data();
            Out out(s.rows, n, bt, transposed);
            const Status st = nm_spmm_cpu(v, b, ep, out.view);
            CHECK(st == Status::kOk, "status %d", int(st));
            const auto ref = reference::nm_spmm(v, b, with_bias ? bias.data() : nullptr);
            const int bad = compare(ref, out, s.rows, n);
            CHECK(bad == 0, "isa=%s %d:%d rows=%lld cols=%lld n=%lld vt=%s bt=%s T=%d: %d wrong", cpu_isa_name(isa),
                  s.n, s.m, (long long)s.rows, (long long)s.cols, (long long)n, dtype_name(vt), dtype_name(bt),
                  int(transposed), bad);
          }
    }
}

void test_errors() {
  OwnedNm a = random_nm(4, 12, 2, 4, DType::kBFloat16, 5);
  NmView v = a.view(DType::kFloat32);
  char msg[256];
  // A group marking three columns.
  std::vector<uint8_t> bits = a.bitmap;
  bits[0] = uint8_t(bits[0] | 0x0f);
  NmView bad = v;
  bad.bitmap = bits.data();
  CHECK(nm_validate(bad, msg, sizeof msg) == Status::kInvalidArgument, "group with 4 marks accepted");
  CHECK(std::strstr(msg, "expected exactly 2") != nullptr, "message names the problem: %s", msg);
  // A mark past the last column.
  bits = a.bitmap;
  bits[1] = uint8_t(bits[1] | 0x10);  // column 12 of row 0
  bad.bitmap = bits.data();
  CHECK(nm_validate(bad, msg, sizeof msg) == Status::kInvalidArgument, "mark past the columns accepted");
  CHECK(std::strstr(msg, "past the") != nullptr, "message: %s", msg);
  NmView shape = v;
  shape.cols = 10;
  CHECK(nm_validate(shape, msg, sizeof msg) == Status::kInvalidArgument, "cols not a multiple of m");
  CHECK(std::strstr(msg, "multiple of m") != nullptr, "message: %s", msg);
  NmView pattern = v;
  pattern.n = 4;
  CHECK(nm_validate(pattern, msg, sizeof msg) == Status::kInvalidArgument, "4:4 accepted");
  std::vector<float> vals = a.val32;
  vals[3] = std::nanf("");
  NmView nan = v;
  nan.values = vals.data();
  CHECK(nm_validate(nan, msg, sizeof msg) == Status::kInvalidArgument, "NaN value accepted");
  OwnedDense bd = random_dense(12, DType::kFloat32, 3);
  MatrixView b = dense_view(bd, 12, 1, false);
  Out out(4, 1, DType::kFloat32, false);
  bd.f32[3] = INFINITY;
  CHECK(nm_spmm_cpu(v, b, Epilogue{}, out.view) == Status::kOk, "Inf in B is computed");
  for (int r = 0; r < 4; ++r) CHECK(std::isnan(out.at(r, 0)), "row %d of the poisoned column is not NaN", r);
  bd.f32[3] = 1.f;
  // A bitmap edited after validation: the kernels check each group's count.
  for (int64_t n : {1, 3, 20}) {
    std::vector<uint8_t> bits(a.bitmap.begin(), a.bitmap.end());
    NmView bad = v;
    bad.bitmap = bits.data();
    bits[0] ^= 0x01;
    OwnedDense bn = random_dense(12 * n, DType::kFloat32, 5);
    Out on(4, n, DType::kFloat32, false);
    CHECK(nm_spmm_cpu(bad, dense_view(bn, 12, n, false), Epilogue{}, on.view) == Status::kInvalidIndex,
          "corrupted bitmap accepted (n = %lld)", (long long)n);
  }
  MatrixView wrong = b;
  wrong.rows = 8;
  CHECK(nm_spmm_cpu(v, wrong, Epilogue{}, out.view) == Status::kInvalidArgument, "shape mismatch");
  CHECK(nm_spmm_cpu(shape, b, Epilogue{}, out.view) == Status::kInvalidArgument, "bad pattern at call");
}

}  // namespace

int main() {
  const int paths = on_every_isa([](CpuIsa isa) {
    test_nm(isa);
  });
  test_errors();
  CHECK(paths >= 1, "no ISA path ran");
  return finish("test_nm_cpu");
}
