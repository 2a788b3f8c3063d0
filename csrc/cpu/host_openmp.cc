#include "host_openmp.h"

#if defined(__unix__) || defined(__APPLE__)
#include <dlfcn.h>
#endif

namespace sparsecore::cpu {

HostParallelFn host_openmp_parallel() {
#if defined(__unix__) || defined(__APPLE__)
  static const HostParallelFn fn = reinterpret_cast<HostParallelFn>(dlsym(RTLD_DEFAULT, "GOMP_parallel"));
  return fn;
#else
  return nullptr;
#endif
}

}  // namespace sparsecore::cpu
