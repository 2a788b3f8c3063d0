// CUDA entry points for builds without CUDA: the CUDA path reports that it is
// not compiled in, and the Python layer raises before ever calling it.
#include "sparsecore/act.h"
#include "sparsecore/attention.h"
#include "sparsecore/nm.h"
#include "sparsecore/spmm.h"

namespace sparsecore {

Status csr_spmm_cuda(const CsrView&, const MatrixView&, const Epilogue&, const MatrixView&, void*) {
  return Status::kUnsupported;
}
Status nm24_spmm_cuda(const Nm24View&, const MatrixView&, const Epilogue&, const MatrixView&, void*) {
  return Status::kUnsupported;
}
Status act_linear_cuda(const ActWeightView&, const ActSelect&, const MatrixView&, const Epilogue&,
                       const MatrixView&, void*) {
  return Status::kUnsupported;
}
Status flash_attention_cuda(const AttnTensor&, const AttnTensor&, const AttnTensor&, const AttnTensor&,
                            const AttnOptions&, const AttnBlockMask*, unsigned long long*, void*) {
  return Status::kUnsupported;
}
bool cuda_compiled() { return false; }
const char* cuda_archs_compiled() { return ""; }
int cuda_device_count() { return 0; }
bool cuda_device_supported(int) {
  set_error_detail("sparsecore was built without CUDA kernels");
  return false;
}

}  // namespace sparsecore
