// Timing shared by the C++ microbenchmarks: the median of repeated calls after a warm-up.
#pragma once
#include <algorithm>
#include <chrono>
#include <vector>

namespace sparsecore::bench {

template <typename F>
double median_seconds(F&& f, int reps) {
  std::vector<double> t;
  f();  // warm-up
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace sparsecore::bench
