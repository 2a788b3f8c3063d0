// CPU entry points for the activation-sparse linear: argument checks, the
// fused thresholding of x into channel lists, the choice between per-row and
// union lists, ISA dispatch and threading. Baseline TU (no -m flags).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../common/dense_pack.h"
#include "../common/isa_pick.h"
#include "../common/run_parts.h"
#include "../thread_pool.h"
#include "act_isa.h"
#include "sparsecore/act.h"

namespace sparsecore {
namespace {

// x as fp32 plus the selection of every (row, channel), and the rows that
// hold NaN or Inf (poisoned[r]): those rows select nothing here, and their
// outputs become NaN after the kernel (the rule of every sparsecore matmul).
void select_rows(const MatrixView& x, const ActSelect& sel, std::vector<float>* xs, std::vector<uint8_t>* on,
                 std::vector<uint8_t>* poisoned) {
  const int64_t n = x.rows, in = x.cols;
  xs->resize(size_t(n * in));
  on->resize(size_t(n * in));
  poisoned->assign(size_t(n), 0);
  for (int64_t r = 0; r < n; ++r) {
    float* xr = xs->data() + r * in;
    uint8_t* sr = on->data() + r * in;
    const int64_t base = r * x.row_stride;
    bool finite = true;
    for (int64_t j = 0; j < in; ++j) {
      const float v = load_as_float(x.data, base + j * x.col_stride, x.dtype);
      finite &= std::isfinite(v);
      xr[j] = v;
      sr[j] = act_selected(v, sel.scale ? sel.scale[j] : 1.f, sel.threshold, sel.complement);
    }
    if (!finite) {
      (*poisoned)[size_t(r)] = 1;
      for (int64_t j = 0; j < in; ++j) sr[j] = 0;
    }
  }
}

// Channel lists for groups of R rows (see cpu::ActGroups), padded with
// kActPrefetchAhead readable entries at the end.
struct Lists {
  std::vector<int64_t> group_ptr;
  std::vector<int32_t> idx;
  std::vector<float> vals;
};

void build_lists(const std::vector<float>& xs, const std::vector<uint8_t>& on, int64_t n, int64_t in, int rows_per,
                 Lists* out) {
  const int64_t groups = (n + rows_per - 1) / rows_per;
  out->group_ptr.assign(1, 0);
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = g * rows_per, r1 = std::min<int64_t>(n, r0 + rows_per);
    for (int64_t j = 0; j < in; ++j) {
      bool any = false;
      for (int64_t r = r0; r < r1; ++r) any |= on[size_t(r * in + j)] != 0;
      if (!any) continue;
      out->idx.push_back(int32_t(j));
      for (int64_t r = r0; r < r0 + rows_per; ++r)
        out->vals.push_back(r < r1 && on[size_t(r * in + j)] ? xs[size_t(r * in + j)] : 0.f);
    }
    out->group_ptr.push_back(int64_t(out->idx.size()));
  }
  for (int k = 0; k < cpu::kActPrefetchAhead; ++k) out->idx.push_back(0);
}

// Selected channels of each group of `rows_per` rows, summed over groups.
int64_t union_count(const std::vector<uint8_t>& on, int64_t n, int64_t in, int rows_per) {
  int64_t total = 0;
  for (int64_t r0 = 0; r0 < n; r0 += rows_per) {
    const int64_t r1 = std::min<int64_t>(n, r0 + rows_per);
    for (int64_t j = 0; j < in; ++j) {
      bool any = false;
      for (int64_t r = r0; r < r1; ++r) any |= on[size_t(r * in + j)] != 0;
      total += any;
    }
  }
  return total;
}

// Per pass over a vector of outputs, a listed channel costs decoding its
// weight vector once plus, per row of its list, a third of a load-FMA-store
// of the partial sums (four channels share one). Per-row lists pay the
// decode once per row, union lists once per group but for the union of the
// group's channels. Decoding a bf16/fp16 vector costs about two ops, fp32
// about half of one.
int rows_per_group(const std::vector<uint8_t>& on, int64_t n, int64_t in, DType wt) {
  if (n < 2) return 1;
  const double decode = wt == DType::kFloat32 ? 0.5 : 2.0;
  const int64_t per_row = std::count(on.begin(), on.end(), uint8_t(1));
  const int64_t unions = union_count(on, n, in, cpu::kActUnionRows);
  const int64_t padded_groups = (n + cpu::kActUnionRows - 1) / cpu::kActUnionRows;
  const double rows_cost = double(per_row) * (decode + 1.5);
  const double union_cost = double(unions) * (decode + 1.5 * cpu::kActUnionRows) + double(padded_groups);
  return union_cost < rows_cost ? cpu::kActUnionRows : 1;
}

bool scale_ok(const ActSelect& sel, int64_t in) {
  if (std::isnan(sel.threshold)) return false;
  if (!sel.scale) return true;
  for (int64_t j = 0; j < in; ++j)
    if (!(sel.scale[j] >= 0.f) || !std::isfinite(sel.scale[j])) return false;
  return true;
}

}  // namespace

Status act_pack_weight(const MatrixView& w, void* packed) {
  if (!cpu::matrix_view_ok(w)) return Status::kInvalidArgument;
  const int64_t out = w.rows, in = w.cols;
  if (out == 0 || in == 0) return Status::kOk;
  if (packed == nullptr) return Status::kInvalidArgument;
  const int size = dtype_size(w.dtype);
  const auto* src = static_cast<const uint8_t*>(w.data);
  auto* dst = static_cast<uint8_t*>(packed);
  memset(dst, 0, size_t(act_packed_elements(out, in) * size));
  // Channel by channel (rows of the packed weight), a block of output rows at
  // a time so that the source rows being read stay in cache.
  const int64_t padded = act_out_padded(out);
  constexpr int64_t kRowBlock = 64;
  for (int64_t o0 = 0; o0 < out; o0 += kRowBlock) {
    const int64_t o1 = std::min<int64_t>(out, o0 + kRowBlock);
    for (int64_t j = 0; j < in; ++j)
      for (int64_t o = o0; o < o1; ++o)
        memcpy(dst + (j * padded + o) * size, src + (o * w.row_stride + j * w.col_stride) * size, size_t(size));
  }
  return Status::kOk;
}

int64_t act_bitmap_values(const MatrixView& w) {
  if (!cpu::matrix_view_ok(w)) return 0;
  int64_t count = 0;
  for (int64_t o = 0; o < w.rows; ++o)
    for (int64_t j = 0; j < w.cols; ++j) count += load_as_float(w.data, o * w.row_stride + j * w.col_stride, w.dtype) != 0.f;
  return count;
}

Status act_pack_bitmap(const MatrixView& w, uint8_t* bitmap, int64_t* offsets, void* values) {
  if (!cpu::matrix_view_ok(w)) return Status::kInvalidArgument;
  const int64_t out = w.rows, in = w.cols;
  if (in == 0) return Status::kOk;
  if (bitmap == nullptr || offsets == nullptr || values == nullptr) return Status::kInvalidArgument;
  const int size = dtype_size(w.dtype);
  const int64_t row_bytes = act_bitmap_row_bytes(out), slots = act_offset_slots(out);
  const auto* src = static_cast<const uint8_t*>(w.data);
  auto* dst = static_cast<uint8_t*>(values);
  memset(bitmap, 0, size_t(in * row_bytes + 2));
  int64_t count = 0;
  // Run by run (input channel by input channel), outputs in order.
  for (int64_t j = 0; j < in; ++j)
    for (int64_t o = 0; o < act_out_padded(out); ++o) {
      if (o % kActOffsetStride == 0) offsets[j * slots + o / kActOffsetStride] = count;
      if (o >= out) continue;
      const int64_t at = o * w.row_stride + j * w.col_stride;
      if (load_as_float(w.data, at, w.dtype) == 0.f) continue;
      set_bit(bitmap + j * row_bytes, o);
      memcpy(dst + count * size, src + at * size, size_t(size));
      ++count;
    }
  memset(dst + count * size, 0, size_t(kActValuePad * size));
  return Status::kOk;
}

namespace {

Status act_linear_impl(const ActWeightView& w, const ActSelect& sel, const MatrixView& x, const Epilogue& ep,
                       const MatrixView& y) {
  if (!cpu::matrix_view_ok(x) || !cpu::matrix_view_ok(y) || w.out < 0 || w.in < 0) return Status::kInvalidArgument;
  if (w.bitmap != nullptr && (w.value_count < 0 || (w.value_count > 0 && w.values == nullptr)))
    return Status::kInvalidArgument;
  if (x.cols != w.in || y.rows != x.rows || y.cols != w.out) return Status::kInvalidArgument;
  if (w.bitmap == nullptr && w.out > 0 && w.in > 0 && w.values == nullptr) return Status::kInvalidArgument;
  if (w.bitmap != nullptr && w.offsets == nullptr) return Status::kInvalidArgument;
  if (w.in > INT32_MAX - kActTile) return Status::kInvalidArgument;
  if (!scale_ok(sel, w.in)) return Status::kInvalidArgument;
  if (y.rows == 0 || y.cols == 0) return Status::kOk;
  const float* bias = nullptr;
  if (Status s = cpu::convert_bias(ep, w.out, &bias); s != Status::kOk) return s;

  std::vector<float> xs;
  std::vector<uint8_t> on, poisoned;
  select_rows(x, sel, &xs, &on, &poisoned);
  const int rows_per = rows_per_group(on, x.rows, w.in, w.value_dtype);
  Lists lists;
  build_lists(xs, on, x.rows, w.in, rows_per, &lists);
  cpu::ActGroups g;
  g.rows = x.rows;
  g.group_rows = rows_per;
  g.groups = int64_t(lists.group_ptr.size()) - 1;
  g.group_ptr = lists.group_ptr.data();
  g.idx = lists.idx.data();
  g.vals = lists.vals.data();

  using OutputsFn = bool (*)(const ActWeightView&, const cpu::ActGroups&, const float*, const MatrixView&, int64_t,
                             int64_t);
  const OutputsFn fn = cpu::pick<OutputsFn>(&cpu::scalar::act_outputs, SC_AVX2(act_outputs), SC_AVX512(act_outputs),
                                            SC_SIMDE(act_outputs));
  const int64_t padded = act_out_padded(w.out);
  const int64_t work = (int64_t(lists.idx.size()) * rows_per + 1) * padded;
  // Every output costs about the same (same lists): an even split in units of
  // kActOffsetStride outputs (where weight-sparse runs have value offsets),
  // one part per thread: long parts keep each run's piece long and sequential.
  const bool parallel = work >= 2 * cpu::kMinParallelWork;
  const int64_t units = (padded + kActOffsetStride - 1) / kActOffsetStride;
  const int64_t parts = parallel ? std::max<int64_t>(1, std::min<int64_t>(units, cpu_num_threads())) : 1;
  if (Status s = cpu::run_parts(parts, parallel, [&](int64_t i) {
        return fn(w, g, bias, y, units * i / parts * kActOffsetStride,
                  std::min<int64_t>(padded, units * (i + 1) / parts * kActOffsetStride));
      });
      s != Status::kOk)
    return s;
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t r = 0; r < y.rows; ++r)
    if (poisoned[size_t(r)])
      for (int64_t o = 0; o < y.cols; ++o) store_from_float(y.data, r * y.row_stride + o * y.col_stride, y.dtype, nan);
  return Status::kOk;
}

}  // namespace

Status act_linear_cpu(const ActWeightView& w, const ActSelect& sel, const MatrixView& x, const Epilogue& ep,
                      const MatrixView& y) {
  return cpu::guarded([&] { return act_linear_impl(w, sel, x, ep, y); });
}

}  // namespace sparsecore
