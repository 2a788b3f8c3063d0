// Minimal test harness for the ctest executables: CHECK records a failure and
// keeps going; main returns the failure count (0 = pass, 77 = skip).
#pragma once
#include <cstdio>
#include <cstdlib>

namespace sparsecore::testing {
inline int& failures() {
  static int n = 0;
  return n;
}
inline int& checks() {
  static int n = 0;
  return n;
}
// SPARSECORE_TEST_SMALL=1 (the sanitizer run): the large shapes and wide
// batches of the grids are skipped; every ISA path, dtype and kernel still runs.
inline bool small_grid() { return std::getenv("SPARSECORE_TEST_SMALL") != nullptr; }
inline int finish(const char* name) {
  std::printf("%s: %d checks, %d failed\n", name, checks(), failures());
  return failures() == 0 ? 0 : 1;
}
}  // namespace sparsecore::testing

#define CHECK(cond, ...)                                                   \
  do {                                                                     \
    ++::sparsecore::testing::checks();                                     \
    if (!(cond)) {                                                         \
      ++::sparsecore::testing::failures();                                 \
      std::printf("FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond);        \
      std::printf(__VA_ARGS__);                                            \
      std::printf("\n");                                                   \
    }                                                                      \
  } while (0)
