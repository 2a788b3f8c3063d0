// Weight-sparse runs -> dense W^T. At prompt lengths where torch's dense GEMM
// beats the activation-sparse kernel, an ActSparseLinear over a pruned weight
// writes W^T densely for that call (the layer keeps only the runs); values are
// copied bit for bit. Every offset and value index is checked against the
// arrays, so a corrupted bitmap or offset table returns kInvalidIndex.
#include <atomic>
#include <cstring>

#include "../thread_pool.h"
#include "sparsecore/act.h"
#include "sparsecore/act_layout.h"

namespace sparsecore {
namespace {

// Walks the bitmap a 32-bit word at a time (rows are padded to whole tiles of
// 32 outputs) and visits only the set bits: a bit-by-bit loop mispredicts on
// every other channel of a 50% sparse weight and ran ~20x slower than this.
template <typename Elem>
bool unpack_runs(const ActWeightView& w, const MatrixView& wt, int64_t j0, int64_t j1) {
  static_assert(kActOffsetStride % 32 == 0 && kActTile % 32 == 0, "bitmap words must not straddle an offset slot");
  const auto* values = static_cast<const Elem*>(w.values);
  const int64_t row_bytes = act_bitmap_row_bytes(w.out), slots = act_offset_slots(w.out);
  const int64_t words = (w.out + 31) / 32;
  for (int64_t j = j0; j < j1; ++j) {
    Elem* out = static_cast<Elem*>(wt.data) + j * wt.row_stride;
    std::memset(out, 0, size_t(w.out) * sizeof(Elem));
    const uint8_t* bits = w.bitmap + j * row_bytes;
    int64_t p = 0;
    for (int64_t k = 0; k < words; ++k) {
      const int64_t o0 = k * 32;
      if (o0 % kActOffsetStride == 0) {
        p = w.offsets[j * slots + o0 / kActOffsetStride];
        if (p < 0 || p > w.value_count) return false;
      }
      uint32_t word;
      std::memcpy(&word, bits + k * 4, 4);
      // Bits past `out` (the row's padding) are outputs that do not exist.
      const int64_t live = w.out - o0 < 32 ? w.out - o0 : 32;
      if (live < 32) word &= (1u << live) - 1u;
      if (p + __builtin_popcount(word) > w.value_count) return false;
      // Set bits in ascending order meet their values in storage order.
      while (word) {
        out[o0 + __builtin_ctz(word)] = values[p++];
        word &= word - 1;
      }
    }
  }
  return true;
}

}  // namespace

Status act_unpack_bitmap(const ActWeightView& w, const MatrixView& wt) {
  if (w.out < 0 || w.in < 0 || w.value_count < 0) return Status::kInvalidArgument;
  if (wt.rows != w.in || wt.cols != w.out || wt.dtype != w.value_dtype || wt.col_stride != 1 || wt.row_stride < w.out)
    return Status::kInvalidArgument;
  if (w.in == 0 || w.out == 0) return Status::kOk;
  if (w.bitmap == nullptr || w.offsets == nullptr || wt.data == nullptr || (w.value_count > 0 && w.values == nullptr))
    return Status::kInvalidArgument;
  // Channels in tasks of about 64 KiB of output each.
  const int64_t row_bytes = w.out * dtype_size(w.value_dtype);
  const int64_t per_task = row_bytes >= 65536 ? 1 : 65536 / row_bytes;
  const int64_t tasks = (w.in + per_task - 1) / per_task;
  std::atomic<bool> bad{false};
  const Status s = cpu::parallel_for(tasks, [&](int64_t t) {
    const int64_t j0 = t * per_task, j1 = j0 + per_task < w.in ? j0 + per_task : w.in;
    const bool ok = dtype_size(w.value_dtype) == 4 ? unpack_runs<uint32_t>(w, wt, j0, j1)
                                                   : unpack_runs<uint16_t>(w, wt, j0, j1);
    if (!ok) bad.store(true);
  });
  if (s != Status::kOk) return s;
  return bad.load() ? Status::kInvalidIndex : Status::kOk;
}

}  // namespace sparsecore
