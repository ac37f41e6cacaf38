# Build settings for xplor's own targets (tests, examples, benchmarks). Consumers never see them:
# the library targets are INTERFACE and carry only include paths and the C++ standard.

find_program(XPLOR_CCACHE ccache)
if(XPLOR_CCACHE AND NOT CMAKE_CXX_COMPILER_LAUNCHER)
  set(CMAKE_CXX_COMPILER_LAUNCHER "${XPLOR_CCACHE}")
endif()
if(NOT CMAKE_BUILD_TYPE AND NOT CMAKE_CONFIGURATION_TYPES)
  set(CMAKE_BUILD_TYPE Release CACHE STRING "Build type" FORCE)
endif()

# xplor_project_target(<target>): warnings (errors when XPLOR_WARNINGS_AS_ERRORS), sanitizers
# when XPLOR_SANITIZE, OpenMP for the CPU backend when available.
function(xplor_project_target target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wshadow -Wconversion -Wno-sign-conversion>)
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
