// CPU instruction-set paths and the thread count the CPU kernels use.
#pragma once

namespace sparsecore {

enum class CpuIsa : int {
  kScalar = 0,
  kAvx2 = 1,        // AVX2 + FMA + F16C
  kAvx512 = 2,      // AVX-512 F/BW/VL/DQ, native
  kAvx512Simde = 3  // the AVX-512 source compiled against SIMDe (test builds)
};

const char* cpu_isa_name(CpuIsa isa);
// Compiled into this build and runnable on this CPU.
bool cpu_isa_available(CpuIsa isa);
// The path in use: chosen once from the CPU (best available native path) and
// SPARSECORE_CPU_ISA, or set by cpu_isa_set.
CpuIsa cpu_isa_selected();
bool cpu_isa_set(CpuIsa isa);  // false if not available
bool cpu_isa_parse(const char* name, CpuIsa* out);

int cpu_num_threads();
void cpu_set_num_threads(int n);  // n <= 0 restores the default (hardware threads)
// Microseconds an idle worker spins before it sleeps on a condition variable:
// longer spins save the wake-up (tens of us) between closely spaced kernel calls
// and cost a core while other code (torch's ops) runs. n < 0 restores the default
// (SPARSECORE_SPIN_US or 200).
int cpu_spin_us();
void cpu_set_spin_us(int us);
// While holds are taken (one per model forward in flight), idle workers keep
// spinning (yielding the core to runnable threads) instead of sleeping.
void cpu_hold_threads(bool on);
int cpu_thread_holds();
// Where parallel work runs: "openmp" (the OpenMP runtime already loaded in the
// process, e.g. torch's: one set of threads instead of two competing ones) or
// "own" (this library's pool; also where no runtime is loaded, in fork()
// children, and with SPARSECORE_THREAD_BACKEND=own). Spin and holds apply to
// the own pool only.
const char* cpu_thread_backend();
void cpu_set_thread_backend_own(bool own);  // false: the OpenMP runtime where one is loaded

}  // namespace sparsecore
