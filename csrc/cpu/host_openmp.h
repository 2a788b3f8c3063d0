// The process's own OpenMP runtime, when one is loaded (torch brings libgomp).
//
// On a machine with as many threads as cores, torch's OpenMP workers spin for
// milliseconds after every torch op. A second pool of ours then competes with
// them for the same cores, and each sparse kernel between two torch ops runs up
// to 2x slower than it does alone (measured on SmolLM2: docs/results.md, "Two
// thread pools"). Running our tasks on that runtime's threads instead leaves one
// set of threads, already awake when our kernel starts. The core stays torch-free:
// it only looks up the standard GOMP entry point that libgomp, LLVM's libomp and
// Intel's libiomp5 all export.
#pragma once

namespace sparsecore::cpu {

// GOMP_parallel(fn, data, num_threads, flags): runs fn(data) on a team of
// num_threads threads, the caller included, and returns when all are done.
using HostParallelFn = void (*)(void (*)(void*), void*, unsigned, unsigned);

// The loaded runtime's GOMP_parallel, or nullptr when none is loaded. Looked up
// once (the first parallel call), so a runtime loaded later is not seen.
HostParallelFn host_openmp_parallel();

}  // namespace sparsecore::cpu
