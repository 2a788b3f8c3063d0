# SIMDe headers, for compiling the AVX-512 kernels a second time with
# emulation so that tests execute them on CPUs without AVX-512. Looked up in
# the pip package simde-py, then in system include paths (Debian libsimde-dev).
set(SPARSECORE_WITH_SIMDE OFF)
if(NOT SPARSECORE_SIMDE STREQUAL "OFF")
  find_package(Python 3.9 COMPONENTS Interpreter QUIET)
  set(_simde_hint "")
  if(Python_Interpreter_FOUND)
    execute_process(
      COMMAND ${Python_EXECUTABLE} -c "import simde_py; print(simde_py.get_include())"
      OUTPUT_VARIABLE _simde_hint OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
  endif()
  find_path(SPARSECORE_SIMDE_INCLUDE_DIR simde/x86/avx512.h HINTS ${_simde_hint})
  if(SPARSECORE_SIMDE_INCLUDE_DIR AND SPARSECORE_X86)
    set(SPARSECORE_WITH_SIMDE ON)
    message(STATUS "sparsecore: SIMDe found at ${SPARSECORE_SIMDE_INCLUDE_DIR}: AVX-512 kernels also built under emulation")
  elseif(SPARSECORE_SIMDE STREQUAL "ON")
    message(FATAL_ERROR "SPARSECORE_SIMDE=ON but SIMDe headers were not found (pip install simde-py, or apt-get install libsimde-dev)")
  else()
    message(STATUS "sparsecore: SIMDe not found: AVX-512 kernels are not emulated in this build")
  endif()
endif()
