// 2:4 sparse x dense on sparse tensor cores: mma.sp::ordered_metadata
// m16n8k32 (bf16 / fp16 in, fp32 accumulate), sm_80 and later (sm_90a runs
// the same instruction). Two kernels:
//  - tiled (nm24_tiles.h): a block stages 64 rows of A, their metadata and
//    64 columns of B into shared memory with cp.async, three stages in
//    flight, and four warps read their fragments from there. For many
//    columns of B, where reuse decides the speed.
//  - direct: a block owns a 16-row tile of A and 32 columns of B, its four
//    warps split k (Nm24Config) and load their registers straight from
//    global memory (32-bit loads; A rows and B columns are k-contiguous).
//    For few columns (decode), where A is read once either way, and for
//    shapes or alignments the tiled kernel does not take.
// All addressing comes from nm24_fragments.h / nm24_tiles.h, the functions
// the CPU tests run against an emulation of the instruction.
#include <cuda_runtime.h>

#include "../common/device.cuh"
#include "../common/mma_sync.cuh"
#include "nm24_fragments.h"
#include "nm24_tiles.h"
#include "sparsecore/dtypes.h"
#include "sparsecore/nm.h"

namespace sparsecore::cuda::nm24 {
namespace {

using Cfg = Nm24Config;

struct Args {
  Nm24View a;
  const uint16_t* b;  // element (k, n) at b[n * b_col_stride + k]
  int64_t b_col_stride;
  int64_t n;
  MatrixView c;
  const void* bias;
  DType bias_dtype;
};

template <bool kBf16>
__device__ __forceinline__ void mma_sp(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[4], uint32_t e) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
  if constexpr (kBf16) {
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.bf16.bf16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  } else {
    asm volatile(
        "mma.sp::ordered_metadata.sync.aligned.m16n8k32.row.col.f32.f16.f16.f32 "
        "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9, %10, %11}, {%0, %1, %2, %3}, %12, 0x0;\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]), "r"(b[2]), "r"(b[3]), "r"(e));
  }
#endif
}

// One output of C, bias added; outputs past the matrix are dropped.
__device__ __forceinline__ void store_output(const Args& args, int64_t m, int64_t n, float v) {
  if (m >= args.a.rows || n >= args.n) return;
  const float bias = args.bias ? load_as_float(args.bias, m, args.bias_dtype) : 0.f;
  store_from_float(args.c.data, m * args.c.row_stride + n * args.c.col_stride, args.c.dtype, v + bias);
}

template <bool kBf16>
__global__ void __launch_bounds__(Cfg::kThreads) nm24_kernel(Args args) {
  // Partial sums of warps 1.. for warp 0, lane-minor (conflict-free).
  __shared__ float partial[Cfg::kWarps - 1][Cfg::kNTiles][4][32];
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t tm = blockIdx.x;
  const int64_t n0 = int64_t(blockIdx.y) * Cfg::kBlockCols;
  const int64_t k_tiles = args.a.cols / kTileK;
  const int64_t row_words = args.a.cols / 4;  // 32-bit words (2 values) per row of A
  const uint32_t* vals = static_cast<const uint32_t*>(args.a.values);
  float acc[Cfg::kNTiles][4];
#pragma unroll
  for (auto& t : acc)
    for (float& v : t) v = 0.f;
  // Unrolled so a warp has several k tiles' loads in flight (decode is
  // bound by how many bytes are requested at once, not by the mma).
#pragma unroll 4
  for (int64_t tk = first_k_tile(warp); tk < k_tiles; tk += kKTileStep) {
    uint32_t a[4];
#pragma unroll
    for (int r = 0; r < 4; ++r) {
      const Coord e = a_fragment(lane, r, 0);
      a[r] = __ldg(vals + (tm * kTileM + e.row) * row_words + (tk * (kTileK / 2) + e.col) / 2);
    }
    const uint32_t meta = holds_metadata(lane) ? __ldg(args.a.metadata + metadata_index(tm, tk, k_tiles, lane)) : 0u;
#pragma unroll
    for (int nt = 0; nt < Cfg::kNTiles; ++nt) {
      uint32_t b[4];
#pragma unroll
      for (int r = 0; r < 4; ++r) {
        const Coord e = b_fragment(lane, r, 0);
        const int64_t n = n0 + nt * kTileN + e.col;
        b[r] = n < args.n ? __ldg(reinterpret_cast<const uint32_t*>(args.b + n * args.b_col_stride + tk * kTileK + e.row))
                          : 0u;
      }
      mma_sp<kBf16>(acc[nt], a, b, meta);
    }
  }
  if (warp > 0) {
#pragma unroll
    for (int nt = 0; nt < Cfg::kNTiles; ++nt)
#pragma unroll
      for (int i = 0; i < 4; ++i) partial[warp - 1][nt][i][lane] = acc[nt][i];
  }
  __syncthreads();
  if (warp > 0) return;
#pragma unroll
  for (int nt = 0; nt < Cfg::kNTiles; ++nt)
#pragma unroll
    for (int i = 0; i < 4; ++i) {
      float sum = acc[nt][i];
#pragma unroll
      for (int w = 0; w < Cfg::kWarps - 1; ++w) sum += partial[w][nt][i][lane];
      const Coord e = c_fragment(lane, i);
      store_output(args, tm * kTileM + e.row, n0 + nt * kTileN + e.col, sum);
    }
}

__device__ __forceinline__ void load_stage(const Args& args, const TileProblem& p, uint32_t* stage, int64_t kt,
                                           int tid) {
  const uint16_t* a_vals = static_cast<const uint16_t*>(args.a.values);
#pragma unroll
  for (int i = 0; i < TileCfg::kAChunksPerThread; ++i) {
    const ChunkCopy c = a_chunk(p, blockIdx.x, kt, tid, i);
    cp_async16(stage + c.smem_word, c.valid ? a_vals + c.src : a_vals, c.valid);
  }
#pragma unroll
  for (int i = 0; i < TileCfg::kBChunksPerThread; ++i) {
    const ChunkCopy c = b_chunk(p, blockIdx.y, kt, tid, i);
    cp_async16(stage + c.smem_word, c.valid ? args.b + c.src : args.b, c.valid);
  }
  if (tid < TileCfg::kMetaChunks) {
    const ChunkCopy c = meta_chunk(p, blockIdx.x, kt, tid);
    cp_async16(stage + c.smem_word, c.valid ? args.a.metadata + c.src : args.a.metadata, c.valid);
  }
}

// The usual multistage loop: stages 0 .. S-2 are requested up front; at
// stage kt the thread waits until its copies of kt have landed (at most S-2
// younger groups pending), the barrier makes everyone's copies visible and
// guarantees every warp is done with stage kt-1, whose buffer then receives
// stage kt+S-1 while the warps multiply stage kt.
template <bool kBf16>
__global__ void __launch_bounds__(TileCfg::kThreads) nm24_tiled_kernel(Args args) {
  __shared__ __align__(16) uint32_t smem[TileCfg::kStages * TileCfg::kStageWords];
  const int tid = threadIdx.x, warp = tid / 32, lane = tid % 32;
  const TileProblem p{args.a.rows, args.a.cols, args.n, args.b_col_stride};
  const int64_t stages = k_stages(p);
  #pragma unroll
  for (int s = 0; s < TileCfg::kStages - 1; ++s) {
    if (s < stages) load_stage(args, p, smem + s * TileCfg::kStageWords, s, tid);
    cp_async_commit();
  }
  float acc[TileCfg::kWarpTilesM][TileCfg::kWarpTilesN][4];
  #pragma unroll
  for (auto& row : acc)
    #pragma unroll
    for (auto& t : row)
      for (float& v : t) v = 0.f;
  for (int64_t kt = 0; kt < stages; ++kt) {
    cp_async_wait<TileCfg::kStages - 2>();
    __syncthreads();
    const int64_t next = kt + TileCfg::kStages - 1;
    if (next < stages) load_stage(args, p, smem + (next % TileCfg::kStages) * TileCfg::kStageWords, next, tid);
    cp_async_commit();
    const uint32_t* stage = smem + (kt % TileCfg::kStages) * TileCfg::kStageWords;
    #pragma unroll
    for (int s = 0; s < TileCfg::kKSteps; ++s) {
      uint32_t a[TileCfg::kWarpTilesM][4], meta[TileCfg::kWarpTilesM];
      #pragma unroll
      for (int i = 0; i < TileCfg::kWarpTilesM; ++i) {
        #pragma unroll
        for (int r = 0; r < 4; ++r) a[i][r] = stage[a_smem_word(warp, i, s, lane, r)];
        meta[i] = holds_metadata(lane) ? stage[meta_smem_word(warp, i, s, lane)] : 0u;
      }
      #pragma unroll
      for (int j = 0; j < TileCfg::kWarpTilesN; ++j) {
        uint32_t b[4];
        #pragma unroll
        for (int r = 0; r < 4; ++r) b[r] = stage[b_smem_word(warp, j, s, lane, r)];
        #pragma unroll
        for (int i = 0; i < TileCfg::kWarpTilesM; ++i) mma_sp<kBf16>(acc[i][j], a[i], b, meta[i]);
      }
    }
  }
  cp_async_wait<0>();  // no copy may outlive the block (the trailing groups are empty)
  #pragma unroll
  for (int i = 0; i < TileCfg::kWarpTilesM; ++i)
    #pragma unroll
    for (int j = 0; j < TileCfg::kWarpTilesN; ++j)
      #pragma unroll
      for (int e = 0; e < 4; ++e) {
        const Out2 o = tile_output(blockIdx.x, blockIdx.y, warp, i, j, lane, e);
        store_output(args, o.m, o.n, acc[i][j][e]);
      }
}

// The tiled kernel's requirements: whole stages along k, 16-byte aligned
// chunks of A's values, its metadata and every column of B.
bool tiled_fits(const Nm24View& a, const MatrixView& b) {
  const auto aligned16 = [](const void* ptr) { return reinterpret_cast<uintptr_t>(ptr) % 16 == 0; };
  return a.cols % TileCfg::kBlockK == 0 && aligned16(a.values) && aligned16(a.metadata) && aligned16(b.data) &&
         (b.cols == 1 || b.col_stride % 8 == 0);
}

}  // namespace
}  // namespace sparsecore::cuda::nm24

namespace sparsecore {

Status nm24_spmm_cuda(const Nm24View& a, const MatrixView& b, const Epilogue& ep, const MatrixView& c, void* stream) {
  using namespace cuda::nm24;
  if (a.rows < 0 || a.cols < 0 || a.rows % kTileM || a.cols % kTileK) return Status::kInvalidArgument;
  if (a.value_dtype == DType::kFloat32 || b.dtype != a.value_dtype || c.dtype != b.dtype) return Status::kInvalidArgument;
  if (b.rows != a.cols || c.rows != a.rows || c.cols != b.cols) return Status::kInvalidArgument;
  if (b.row_stride != 1 || (b.cols > 1 && b.col_stride % 2) || reinterpret_cast<uintptr_t>(b.data) % 4)
    return Status::kInvalidArgument;
  if (c.rows == 0 || c.cols == 0) return Status::kOk;
  if (a.cols == 0) return Status::kInvalidArgument;  // nothing to multiply but outputs to write: caller's job
  if (Status st = cuda::check_current_device(); st != Status::kOk) return st;
  Args args{a, static_cast<const uint16_t*>(b.data), b.cols > 1 ? b.col_stride : 0, b.cols, c, ep.bias, ep.bias_dtype};
  auto s = static_cast<cudaStream_t>(stream);
  const bool bf16 = a.value_dtype == DType::kBFloat16;
  if (b.cols > kNm24DirectMaxCols && tiled_fits(a, b)) {
    const TileProblem p{a.rows, a.cols, b.cols, args.b_col_stride};
    const int64_t gx = tile_grid_x(p), gy = tile_grid_y(p);
    if (gx > 2147483647 || gy > 65535) return Status::kUnsupported;
    const dim3 grid{unsigned(gx), unsigned(gy)};
    if (bf16) nm24_tiled_kernel<true><<<grid, TileCfg::kThreads, 0, s>>>(args);
    else nm24_tiled_kernel<false><<<grid, TileCfg::kThreads, 0, s>>>(args);
  } else {
    const int64_t gx = grid_x(a.rows), gy = grid_y(b.cols);
    if (gx > 2147483647 || gy > 65535) return Status::kUnsupported;
    const dim3 grid{unsigned(gx), unsigned(gy)};
    if (bf16) nm24_kernel<true><<<grid, Nm24Config::kThreads, 0, s>>>(args);
    else nm24_kernel<false><<<grid, Nm24Config::kThreads, 0, s>>>(args);
  }
  if (Status st = cuda::cuda_status(cudaGetLastError(), "nm24_spmm launch"); st != Status::kOk) return st;
  return cuda::poison_nonfinite_columns(b, c, s);
}

}  // namespace sparsecore
