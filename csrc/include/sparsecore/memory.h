// Memory hints for the large, long-lived buffers the kernels stream through.
#pragma once
#include <cstdint>

namespace sparsecore {

// Asks the OS to back [data, data + bytes) with transparent huge pages where
// it can (Linux, THP in "madvise" or "always" mode; a no-op elsewhere). Call
// it before the buffer is first written. The activation-sparse kernels jump
// from run to run through a weight of many megabytes: with 4 KiB pages nearly
// every run is a TLB miss, with 2 MiB pages almost none (measured: 5-10% on
// a 4096x11008 bf16 layer at 50-60% activation sparsity). Returns whether the
// hint was accepted.
bool advise_huge_pages(void* data, int64_t bytes);

}  // namespace sparsecore
