# xplor_optimize(<target> [ARCH <arch>])
#
# Compiles <target>'s C++ for a CPU's vector units while keeping xplor's float arithmetic exact:
#   -march=<arch>      native (default): the configuring machine's ISA (AVX2/FMA, AVX-512, ...);
#                      any GCC/Clang -march value (x86-64-v3, znver4, ...) for a chosen level;
#                      portable: no -march (the compiler's default, x86-64 on SSE2).
#   -ffp-contract=off  the compiler may not fuse a*b+c into an FMA on its own. xplor's samplers
#                      are bit-identical between the CPU and the GPU because both round every
#                      product and sum; contraction would change the last bit of the host's
#                      probabilities and so the draws. Eigen's kernels use explicit FMA
#                      instructions and keep them.
# With ARCH native, a hash of what the compiler expands native to is added as a definition, so a
# compiler cache (ccache) never hands one CPU's objects to another.
# GCC and Clang only; other compilers get a warning and no flags.
include_guard(GLOBAL)
include(CheckCXXCompilerFlag)

function(xplor_optimize target)
  cmake_parse_arguments(PARSE_ARGV 1 arg "" "ARCH" "")
  if(arg_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "xplor_optimize(${target}): unexpected arguments ${arg_UNPARSED_ARGUMENTS}")
  endif()
  if(NOT DEFINED arg_ARCH OR arg_ARCH STREQUAL "")
    set(arg_ARCH native)
  endif()
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "GNU|Clang")
    message(WARNING "xplor_optimize(${target}): ${CMAKE_CXX_COMPILER_ID} is not GCC or Clang; no flags added")
    return()
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-ffp-contract=off>)
  if(arg_ARCH STREQUAL "portable")
    return()
  endif()
  string(MAKE_C_IDENTIFIER "XPLOR_MARCH_${arg_ARCH}" flag_var)
  check_cxx_compiler_flag("-march=${arg_ARCH}" ${flag_var})
  if(NOT ${flag_var})
    message(FATAL_ERROR "xplor_optimize(${target}): ${CMAKE_CXX_COMPILER} rejects -march=${arg_ARCH} "
                        "(ARCH = ${arg_ARCH}; use portable or a value the compiler knows)")
  endif()
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:-march=${arg_ARCH}>)
  if(arg_ARCH STREQUAL "native")
    get_property(cpu_id GLOBAL PROPERTY XPLOR_NATIVE_CPU_ID)
    if(NOT cpu_id)
      # -### prints the cc1 command with native expanded into the real -march and -m flags.
      execute_process(COMMAND ${CMAKE_CXX_COMPILER} -march=native -### -E -x c++ /dev/null
                      ERROR_VARIABLE expanded OUTPUT_QUIET RESULT_VARIABLE rc)
      string(MD5 cpu_id "${rc}${expanded}")
      string(SUBSTRING "${cpu_id}" 0 12 cpu_id)
      set_property(GLOBAL PROPERTY XPLOR_NATIVE_CPU_ID "${cpu_id}")
    endif()
    target_compile_definitions(${target} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:XPLOR_NATIVE_CPU_ID=${cpu_id}>)
  endif()
endfunction()
