// Flash attention forward on tensor cores (sm_80+), bf16/fp16, head dims 64,
// 128 and 256: the CUDA half of sparsecore/attention.h with the same position
// rules, block lists, BLASST and NaN rule as the CPU kernel.
//
// A CUDA block is 4 warps x 16 packed q rows (the q heads of one KV head side
// by side, then positions: GQA reads each K/V tile once for the group). Q is
// staged once in shared memory; K/V tiles of 64 keys (32 at D = 256) are
// double-buffered with cp.async. Per tile a warp computes S = Q K^T with
// mma.sync m16n8k16 (fragments by ldmatrix through attn_tiles.h), masks only
// tiles its rows see partly, runs the online softmax in registers, and feeds
// P from registers into the P V mma (V fragments by ldmatrix.trans).
// Decode and other small grids split the KV range over blocks (flash-decoding)
// and merge the partial results by log-sum-exp in a second kernel.
//
// Contents are never trusted for addressing: a block index outside the matrix
// or out of order is skipped, kv_start / kv_end are clamped into [0, Lk].
#include <cuda_runtime.h>

#include "../common/device.cuh"
#include "flash_attn_kernel.cuh"
#include "sparsecore/attention.h"

namespace sparsecore::cuda::attn {
namespace {

int sm_count() {
  int device = 0, n = 0;
  cudaGetDevice(&device);
  if (cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess) {
    cudaGetLastError();
    return 1;
  }
  return n;
}

template <int D, bool kBf16>
Status launch(Params p, int64_t units, cudaStream_t stream) {
  using Cfg = FaConfig<D>;
  // The attribute belongs to the current device: set it at every launch (a driver call of
  // about a microsecond) rather than once per process.
  if (Status s = cuda_status(cudaFuncSetAttribute(fa_kernel<D, kBf16>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                                  Cfg::kSmemBytes),
                             "cudaFuncSetAttribute");
      s != Status::kOk)
    return s;
  const int64_t grid_x = (p.lq + p.ppb - 1) / p.ppb, grid_y = int64_t(p.batch) * (p.hq / p.nh);
  if (grid_x > 2147483647 || grid_y > 65535) return Status::kUnsupported;
  // Split the KV range when the grid leaves SMs idle (decode): two blocks per
  // SM, each split keeping at least 4 units (listed blocks or key tiles).
  const int64_t blocks = grid_x * grid_y, want = 2 * int64_t(sm_count());
  int64_t splits = blocks >= want ? 1 : (want + blocks - 1) / blocks;
  splits = splits > units / 4 ? units / 4 : splits;
  splits = splits < 1 ? 1 : (splits > 64 ? 64 : splits);
  p.splits = int(splits);
  char* work = nullptr;
  const int64_t rows = int64_t(p.batch) * p.hq * p.lq;
  if (splits > 1) {
    const size_t bytes = size_t(splits * rows) * (D + 2) * sizeof(float);
    if (Status s = scratch_alloc(reinterpret_cast<void**>(&work), bytes, stream); s != Status::kOk) return s;
    p.part_o = reinterpret_cast<float*>(work);
    p.part_m = p.part_o + splits * rows * D;
    p.part_l = p.part_m + splits * rows;
  }
  fa_kernel<D, kBf16><<<dim3(unsigned(grid_x), unsigned(grid_y), unsigned(splits)), Cfg::kThreads, Cfg::kSmemBytes,
                        stream>>>(p);
  Status s = cuda_status(cudaGetLastError(), "flash_attention launch");
  if (s == Status::kOk && splits > 1) {
    const int64_t total = rows * D;
    fa_merge<kBf16><<<unsigned((total + 255) / 256), 256, 0, stream>>>(p, D);
    s = cuda_status(cudaGetLastError(), "flash_attention merge launch");
  }
  if (work) cudaFreeAsync(work, stream);
  return s;
}

template <bool kBf16>
Status launch_dim(int dim, const Params& p, int64_t units, cudaStream_t stream) {
  switch (dim) {
    case 64: return launch<64, kBf16>(p, units, stream);
    case 128: return launch<128, kBf16>(p, units, stream);
    default: return launch<256, kBf16>(p, units, stream);
  }
}

bool aligned16(const void* ptr, int64_t sb, int64_t sh, int64_t sl) {
  return reinterpret_cast<uintptr_t>(ptr) % 16 == 0 && sb % 8 == 0 && sh % 8 == 0 && sl % 8 == 0;
}

}  // namespace
}  // namespace sparsecore::cuda::attn

namespace sparsecore {

Status flash_attention_cuda(const AttnTensor& q, const AttnTensor& k, const AttnTensor& v, const AttnTensor& out,
                            const AttnOptions& opt, const AttnBlockMask* mask, unsigned long long* stats,
                            void* stream) {
  using namespace cuda::attn;
  if (q.dtype != k.dtype || k.dtype != v.dtype || q.dtype != out.dtype) return Status::kInvalidArgument;
  if (q.dtype != DType::kBFloat16 && q.dtype != DType::kFloat16) return Status::kUnsupported;
  if (q.dim != 64 && q.dim != 128 && q.dim != 256) return Status::kUnsupported;
  if (k.dim != q.dim || v.dim != q.dim || out.dim != q.dim) return Status::kInvalidArgument;
  if (k.batch != q.batch || v.batch != q.batch || out.batch != q.batch || k.heads != v.heads || k.len != v.len ||
      out.heads != q.heads || out.len != q.len)
    return Status::kInvalidArgument;
  if (q.heads > 0 && (k.heads == 0 || q.heads % k.heads)) return Status::kInvalidArgument;
  if (opt.window < 0 || opt.sinks < 0 || (opt.window > 0 && !opt.causal) || (opt.causal && q.len > k.len))
    return Status::kInvalidArgument;
  if (q.batch > 2147483647 / (q.heads > 0 ? q.heads : 1) || q.len > 2147483647 || k.len > 2147483647)
    return Status::kUnsupported;
  if (q.batch == 0 || q.heads == 0 || q.len == 0) return Status::kOk;
  if (!aligned16(q.data, q.stride_b, q.stride_h, q.stride_l) || !aligned16(k.data, k.stride_b, k.stride_h, k.stride_l) ||
      !aligned16(v.data, v.stride_b, v.stride_h, v.stride_l) ||
      !aligned16(out.data, out.stride_b, out.stride_h, out.stride_l))
    return Status::kUnsupported;
  if (Status s = cuda::check_current_device(); s != Status::kOk) return s;
  Params p{};
  p.q = static_cast<const uint16_t*>(q.data), p.k = static_cast<const uint16_t*>(k.data);
  p.v = static_cast<const uint16_t*>(v.data), p.o = static_cast<uint16_t*>(out.data);
  p.q_sb = q.stride_b, p.q_sh = q.stride_h, p.q_sl = q.stride_l;
  p.k_sb = k.stride_b, p.k_sh = k.stride_h, p.k_sl = k.stride_l;
  p.v_sb = v.stride_b, p.v_sh = v.stride_h, p.v_sl = v.stride_l;
  p.o_sb = out.stride_b, p.o_sh = out.stride_h, p.o_sl = out.stride_l;
  p.batch = int(q.batch), p.hq = int(q.heads), p.hkv = int(k.heads), p.lq = int(q.len), p.lk = int(k.len);
  p.scale = opt.scale, p.softcap = opt.softcap;
  p.log2_lambda = opt.blasst_log_lambda == -__builtin_inff() ? -__builtin_inff() : opt.blasst_log_lambda * kLog2e;
  p.causal = opt.causal, p.window = opt.window, p.sinks = opt.sinks;
  p.kv_start = opt.kv_start, p.kv_end = opt.kv_end, p.lse = opt.lse, p.stats = stats;
  const int group = p.hq / p.hkv;
  constexpr int kRows = FaConfig<64>::kRows;
  int64_t units;
  if (mask) {
    if (mask->block_q <= 0 || mask->block_k <= 0 || mask->block_q % 16 || mask->block_k % 16) return Status::kInvalidArgument;
    if ((mask->batch != 1 && mask->batch != q.batch) ||
        (mask->heads != 1 && mask->heads != k.heads && mask->heads != q.heads))
      return Status::kInvalidArgument;
    if (mask->q_blocks != (q.len + mask->block_q - 1) / mask->block_q ||
        mask->k_blocks != (k.len + mask->block_k - 1) / mask->block_k || mask->row_ptr == nullptr || mask->nnz < 0 ||
        (mask->nnz > 0 && mask->col_idx == nullptr))
      return Status::kInvalidArgument;
    p.row_ptr = mask->row_ptr, p.col_idx = mask->col_idx, p.nnz = mask->nnz;
    p.block_q = mask->block_q, p.block_k = mask->block_k, p.q_blocks = mask->q_blocks, p.k_blocks = mask->k_blocks;
    p.mask_batch = int(mask->batch), p.mask_heads = int(mask->heads);
    // A list per q head cannot be shared by the group: one head per block then.
    p.nh = (mask->heads == q.heads && group > 1) || group > kRows ? 1 : group;
    p.ppb = positions_per_block(p.nh, kRows, mask->block_q);
    units = mask->k_blocks;
  } else {
    p.nh = group > kRows ? 1 : group;
    p.ppb = positions_per_block(p.nh, kRows, 0);
    units = (k.len + FaConfig<64>::kKeys - 1) / FaConfig<64>::kKeys;
  }
  auto s = static_cast<cudaStream_t>(stream);
  return q.dtype == DType::kBFloat16 ? launch_dim<true>(int(q.dim), p, units, s)
                                     : launch_dim<false>(int(q.dim), p, units, s);
}

}  // namespace sparsecore