# CUDA detection. AUTO compiles the kernels when a usable nvcc is found and
# builds CPU-only (saying why) otherwise; ON requires them; OFF skips them.
#
# The kernels use mma.sp::ordered_metadata (PTX ISA 8.5), so nvcc 12.5 or
# newer is required. Architectures (default): SASS for sm_80 and sm_90a, plus
# PTX for compute_80 so that newer GPUs (Blackwell, ...) JIT-compile it at
# load time. GPUs older than sm_80 (V100, T4) cannot run the kernels: the
# entry points check the compute capability before launching and the Python
# layer falls back to dense torch there. The runtime is linked statically so
# `import sparsecore` works with no GPU and no driver.
set(SPARSECORE_WITH_CUDA OFF)
set(SPARSECORE_CUDA_MIN_VERSION 12.5)
if(NOT SPARSECORE_CUDA STREQUAL "OFF")
  include(CheckLanguage)
  check_language(CUDA)
  set(_why "")
  if(NOT CMAKE_CUDA_COMPILER)
    set(_why "no CUDA compiler (nvcc) was found")
  else()
    execute_process(COMMAND ${CMAKE_CUDA_COMPILER} --version OUTPUT_VARIABLE _nvcc_out ERROR_QUIET)
    string(REGEX MATCH "release ([0-9]+\\.[0-9]+)" _m "${_nvcc_out}")
    set(_nvcc_version "${CMAKE_MATCH_1}")
    if(NOT _nvcc_version)
      set(_why "could not read the version of ${CMAKE_CUDA_COMPILER}")
    elseif(_nvcc_version VERSION_LESS SPARSECORE_CUDA_MIN_VERSION)
      set(_why "nvcc ${_nvcc_version} is older than ${SPARSECORE_CUDA_MIN_VERSION} (needed for PTX ISA 8.5: mma.sp::ordered_metadata)")
    endif()
  endif()
  if(_why STREQUAL "")
    if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
      set(CMAKE_CUDA_ARCHITECTURES "80-real;90a-real;80-virtual")
    endif()
    enable_language(CUDA)
    set(CMAKE_CUDA_STANDARD 17)
    set(CMAKE_CUDA_STANDARD_REQUIRED ON)
    set(CMAKE_CUDA_RUNTIME_LIBRARY Static)
    find_package(CUDAToolkit REQUIRED)
    set(SPARSECORE_WITH_CUDA ON)
  elseif(SPARSECORE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "SPARSECORE_CUDA=ON but ${_why}")
  else()
    message(STATUS "sparsecore: building CPU-only: ${_why}")
  endif()
endif()
