// Random 2:4 matrices for the tensor-core tests: small integers (some kept
// entries zero), as a dense array, the kept values and the NmView bitmap.
#pragma once
#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "sparsecore/act.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"

namespace sparsecore::testing {

struct Tile24 {
  int64_t rows, cols;
  std::vector<float> dense;      // rows x cols, 2:4 along columns
  std::vector<float> values;     // rows x cols/2 kept values
  std::vector<uint8_t> bitmap;   // NmView layout
};

inline Tile24 random_24(int64_t rows, int64_t cols, std::mt19937& rng) {
  Tile24 t{rows, cols, std::vector<float>(size_t(rows * cols), 0.f), {}, {}};
  t.bitmap.assign(size_t(rows * bitmap_row_bytes(cols)), 0);
  std::uniform_int_distribution<int> val(-8, 8), lane(0, 3);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; c += 4) {
      int i = lane(rng), j = lane(rng);
      while (j == i) j = lane(rng);
      if (i > j) std::swap(i, j);
      for (int l : {i, j}) {
        const float v = float(val(rng));  // zero now and then: still a kept slot
        t.dense[size_t(r * cols + c + l)] = v;
        t.values.push_back(v);
        t.bitmap[size_t(r * bitmap_row_bytes(cols) + (c + l) / 8)] |= uint8_t(1u << ((c + l) % 8));
      }
    }
  return t;
}

}  // namespace sparsecore::testing
