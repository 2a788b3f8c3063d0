// Content checks the kernels run on the index and bitmap data they are about
// to read, one row at a time (the row is then in L1 for the kernel itself).
// Plain loops the compiler vectorises in each ISA translation unit; static
// inline so that every TU keeps its own copy (see sparsecore/core.h).
#pragma once
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace sparsecore::cpu {

// Every index of idx[0, n) is below limit (as unsigned: negative int32
// indices fail too).
template <typename IS>
static inline bool indices_below(const IS* idx, int64_t n, int64_t limit) {
  using U = typename std::conditional<sizeof(IS) == 2, uint16_t, uint32_t>::type;
  U mx = 0;
  for (int64_t i = 0; i < n; ++i) {
    const U v = U(idx[i]);
    mx = v > mx ? v : mx;
  }
  return n == 0 || int64_t(mx) < limit;
}

// Set bits of a bitmap row of `bytes` bytes.
static inline int64_t row_popcount(const uint8_t* row, int64_t bytes) {
  int64_t count = 0, q = 0;
  for (; q + 8 <= bytes; q += 8) {
    uint64_t w;
    std::memcpy(&w, row + q, 8);
    count += __builtin_popcountll(w);
  }
  for (; q < bytes; ++q) count += __builtin_popcount(row[q]);
  return count;
}

// No bit at or past column `cols` in a row of `bytes` bytes.
static inline bool row_padding_clear(const uint8_t* row, int64_t cols, int64_t bytes) {
  int64_t q = cols >> 3;
  if (q < bytes && (cols & 7) && (row[q] >> (cols & 7))) return false;
  if (cols & 7) ++q;
  uint8_t any = 0;
  for (; q < bytes; ++q) any |= row[q];
  return any == 0;
}

// N:M rows: every whole byte of the first cols bits holds exactly per_byte
// set bits (8 / m groups of n), the partial last byte its share, and the
// padding none. A SWAR byte popcount, 8 bytes at a time.
static inline bool nm_row_ok(const uint8_t* row, int64_t cols, int64_t bytes, int m, int n) {
  const int64_t full = cols >> 3;
  const uint64_t want = uint64_t(8 / m * n) * 0x0101010101010101ull;
  int64_t q = 0;
  uint64_t diff = 0;
  for (; q + 8 <= full; q += 8) {
    uint64_t x;
    std::memcpy(&x, row + q, 8);
    x = x - ((x >> 1) & 0x5555555555555555ull);
    x = (x & 0x3333333333333333ull) + ((x >> 2) & 0x3333333333333333ull);
    x = (x + (x >> 4)) & 0x0f0f0f0f0f0f0f0full;
    diff |= x ^ want;
  }
  for (; q < full; ++q) diff |= uint64_t(__builtin_popcount(row[q]) != 8 / m * n);
  if (diff) return false;
  if (cols & 7) {
    const unsigned tail = row[full] & ((1u << (cols & 7)) - 1u);
    if (__builtin_popcount(tail) != int(cols & 7) / m * n) return false;
  }
  return row_padding_clear(row, cols, bytes);
}

}  // namespace sparsecore::cpu
