# Compiles SOURCE (syntax only) and passes when the compiler fails with output matching the
# source's first-line "// expect: <regex>" and with at most MAX_ERRORS error lines.
file(STRINGS "${SOURCE}" first LIMIT_COUNT 1)
string(REGEX REPLACE "^// expect: " "" expected "${first}")
execute_process(COMMAND "${CXX}" -std=c++20 -fsyntax-only ${FLAGS} "-I${INCLUDE}" "${SOURCE}"
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(rc EQUAL 0)
  message(FATAL_ERROR "${SOURCE} compiled, but it must not")
endif()
string(FIND "${err}" "${expected}" at)
if(at EQUAL -1)
  message(FATAL_ERROR "${SOURCE}: the compiler's message does not contain '${expected}':\n${err}")
endif()
string(REGEX MATCHALL "error:" errors "${err}")
list(LENGTH errors n)
if(n GREATER MAX_ERRORS)
  message(FATAL_ERROR "${SOURCE}: ${n} errors (at most ${MAX_ERRORS} expected):\n${err}")
endif()
message(STATUS "${SOURCE}: fails as expected with ${n} error(s)")
