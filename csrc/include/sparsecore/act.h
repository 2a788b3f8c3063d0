// Activation-sparse linear: y = (x * m) @ W.T (+ bias[o]), with m the
// channels act_selected (act_layout.h) picks in each row of x. The
// thresholding runs inside the call: x is read once, the weight only at
// active channels. A row of x holding NaN or Inf gives a NaN row of y.
#pragma once
#include <cstdint>

#include "sparsecore/act_layout.h"
#include "sparsecore/core.h"

namespace sparsecore {

// The weight W (out x in) packed as one run per input channel (act_layout.h),
// in its value dtype.
//
// With bitmap set the weight is also weight-sparse (pruned): run j keeps only
// its nonzeros, in output order, flagged by bitmap row j (act_bitmap_row_bytes
// bytes, bit o = W[o, j] stored), and offsets[j * act_offset_slots(out) + s]
// is where in values the stored entries of outputs >= s * kActOffsetStride of
// run j begin. Both sparsities then cut the bytes read: an active channel
// costs 1 bit per output plus its stored values. value_count is the number of
// stored values (values holds kActValuePad more): the kernel checks every
// offset it uses against it, and every run piece it reads against the next
// offset (kInvalidIndex when they disagree).
struct ActWeightView {
  int64_t out = 0;
  int64_t in = 0;
  const void* values = nullptr;
  DType value_dtype = DType::kFloat32;
  const uint8_t* bitmap = nullptr;
  const int64_t* offsets = nullptr;
  int64_t value_count = 0;
};

// Which input channels take part (act_selected): per call, not per weight, so
// one packed weight serves any threshold. scale is null or has `in` floats.
struct ActSelect {
  float threshold = 0.f;
  const float* scale = nullptr;
  bool complement = false;
};

// x is N x in, any strides, any value dtype; y is N x out, any strides.
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
// The inverse: W^T (in x out, the values' dtype, unit column stride) from the
// runs of w (bitmap, offsets, values, value_count); values copied bit for bit.
// Offsets or bits that point outside the values return kInvalidIndex.
Status act_unpack_bitmap(const ActWeightView& w, const MatrixView& wt);
// The same product on the GPU (device pointers; scale, if any, on the device;
// dense packed runs only). Launches on the current device. Results may differ
// between runs in the last bits (partial sums of channel chunks are added
// with atomics).
Status act_linear_cuda(const ActWeightView& w, const ActSelect& sel, const MatrixView& x, const Epilogue& ep,
                       const MatrixView& y, void* stream);

}  // namespace sparsecore
