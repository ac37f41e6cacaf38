# Build settings for xplor's own targets (tests, examples, benchmarks). Consumers never see them:
# the library targets are INTERFACE and carry only include paths and the C++ standard.

find_program(XPLOR_CCACHE ccache)
if(XPLOR_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${XPLOR_CCACHE}")
endif()
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

# The CPU that xplor's own tests, examples and benchmarks are compiled for (xplor_optimize's ARCH):
# native by default, so Eigen and the compiler use the machine's AVX2/FMA/AVX-512 units;
# -DXPLOR_ARCH=portable for binaries that must run on any x86-64 (SSE2 only, about 2.5x slower
# matrix products), or any -march value (x86-64-v3, ...).
set(XPLOR_ARCH "native" CACHE STRING "-march for xplor's own targets: native, portable or a -march value")

# xplor_project_target(<target>): warnings (errors when XPLOR_WARNINGS_AS_ERRORS), sanitizers
# when XPLOR_SANITIZE, OpenMP for the CPU backend when available, xplor_optimize(ARCH XPLOR_ARCH).
function(xplor_project_target target)
  xplor_optimize(${target} ARCH ${XPLOR_ARCH})
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>)
  if(CMAKE_CXX_COMPILER_ID STREQUAL "GNU" AND CMAKE_CXX_COMPILER_VERSION VERSION_LESS 13)
    # GCC 12 warns inside its own AVX-512 intrinsics when Eigen inlines them (GCC bug 105593:
    # "maybe" at -O3, definite at -O1), on an undefined vector those intrinsics start from.
    target_compile_options(${target} PRIVATE
      $<$<COMPILE_LANGUAGE:CXX>:-Wno-maybe-uninitialized -Wno-uninitialized>)
  endif()
  if(XPLOR_WARNINGS_AS_ERRORS)
    target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-Werror>)
  endif()
  if(XPLOR_SANITIZE)
    # Recoverable so that tests/sanitizers/ubsan.supp can silence third-party reports; the tests
    # run with UBSAN_OPTIONS=halt_on_error=1, so any other report still fails them.
    target_compile_options(${target} PRIVATE -fsanitize=address,undefined -fno-omit-frame-pointer)
    target_link_options(${target} PRIVATE -fsanitize=address,undefined)
  endif()
  if(TARGET OpenMP::OpenMP_CXX)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
  endif()
endfunction()
