// pybind11 module sparsecore._C: the runtime functions (build info, ISA
// choice, threads) and one registration call per kernel family (bind_*.cc).
// A private module: its functions take raw pointers from the Python layer
// (sparsecore.ops), which checks every tensor first.
#include <pybind11/stl.h>

#include "bind_common.h"
#include "sparsecore/cpu_isa.h"

namespace sparsecore::bind {
namespace {

py::dict info() {
  py::dict d;
  py::list compiled, available;
  for (CpuIsa isa : {CpuIsa::kScalar, CpuIsa::kAvx2, CpuIsa::kAvx512, CpuIsa::kAvx512Simde}) {
    bool built = isa == CpuIsa::kScalar;
#if defined(SPARSECORE_HAVE_AVX2)
    built |= isa == CpuIsa::kAvx2;
#endif
#if defined(SPARSECORE_HAVE_AVX512)
    built |= isa == CpuIsa::kAvx512;
#endif
#if defined(SPARSECORE_HAVE_AVX512_SIMDE)
    built |= isa == CpuIsa::kAvx512Simde;
#endif
    if (built) compiled.append(cpu_isa_name(isa));
    if (cpu_isa_available(isa)) available.append(cpu_isa_name(isa));
  }
  d["cpu_isa_compiled"] = compiled;
  d["cpu_isa_available"] = available;
  d["cpu_isa_selected"] = cpu_isa_name(cpu_isa_selected());
  d["cpu_threads"] = cpu_num_threads();
  d["cpu_thread_backend"] = std::string(cpu_thread_backend());
  d["cuda_compiled"] = cuda_compiled();
  d["cuda_archs"] = std::string(cuda_archs_compiled());
  d["cuda_devices"] = cuda_device_count();
  return d;
}

void set_cpu_isa(const std::string& name) {
  CpuIsa isa;
  if (!cpu_isa_parse(name.c_str(), &isa))
    value_error("unknown CPU ISA '" + name + "' (expected scalar, avx2, avx512 or avx512-simde)");
  if (!cpu_isa_set(isa)) value_error("CPU ISA '" + name + "' is not compiled into this build or not supported by this CPU");
}

// (supported, reason) for a CUDA device index.
std::tuple<bool, std::string> cuda_device_check(int device) {
  const bool ok = cuda_device_supported(device);
  std::string why = ok ? "" : error_detail();
  set_error_detail("");
  return {ok, why};
}

}  // namespace

void register_runtime(py::module_& m) {
  m.def("info", &info);
  m.def("set_cpu_isa", &set_cpu_isa);
  m.def("get_cpu_isa", [] { return std::string(cpu_isa_name(cpu_isa_selected())); });
  m.def("set_num_threads", &cpu_set_num_threads);
  m.def("get_num_threads", &cpu_num_threads);
  m.def("set_spin_us", &cpu_set_spin_us);
  m.def("get_spin_us", &cpu_spin_us);
  m.def("hold_threads", &cpu_hold_threads);
  m.def("thread_holds", &cpu_thread_holds);
  m.def("get_thread_backend", [] { return std::string(cpu_thread_backend()); });
  m.def("set_thread_backend_own", &cpu_set_thread_backend_own);
  m.def("bitmap_row_bytes", [](int64_t cols) { return bitmap_row_bytes(cols); });
  m.def("cuda_device_check", &cuda_device_check);
}

}  // namespace sparsecore::bind

PYBIND11_MODULE(_C, m) {
  m.doc() = "sparsecore compiled kernels (torch-free); use the sparsecore package, not this module";
  sparsecore::bind::register_runtime(m);
  sparsecore::bind::register_spmm(m);
  sparsecore::bind::register_nm(m);
  sparsecore::bind::register_act(m);
  sparsecore::bind::register_attention(m);
}
