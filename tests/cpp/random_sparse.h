// Deterministic random CSR / BSR / dense generators shared by the C++ tests
// and microbenchmarks. Small integers times 1/8 make many products exact.
#pragma once
#include <cstdint>
#include <random>
#include <vector>

#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"

namespace sparsecore::testing {

struct OwnedCsr {
  int64_t rows = 0, cols = 0;
  std::vector<int64_t> row_ptr;
  std::vector<uint16_t> col16;
  std::vector<int32_t> col32;
  std::vector<uint16_t> val16;  // bf16 or fp16 bits
  std::vector<float> val32;
  std::vector<int64_t> chunks;
  CsrView view(DType vt, IndexType it) const {
    CsrView v;
    v.rows = rows;
    v.cols = cols;
    v.nnz = row_ptr.back();
    v.row_ptr = row_ptr.data();
    v.index_type = it;
    v.col_idx = it == IndexType::kUInt16 ? static_cast<const void*>(col16.data()) : col32.data();
    v.value_dtype = vt;
    v.values = vt == DType::kFloat32 ? static_cast<const void*>(val32.data()) : val16.data();
    v.row_chunks = chunks.empty() ? nullptr : chunks.data();
    v.num_chunks = chunks.empty() ? 0 : int64_t(chunks.size()) - 1;
    return v;
  }
};

// density in [0, 1]; values are small integers / 8 stored in every dtype;
// vt16 picks which 16-bit encoding val16 holds.
inline OwnedCsr random_csr(int64_t rows, int64_t cols, double density, DType vt16, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int> small(-8, 8);
  OwnedCsr m;
  m.rows = rows;
  m.cols = cols;
  m.row_ptr.push_back(0);
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t c = 0; c < cols; ++c) {
      if (u(rng) >= density) continue;
      int s = small(rng);
      if (s == 0) s = 1;
      const float v = float(s) / 8.f;
      m.col16.push_back(uint16_t(c));
      m.col32.push_back(int32_t(c));
      m.val32.push_back(v);
      m.val16.push_back(vt16 == DType::kFloat16 ? float_to_fp16(v) : float_to_bf16(v));
    }
    m.row_ptr.push_back(int64_t(m.col32.size()));
  }
  return m;
}

struct OwnedBsr {
  int64_t block_rows = 0, block_cols = 0, bh = 1, bw = 1;
  std::vector<int64_t> row_ptr;
  std::vector<int32_t> col32;
  std::vector<uint16_t> col16;
  std::vector<float> val32;
  std::vector<uint16_t> val16;
  BsrView view(DType vt, IndexType it) const {
    BsrView v;
    v.block_rows = block_rows;
    v.block_cols = block_cols;
    v.block_h = bh;
    v.block_w = bw;
    v.nnzb = row_ptr.back();
    v.row_ptr = row_ptr.data();
    v.index_type = it;
    v.col_idx = it == IndexType::kUInt16 ? static_cast<const void*>(col16.data()) : col32.data();
    v.value_dtype = vt;
    v.values = vt == DType::kFloat32 ? static_cast<const void*>(val32.data()) : val16.data();
    return v;
  }
};

inline OwnedBsr random_bsr(int64_t block_rows, int64_t block_cols, int64_t bh, int64_t bw, double density,
                           DType vt16, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> u(0.0, 1.0);
  std::uniform_int_distribution<int> small(-8, 8);
  OwnedBsr m;
  m.block_rows = block_rows;
  m.block_cols = block_cols;
  m.bh = bh;
  m.bw = bw;
  m.row_ptr.push_back(0);
  for (int64_t r = 0; r < block_rows; ++r) {
    for (int64_t c = 0; c < block_cols; ++c) {
      if (u(rng) >= density) continue;
      m.col32.push_back(int32_t(c));
      m.col16.push_back(uint16_t(c));
      for (int64_t i = 0; i < bh * bw; ++i) {
        const float v = float(small(rng)) / 8.f;
        m.val32.push_back(v);
        m.val16.push_back(vt16 == DType::kFloat16 ? float_to_fp16(v) : float_to_bf16(v));
      }
    }
    m.row_ptr.push_back(int64_t(m.col32.size()));
  }
  return m;
}

// Dense values, small integers / 4, in the requested dtype's storage.
struct OwnedDense {
  std::vector<float> f32;
  std::vector<uint16_t> b16;
  DType dtype = DType::kFloat32;
  void* data() { return dtype == DType::kFloat32 ? static_cast<void*>(f32.data()) : b16.data(); }
};

inline OwnedDense random_dense(int64_t count, DType dt, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> small(-8, 8);
  OwnedDense d;
  d.dtype = dt;
  for (int64_t i = 0; i < count; ++i) {
    const float v = float(small(rng)) / 4.f;
    if (dt == DType::kFloat32) d.f32.push_back(v);
    else d.b16.push_back(dt == DType::kFloat16 ? float_to_fp16(v) : float_to_bf16(v));
  }
  return d;
}

}  // namespace sparsecore::testing
