// CSR and BSR SpMM on every ISA path compiled into this build and runnable
// here, against the float64 reference. Inputs are small integers over powers
// of two, so fp32 accumulation is exact and every output must match the
// reference rounded once to the output dtype, bit for bit.
#include <cmath>
#include <cstring>
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

const DType kTypes[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};

void test_csr(CpuIsa isa) {
  struct Shape { int64_t m, k; double density; };
  // 1100 columns span three 512-column panels of the SpMM kernel.
  const Shape shapes[] = {{7, 96, 0.4}, {33, 333, 0.1}, {1, 17, 1.0}, {64, 40, 0.0}, {130, 257, 0.5}, {9, 1100, 0.2}};
  const int64_t ns[] = {1, 2, 3, 8, 17, 33, 64, 100};
  uint32_t seed = 1;
  for (const Shape& s : shapes)
    for (DType vt : kTypes) {
      OwnedCsr a = random_csr(s.m, s.k, s.density, vt == DType::kFloat16 ? vt : DType::kBFloat16, seed++);
      a.chunks.assign(6, 0);
      plan_row_chunks(a.row_ptr.data(), a.rows, 4, 5, a.chunks.data());
      std::vector<float> bias(size_t(s.m));
      for (int64_t i = 0; i < s.m; ++i) bias[size_t(i)] = float(i % 5) - 2.f;
      for (IndexType it : {IndexType::kUInt16, IndexType::kInt32})
        for (int64_t n : ns)
          for (DType bt : kTypes)
            for (bool transposed : {false, true})
              for (bool bitmap : {false, true}) {
                if (sparsecore::testing::small_grid() && (n > 33 || s.m * s.k > 20000)) continue;
              if (bitmap && n > 8) continue;  // the bitmap plan serves up to 8 columns
              CsrView v = a.view(vt, it);
              std::vector<uint8_t> bits(size_t(s.m * bitmap_row_bytes(s.k)) + 1);
              if (bitmap) {
                plan_csr_bitmap(v, bits.data());
                v.bitmap = bits.data();
              }
              OwnedDense bd = random_dense(s.k * n, bt, seed++);
              const MatrixView b = dense_view(bd, s.k, n, transposed);
              const bool with_bias = (n % 2) == 1;
              Epilogue ep;
              if (with_bias) ep.bias = bias.data();
              Out out(s.m, n, bt, transposed);
              const Status st = csr_spmm_cpu(v, b, ep, out.view);
              CHECK(st == Status::kOk, "status %d", int(st));
              const auto ref = reference::csr_spmm(v, b, with_bias ? bias.data() : nullptr);
              const int bad = compare(ref, out, s.m, n);
              CHECK(bad == 0, "isa=%s csr m=%lld k=%lld n=%lld vt=%s bt=%s idx=%d T=%d bitmap=%d: %d wrong",
                    cpu_isa_name(isa), (long long)s.m, (long long)s.k, (long long)n, dtype_name(vt), dtype_name(bt),
                    int(it), int(transposed), int(bitmap), bad);
            }
    }
}

void test_bsr(CpuIsa isa) {
  struct Shape { int64_t br, bc, bh, bw; double density; };
  const Shape shapes[] = {{5, 7, 4, 4, 0.5}, {3, 2, 8, 8, 0.6}, {2, 3, 16, 16, 0.5}, {4, 9, 1, 4, 0.4},
                          {2, 2, 32, 32, 0.75}, {1, 2, 64, 64, 1.0}, {3, 5, 2, 8, 0.5}, {3, 4, 8, 1, 0.5},
                          {2, 3, 4, 4, 0.0}};
  const int64_t ns[] = {1, 5, 16, 40};
  uint32_t seed = 1000;
  for (const Shape& s : shapes)
    for (DType vt : kTypes) {
      OwnedBsr a = random_bsr(s.br, s.bc, s.bh, s.bw, s.density, vt == DType::kFloat16 ? vt : DType::kBFloat16, seed++);
      const int64_t m = s.br * s.bh, k = s.bc * s.bw;
      std::vector<float> bias(size_t(m), 0.5f);
      for (IndexType it : {IndexType::kUInt16, IndexType::kInt32})
        for (int64_t n : ns)
          for (DType bt : {DType::kFloat32, DType::kBFloat16})
            for (bool transposed : {false, true}) {
              const BsrView v = a.view(vt, it);
              OwnedDense bd = random_dense(k * n, bt, seed++);
              const MatrixView b = dense_view(bd, k, n, transposed);
              Epilogue ep;
              const bool with_bias = n == 5;
              if (with_bias) ep.bias = bias.data();
              Out out(m, n, bt, transposed);
              const Status st = bsr_spmm_cpu(v, b, ep, out.view);
              CHECK(st == Status::kOk, "status %d", int(st));
              const auto ref = reference::bsr_spmm(v, b, with_bias ? bias.data() : nullptr);
              const int bad = compare(ref, out, m, n);
              CHECK(bad == 0, "isa=%s bsr %lldx%lld blocks of %lldx%lld n=%lld vt=%s bt=%s T=%d: %d wrong",
                    cpu_isa_name(isa), (long long)s.br, (long long)s.bc, (long long)s.bh, (long long)s.bw,
                    (long long)n, dtype_name(vt), dtype_name(bt), int(transposed), bad);
            }
    }
}

void test_errors() {
  OwnedCsr a = random_csr(4, 8, 0.5, DType::kBFloat16, 7);
  CsrView v = a.view(DType::kFloat32, IndexType::kInt32);
  OwnedDense bd = random_dense(8, DType::kFloat32, 3);
  MatrixView b = dense_view(bd, 8, 1, false);
  Out out(4, 1, DType::kFloat32, false);
  // The NaN rule: a non-finite entry of column j of B makes column j of C NaN.
  for (float bad : {std::nanf(""), float(INFINITY), -float(INFINITY)}) {
    bd.f32[3] = bad;
    CHECK(csr_spmm_cpu(v, b, Epilogue{}, out.view) == Status::kOk, "non-finite B is computed");
    for (int r = 0; r < 4; ++r) CHECK(std::isnan(out.at(r, 0)), "row %d of the poisoned column is not NaN", r);
  }
  bd.f32[3] = 1.f;
  // Contents corrupted after validation never make the kernel read outside
  // its arrays: an index past the columns, a negative int32 index, a bitmap
  // that marks a different count, bad row chunks.
  {
    std::vector<int32_t> idx(a.col32.begin(), a.col32.end());
    CsrView bad = v;
    bad.col_idx = idx.data();
    if (!idx.empty()) {
      for (int32_t wrong : {8, 1 << 30, -1}) {
        idx[0] = wrong;
        CHECK(csr_spmm_cpu(bad, b, Epilogue{}, out.view) == Status::kInvalidIndex, "index %d accepted", wrong);
        OwnedDense b4 = random_dense(8 * 5, DType::kFloat32, 9);
        Out out4(4, 5, DType::kFloat32, false);
        CHECK(csr_spmm_cpu(bad, dense_view(b4, 8, 5, false), Epilogue{}, out4.view) == Status::kInvalidIndex,
              "index %d accepted by the SpMM kernel", wrong);
      }
    }
    std::vector<uint8_t> bits(size_t(4 * bitmap_row_bytes(8)), 0);
    CHECK(plan_csr_bitmap(v, bits.data()) == Status::kOk, "bitmap plan");
    CsrView with_bits = v;
    with_bits.bitmap = bits.data();
    CHECK(csr_spmm_cpu(with_bits, b, Epilogue{}, out.view) == Status::kOk, "bitmap plan runs");
    bits[0] ^= 0x01;  // one more or one fewer marked column in row 0
    CHECK(csr_spmm_cpu(with_bits, b, Epilogue{}, out.view) == Status::kInvalidIndex, "bitmap count mismatch");
    bits[0] ^= 0x01;
    bits[1] |= 0x80;  // column 15: padding past the 8 columns
    bits[0] &= uint8_t(~(bits[0] & -bits[0]));  // keep the count: drop the lowest marked column
    CHECK(csr_spmm_cpu(with_bits, b, Epilogue{}, out.view) == Status::kInvalidIndex, "bitmap marks padding");
    std::vector<int64_t> chunks = {0, 2, 9};
    CsrView bad_chunks = v;
    bad_chunks.row_chunks = chunks.data();
    bad_chunks.num_chunks = 2;
    CHECK(csr_spmm_cpu(bad_chunks, b, Epilogue{}, out.view) == Status::kInvalidIndex, "row chunks past the rows");
  }
  MatrixView wrong = b;
  wrong.rows = 7;
  CHECK(csr_spmm_cpu(v, wrong, Epilogue{}, out.view) == Status::kInvalidArgument, "shape mismatch");
  std::vector<int64_t> bad_ptr = a.row_ptr;
  std::swap(bad_ptr[1], bad_ptr[2]);
  if (bad_ptr[1] != bad_ptr[2]) {
    CsrView vb = v;
    vb.row_ptr = bad_ptr.data();
    char msg[256];
    CHECK(csr_validate(vb, msg, sizeof msg) == Status::kInvalidArgument, "decreasing row_ptr");
    CHECK(csr_spmm_cpu(vb, b, Epilogue{}, out.view) == Status::kInvalidIndex, "decreasing row_ptr at call");
  }
  char msg[256];
  CHECK(csr_validate(v, msg, sizeof msg) == Status::kOk, "valid CSR rejected: %s", msg);
  std::vector<int32_t> cols = a.col32;
  if (a.row_ptr[1] - a.row_ptr[0] >= 2) {
    std::swap(cols[0], cols[1]);
    CsrView vu = v;
    vu.col_idx = cols.data();
    CHECK(csr_validate(vu, msg, sizeof msg) == Status::kInvalidArgument, "unsorted columns");
    CHECK(std::strstr(msg, "sorted") != nullptr, "message names the problem: %s", msg);
  }
  cols = a.col32;
  cols[0] = 8;
  CsrView vo = v;
  vo.col_idx = cols.data();
  CHECK(csr_validate(vo, msg, sizeof msg) == Status::kInvalidArgument, "out-of-range column");
  CHECK(std::strstr(msg, "out of range") != nullptr, "message names the problem: %s", msg);
}

void test_plan() {
  OwnedCsr a = random_csr(1000, 50, 0.3, DType::kBFloat16, 11);
  std::vector<int64_t> chunks(9);
  plan_row_chunks(a.row_ptr.data(), a.rows, 2, 8, chunks.data());
  CHECK(chunks.front() == 0 && chunks.back() == 1000, "chunk ends");
  for (size_t i = 1; i < chunks.size(); ++i) CHECK(chunks[i] >= chunks[i - 1], "chunks non-decreasing");
  // Balanced: no chunk holds more than twice the mean work.
  const int64_t total = a.row_ptr.back() + 2 * 1000;
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    const int64_t w = (a.row_ptr[size_t(chunks[i + 1])] + 2 * chunks[i + 1]) - (a.row_ptr[size_t(chunks[i])] + 2 * chunks[i]);
    CHECK(w <= 2 * total / 8 + 64, "chunk %zu work %lld", i, (long long)w);
  }
}

}  // namespace

int main() {
  const int paths = on_every_isa([](CpuIsa isa) {
    test_csr(isa);
    test_bsr(isa);
  });
  test_errors();
  test_plan();
  CHECK(paths >= 1, "no ISA path ran");
  return finish("test_spmm_cpu");
}
