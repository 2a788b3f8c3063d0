// 2:4 sparse x dense on sparse tensor cores: mma.sp::ordered_metadata
// m16n8k32 (bf16 / fp16 in, fp32 accumulate), sm_80 and later (sm_90a runs
// the same instruction). Each warp owns a 16-row tile of A and 32 columns of
// B (Nm24Config); every k step it loads its compressed A registers, its
// metadata word and its B registers straight from global memory (32-bit
// loads; A rows and B columns are k-contiguous) and issues 4 mma.sp. The
// addressing comes from nm24_fragments.h, the functions the CPU tests check
// against an emulation of the instruction.
#include <cuda_runtime.h>

#include "nm24_fragments.h"
#include "sparsecore/dtypes.h"
#include "sparsecore/ops.h"

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

template <bool kBf16>
__global__ void __launch_bounds__(Cfg::kThreads) nm24_kernel(Args args) {
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int64_t tm = row_tile_of(blockIdx.x, warp);
  if (tm >= args.a.rows / kTileM) return;  // no block-wide sync below
  const int64_t n0 = int64_t(blockIdx.y) * Cfg::kBlockCols;
  const int64_t k_tiles = args.a.cols / kTileK;
  const int64_t row_words = args.a.cols / 4;  // 32-bit words (2 values) per row of A
  const uint32_t* vals = static_cast<const uint32_t*>(args.a.values);
  float acc[Cfg::kNTiles][4];
  for (auto& t : acc)
    for (float& v : t) v = 0.f;
  for (int64_t tk = 0; tk < k_tiles; ++tk) {
    uint32_t a[4];
    for (int r = 0; r < 4; ++r) {
      const Coord e = a_fragment(lane, r, 0);
      a[r] = __ldg(vals + (tm * kTileM + e.row) * row_words + (tk * (kTileK / 2) + e.col) / 2);
    }
    const uint32_t meta = holds_metadata(lane) ? __ldg(args.a.metadata + metadata_index(tm, tk, k_tiles, lane)) : 0u;
    for (int nt = 0; nt < Cfg::kNTiles; ++nt) {
      uint32_t b[4];
      for (int r = 0; r < 4; ++r) {
        const Coord e = b_fragment(lane, r, 0);
        const int64_t n = n0 + nt * kTileN + e.col;
        b[r] = n < args.n ? __ldg(reinterpret_cast<const uint32_t*>(args.b + n * args.b_col_stride + tk * kTileK + e.row))
                          : 0u;
      }
      mma_sp<kBf16>(acc[nt], a, b, meta);
    }
  }
  for (int nt = 0; nt < Cfg::kNTiles; ++nt)
    for (int i = 0; i < 4; ++i) {
      const Coord e = c_fragment(lane, i);
      const int64_t m = tm * kTileM + e.row, n = n0 + nt * kTileN + e.col;
      if (n >= args.n) continue;
      const float bias = args.bias ? load_as_float(args.bias, m, args.bias_dtype) : 0.f;
      store_from_float(args.c.data, m * args.c.row_stride + n * args.c.col_stride, args.c.dtype, acc[nt][i] + bias);
    }
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
  const int64_t gx = grid_x(a.rows), gy = grid_y(b.cols);
  if (gx > 2147483647 || gy > 65535) return Status::kUnsupported;
  Args args{a, static_cast<const uint16_t*>(b.data), b.cols > 1 ? b.col_stride : 0, b.cols, c, ep.bias, ep.bias_dtype};
  auto s = static_cast<cudaStream_t>(stream);
  const dim3 grid{unsigned(gx), unsigned(gy)};
  if (a.value_dtype == DType::kBFloat16) nm24_kernel<true><<<grid, Nm24Config::kThreads, 0, s>>>(args);
  else nm24_kernel<false><<<grid, Nm24Config::kThreads, 0, s>>>(args);
  const cudaError_t err = cudaGetLastError();
  if (err == cudaErrorInvalidConfiguration) return Status::kUnsupported;
  return err == cudaSuccess ? Status::kOk : Status::kCudaError;
}

}  // namespace sparsecore
