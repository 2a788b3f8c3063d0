# Per-ISA compile flags. They go on single source files only, never globally:
# an AVX-512 inline function that wins at link time would crash other CPUs.
set(SPARSECORE_X86 OFF)
if(CMAKE_SYSTEM_PROCESSOR MATCHES "x86_64|AMD64|amd64|i.86")
  set(SPARSECORE_X86 ON)
endif()
set(SPARSECORE_AVX2_FLAGS -mavx2 -mfma -mf16c -mpopcnt -Wno-psabi)
# GCC 12 warns (falsely) inside its own avx512 intrinsic headers.
set(SPARSECORE_AVX512_FLAGS -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx2 -mfma -mf16c -mpopcnt -Wno-maybe-uninitialized)

# sparsecore_isa_source(<target> <file> <scalar|avx2|avx512|avx512_simde>)
function(sparsecore_isa_source target file isa)
  target_sources(${target} PRIVATE ${file})
  if(isa STREQUAL "avx2" OR isa STREQUAL "avx512_simde")
    set_source_files_properties(${file} TARGET_DIRECTORY ${target} PROPERTIES COMPILE_OPTIONS "${SPARSECORE_AVX2_FLAGS}")
  elseif(isa STREQUAL "avx512")
    set_source_files_properties(${file} TARGET_DIRECTORY ${target} PROPERTIES COMPILE_OPTIONS "${SPARSECORE_AVX512_FLAGS}")
  endif()
endfunction()
