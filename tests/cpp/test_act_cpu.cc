// Activation-sparse linear on every ISA path compiled in and runnable here,
// against a float64 reference. Inputs and weights are small integers and the
// thresholds sit between them, so the selection is unambiguous and the fp32
// accumulation exact: every output must equal the reference rounded once to
// the output dtype, bit for bit. Covers per-row and union lists, tails of
// every blocking (outputs not a multiple of the tile or the output chunk,
// channels across several channel chunks), strides, bias, scale, complement,
// the packing, the CUDA schedule's coverage, and the bad-input statuses.
#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "dense_check.h"
#include "sparsecore/act_layout.h"
#include "sparsecore/cpu_isa.h"
#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"
#include "test_harness.h"

using namespace sparsecore;
using namespace sparsecore::testing;

namespace {

// A matrix in any dtype, stored as raw elements.
struct Raw {
  std::vector<float> f32;
  std::vector<uint16_t> b16;
  DType dtype;
  Raw(const std::vector<float>& v, DType t) : dtype(t) {
    if (t == DType::kFloat32) {
      f32 = v;
    } else {
      for (float x : v) b16.push_back(t == DType::kBFloat16 ? float_to_bf16(x) : float_to_fp16(x));
    }
  }
  void* data() { return dtype == DType::kFloat32 ? static_cast<void*>(f32.data()) : b16.data(); }
};

struct Case {
  int64_t out, in, n;
  DType wt, xt, yt;
  bool same_rows;      // identical rows: union lists win the cost model
  bool with_scale, complement, with_bias, x_transposed, y_transposed;
};

void run_case(const Case& c, std::mt19937& rng) {
  std::uniform_int_distribution<int> small(-4, 4);
  std::vector<float> w(size_t(c.out * c.in)), x(size_t(c.n * c.in)), scale(size_t(c.in)), bias(size_t(c.out));
  for (float& v : w) v = rng() % 5 < 2 ? 0.f : float(small(rng));  // pruned: ~45% zeros
  for (int64_t r = 0; r < c.n; ++r)
    for (int64_t j = 0; j < c.in; ++j) x[size_t(r * c.in + j)] = c.same_rows && r > 0 ? x[size_t(j)] : float(small(rng));
  for (float& v : scale) v = float(1 + (rng() % 3));
  for (float& v : bias) v = float(small(rng));
  const float threshold = c.with_scale ? 4.5f : 1.5f;

  Raw wr(w, c.wt), xr(x, c.xt);
  MatrixView wv{wr.data(), c.out, c.in, c.in, 1, c.wt};
  std::vector<uint8_t> packed(size_t(act_packed_elements(c.out, c.in) * dtype_size(c.wt)) + 1, 0xAB);
  CHECK(act_pack_weight(wv, packed.data()) == Status::kOk, "pack");
  // Padding past out must be zero; every element at act_packed_offset.
  for (int64_t j = 0; j < c.in; ++j)
    for (int64_t o = 0; o < act_out_padded(c.out); ++o) {
      const float got = load_as_float(packed.data(), act_packed_offset(o, j, c.out), c.wt);
      const float want = o < c.out ? w[size_t(o * c.in + j)] : 0.f;
      if (got != want) {
        CHECK(false, "packed (%lld, %lld) = %g, want %g", (long long)o, (long long)j, got, want);
        return;
      }
    }

  MatrixView xv{xr.data(), c.n, c.in, c.x_transposed ? 1 : c.in, c.x_transposed ? c.n : 1, c.xt};
  if (c.x_transposed) {  // the same logical x stored column-major
    std::vector<float> t(x.size());
    for (int64_t r = 0; r < c.n; ++r)
      for (int64_t j = 0; j < c.in; ++j) t[size_t(j * c.n + r)] = x[size_t(r * c.in + j)];
    xr = Raw(t, c.xt);
    xv.data = xr.data();
  }
  Out y(c.n, c.out, c.yt, c.y_transposed);
  ActWeightView aw{c.out, c.in, packed.data(), c.wt};
  ActSelect sel;
  sel.threshold = threshold;
  sel.scale = c.with_scale ? scale.data() : nullptr;
  sel.complement = c.complement;
  Epilogue ep;
  if (c.with_bias) ep.bias = bias.data();
  Status s = act_linear_cpu(aw, sel, xv, ep, y.view);
  CHECK(s == Status::kOk, "status %d", int(s));
  // The same weight as weight-sparse runs (bitmap + stored values).
  const int64_t nnz = act_bitmap_values(wv);
  std::vector<uint8_t> values(size_t((nnz + kActValuePad) * dtype_size(c.wt)));
  std::vector<uint8_t> bitmap(size_t(c.in * act_bitmap_row_bytes(c.out) + 2));
  std::vector<int64_t> offsets(size_t(c.in * act_offset_slots(c.out)));
  CHECK(act_pack_bitmap(wv, bitmap.data(), offsets.data(), values.data()) == Status::kOk, "pack bitmap");
  ActWeightView bw{c.out, c.in, values.data(), c.wt, bitmap.data(), offsets.data(), nnz};
  Out yb(c.n, c.out, c.yt, c.y_transposed);
  s = act_linear_cpu(bw, sel, xv, ep, yb.view);
  CHECK(s == Status::kOk, "bitmap status %d", int(s));
  if (nnz > 0) {
    ActSelect all;
    all.threshold = -std::numeric_limits<float>::infinity();
    // Contents edited after packing: an offset past the values, or a bitmap
    // bit flipped so that a run piece no longer ends at the next offset.
    // Every active channel is checked, so with all channels active both stop the kernel.
    Out yc(c.n, c.out, c.yt, c.y_transposed);
    std::vector<int64_t> bad_offsets = offsets;
    bad_offsets[0] = nnz + 1;
    ActWeightView bo = bw;
    bo.offsets = bad_offsets.data();
    CHECK(act_linear_cpu(bo, all, xv, ep, yc.view) == Status::kInvalidIndex, "offset past the values accepted");
    std::vector<uint8_t> bad_bits = bitmap;
    bad_bits[0] ^= 0x01;
    ActWeightView bb = bw;
    bb.bitmap = bad_bits.data();
    CHECK(act_linear_cpu(bb, all, xv, ep, yc.view) == Status::kInvalidIndex, "flipped bitmap bit accepted");
  }
  std::vector<double> ref(size_t(c.n * c.out), 0.0);
  for (int64_t r = 0; r < c.n; ++r)
    for (int64_t o = 0; o < c.out; ++o) {
      double acc = c.with_bias ? bias[size_t(o)] : 0.0;
      for (int64_t j = 0; j < c.in; ++j) {
        const double xj = x[size_t(r * c.in + j)];
        const double score = std::fabs(xj) * (c.with_scale ? scale[size_t(j)] : 1.0);
        if ((score > threshold) != c.complement) acc += xj * w[size_t(o * c.in + j)];
      }
      ref[size_t(r * c.out + o)] = acc;
    }
  const int bad_bitmap = compare(ref, yb, c.n, c.out);
  CHECK(bad_bitmap == 0, "weight-sparse runs: %d wrong of %lldx%lld (out %lld in %lld)", bad_bitmap, (long long)c.n,
        (long long)c.out, (long long)c.out, (long long)c.in);
  const int bad = compare(ref, y, c.n, c.out);
  CHECK(bad == 0, "%d wrong of %lldx%lld (out %lld in %lld, dtypes %d/%d/%d, same_rows %d scale %d comp %d)", bad,
        (long long)c.n, (long long)c.out, (long long)c.out, (long long)c.in, int(c.wt), int(c.xt), int(c.yt),
        int(c.same_rows), int(c.with_scale), int(c.complement));
}

void test_all_cases(std::mt19937& rng) {
  const int64_t shapes[][3] = {{1, 1, 1},   {31, 7, 1},   {33, 300, 2},  {70, 257, 3},
                               {64, 600, 5}, {2100, 40, 2}, {37, 513, 8}, {96, 64, 16},
                               {2100, 70, 41}};  // many rows: narrower passes, chunked channels
  const DType types[] = {DType::kFloat32, DType::kBFloat16, DType::kFloat16};
  int i = 0;
  for (const auto& sh : shapes)
    for (DType wt : types)
      for (bool same : {false, true}) {
        Case c{sh[0], sh[1], sh[2], wt, types[(i + 1) % 3], types[(i + 2) % 3], same,
               i % 2 == 0, i % 3 == 0, i % 4 != 1, i % 5 == 2, i % 3 == 1};
        ++i;
        run_case(c, rng);
        c.xt = c.yt = wt;  // the common case: everything in the weight's dtype
        run_case(c, rng);
      }
}

void test_bad_input() {
  std::vector<float> w(4 * 3, 1.f), x(2 * 3, 1.f), y(2 * 4, 0.f), packed(size_t(act_packed_elements(4, 3)));
  MatrixView wv{w.data(), 4, 3, 3, 1, DType::kFloat32};
  CHECK(act_pack_weight(wv, packed.data()) == Status::kOk, "pack");
  ActWeightView aw{4, 3, packed.data(), DType::kFloat32};
  MatrixView xv{x.data(), 2, 3, 3, 1, DType::kFloat32};
  MatrixView yv{y.data(), 2, 4, 4, 1, DType::kFloat32};
  ActSelect sel;
  sel.threshold = 0.5f;
  // The NaN rule: a row of x holding NaN or Inf gives a NaN row of y; the other rows are untouched.
  for (float bad : {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity()}) {
    x[4] = bad;
    CHECK(act_linear_cpu(aw, sel, xv, Epilogue{}, yv) == Status::kOk, "non-finite input is computed");
    for (int o = 0; o < 4; ++o) {
      CHECK(std::isnan(y[size_t(4 + o)]), "output %d of the poisoned row is not NaN", o);
      CHECK(y[size_t(o)] == 3.f, "output %d of the clean row is %g", o, double(y[size_t(o)]));
    }
  }
  x[4] = 1.f;
  sel.threshold = std::numeric_limits<float>::quiet_NaN();
  CHECK(act_linear_cpu(aw, sel, xv, Epilogue{}, yv) == Status::kInvalidArgument, "NaN threshold");
  sel.threshold = 0.5f;
  std::vector<float> scale(3, 1.f);
  scale[1] = -1.f;
  sel.scale = scale.data();
  CHECK(act_linear_cpu(aw, sel, xv, Epilogue{}, yv) == Status::kInvalidArgument, "negative scale");
  sel.scale = nullptr;
  MatrixView short_x = xv;
  short_x.cols = 2;
  CHECK(act_linear_cpu(aw, sel, short_x, Epilogue{}, yv) == Status::kInvalidArgument, "wrong in_features");
  MatrixView wrong_y = yv;
  wrong_y.cols = 3;
  CHECK(act_linear_cpu(aw, sel, xv, Epilogue{}, wrong_y) == Status::kInvalidArgument, "wrong out_features");
  ActWeightView null_w = aw;
  null_w.values = nullptr;
  CHECK(act_linear_cpu(null_w, sel, xv, Epilogue{}, yv) == Status::kInvalidArgument, "null weight");
  MatrixView empty_x = xv, empty_y = yv;
  empty_x.rows = empty_y.rows = 0;
  CHECK(act_linear_cpu(aw, sel, empty_x, Epilogue{}, empty_y) == Status::kOk, "no rows");
}

// The CUDA grid covers every (row, tile, channel) exactly once.
void test_cuda_grid() {
  for (int64_t out : {1, 32, 33, 4096, 11008})
    for (int64_t in : {1, 255, 256, 257, 4096}) {
      const ActCudaGrid g = act_cuda_grid(out, in, 3);
      CHECK(g.tile_blocks * kActCudaWarps >= act_tiles(out) && (g.tile_blocks - 1) * kActCudaWarps < act_tiles(out),
            "tiles of out %lld", (long long)out);
      CHECK(g.chunks * kActCudaChunk >= in && (g.chunks - 1) * kActCudaChunk < in, "chunks of in %lld", (long long)in);
      CHECK(g.rows == 3, "rows");
    }
  CHECK(act_selected(2.f, 1.f, 1.5f, false) && !act_selected(1.f, 1.f, 1.5f, false), "threshold");
  CHECK(act_selected(std::nanf(""), 1.f, 1.5f, false), "NaN is active");
  CHECK(act_selected(std::numeric_limits<float>::infinity(), 0.f, 1.5f, false), "Inf with zero scale is active");
  CHECK(act_selected(1.f, 1.f, 1.5f, true) && !act_selected(2.f, 1.f, 1.5f, true), "complement");
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  const int paths = on_every_isa([&](CpuIsa) { test_all_cases(rng); });
  CHECK(paths >= 2, "at least scalar and one SIMD path must run, ran %d", paths);
  test_bad_input();
  test_cuda_grid();
  return finish("test_act_cpu");
}
