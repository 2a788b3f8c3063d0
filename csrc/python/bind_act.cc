// Bindings of the activation-sparse family (sparsecore/act.h).
#include "bind_common.h"
#include "sparsecore/act.h"
#include "sparsecore/memory.h"

namespace sparsecore::bind {
namespace {

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

ActWeightView make_weight(int64_t out, int64_t in, uintptr_t values, int value_dtype, uintptr_t bitmap,
                          uintptr_t offsets, int64_t value_count, const char* what) {
  ActWeightView w;
  w.out = out;
  w.in = in;
  w.values = reinterpret_cast<const void*>(values);
  w.value_dtype = to_dtype(value_dtype, what);
  w.bitmap = reinterpret_cast<const uint8_t*>(bitmap);
  w.offsets = reinterpret_cast<const int64_t*>(offsets);
  w.value_count = value_count;
  return w;
}

void act_unpack_bitmap_py(int64_t out, int64_t in, uintptr_t values, int value_dtype, uintptr_t bitmap,
                          uintptr_t offsets, int64_t value_count, const MatrixTuple& wt_t) {
  const ActWeightView w = make_weight(out, in, values, value_dtype, bitmap, offsets, value_count, "values");
  const MatrixView wt = to_view(wt_t, "output");
  Status s;
  {
    py::gil_scoped_release release;
    s = act_unpack_bitmap(w, wt);
  }
  check_status(s, "act_unpack_runs");
}

void act_linear(int64_t out, int64_t in, uintptr_t values, int value_dtype, uintptr_t bitmap, uintptr_t offsets,
                int64_t value_count, double threshold, uintptr_t scale, bool complement, const MatrixTuple& x_t,
                uintptr_t bias, int bias_dtype, const MatrixTuple& y_t, bool on_cuda, uintptr_t stream) {
  if (out < 0 || in < 0) value_error("act_linear: negative weight size");
  if ((bitmap == 0) != (offsets == 0)) value_error("act_linear: weight-sparse runs need both bitmap and offsets");
  if (bitmap != 0 && on_cuda) value_error("act_linear: weight-sparse runs run on CPU only");
  if (bitmap == 0 && out > 0 && in > 0 && values == 0) value_error("act_linear: null packed weight");
  if (bitmap != 0 && (value_count < 0 || (value_count > 0 && values == 0)))
    value_error("act_linear: bad stored-value count");
  const ActWeightView w = make_weight(out, in, values, value_dtype, bitmap, offsets, value_count, "packed weight");
  const MatrixView x = to_view(x_t, "input");
  const MatrixView y = to_view(y_t, "output");
  if (x.cols != in)
    value_error("act_linear: input has " + std::to_string(x.cols) + " features, the weight " + std::to_string(in));
  if (y.rows != x.rows || y.cols != out) value_error("act_linear: output shape does not match");
  if (threshold != threshold) value_error("act_linear: threshold is NaN");
  ActSelect sel;
  sel.threshold = float(threshold);
  sel.scale = reinterpret_cast<const float*>(scale);
  sel.complement = complement;
  const Epilogue ep = to_epilogue(bias, bias_dtype);
  if (on_cuda) require_cuda_build();
  Status s;
  {
    py::gil_scoped_release release;
    s = on_cuda ? act_linear_cuda(w, sel, x, ep, y, reinterpret_cast<void*>(stream)) : act_linear_cpu(w, sel, x, ep, y);
  }
  check_status(s, "act_linear");
}

}  // namespace

void register_act(py::module_& m) {
  m.def("act_pack_weight", &act_pack_weight_py);
  m.def("act_linear", &act_linear);
  m.def("advise_huge_pages",
        [](uintptr_t data, int64_t bytes) { return advise_huge_pages(reinterpret_cast<void*>(data), bytes); });
  m.def("act_packed_elements", [](int64_t out, int64_t in) { return act_packed_elements(out, in); });
  m.def("act_bitmap_values", &act_bitmap_values_py);
  m.def("act_pack_bitmap", &act_pack_bitmap_py);
  m.def("act_unpack_bitmap", &act_unpack_bitmap_py);
  m.def("act_bitmap_row_bytes", [](int64_t out) { return act_bitmap_row_bytes(out); });
  m.def("act_offset_slots", [](int64_t out) { return act_offset_slots(out); });
  m.attr("ACT_VALUE_PAD") = kActValuePad;
  m.attr("ACT_TILE") = kActTile;
}

}  // namespace sparsecore::bind
