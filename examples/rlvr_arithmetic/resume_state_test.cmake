# CTest: --resume reads its state strictly. A run stopped after 4 SFT steps, then each corruption
# of its state on a fresh copy: --resume must fail with a message naming the file and the
# problem (before, a missing rlvr.step gave "map::at", "abc" gave "stoll", "2junk" was taken as
# 2, "-3" silently restarted SFT, "100000" marked SFT done, and a wrongly typed metrics line
# stopped the run with a nlohmann type_error).
# Run as: cmake -DEXE=<rlvr_arithmetic> -DCORRUPT=<corrupt_state> -DDIR=<scratch> -P resume_state_test.cmake
file(REMOVE_RECURSE "${DIR}")
execute_process(COMMAND "${EXE}" --quick --no-plot --threads 1 --out "${DIR}/good" --stop-after 4
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT EXISTS "${DIR}/good/seed1/sft.last.safetensors")
  message(FATAL_ERROR "the interrupted run failed (${rc}):\n${out}\n${err}")
endif()
set(last "${DIR}/case/seed1/sft.last.safetensors")
set(metrics "${DIR}/case/seed1/metrics.jsonl")
# rejects(<expected message> <CMake commands that corrupt the copy...>) via a macro per case.
function(expect_rejected what)
  execute_process(COMMAND "${EXE}" --quick --no-plot --threads 1 --out "${DIR}/case" --resume
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(rc EQUAL 0)
    message(FATAL_ERROR "--resume accepted a corrupted state (expected: ${what})")
  endif()
  string(FIND "${out}${err}" "${what}" at)
  if(at EQUAL -1)
    message(FATAL_ERROR "--resume failed without '${what}':\n${out}\n${err}")
  endif()
endfunction()
function(fresh)
  file(REMOVE_RECURSE "${DIR}/case")
  file(COPY "${DIR}/good/" DESTINATION "${DIR}/case")
endfunction()
function(step_case value what)
  fresh()
  execute_process(COMMAND "${CORRUPT}" "${last}" rlvr.step ${value} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "corrupt_state failed")
  endif()
  expect_rejected("${what}")
endfunction()
step_case(--erase "sft.last.safetensors': no rlvr.step in its metadata")
step_case(abc "rlvr.step = 'abc' is not a step count")
step_case(2junk "rlvr.step = '2junk' is not a step count")
step_case(-3 "rlvr.step = '-3' is not a step count")
step_case(100000 "rlvr.step = 100000 is beyond the 6 steps the options ask for")
# A changed tracker (or any other byte) no longer matches the checkpoint's content hash.
fresh()
execute_process(COMMAND "${CORRUPT}" "${last}" rlvr.tracker "[[1,[\"x\"]]]")
expect_rejected("does not match the contents")
# Metrics lines that are not ours.
foreach(line "{\"type\":\"train\",\"stage\":5,\"step\":1}" "not json" "{\"type\":\"train\",\"stage\":\"sft\",\"step\":\"1\"}")
  fresh()
  file(APPEND "${metrics}" "${line}\n")
  expect_rejected("metrics.jsonl' line")
endforeach()
# The untouched copy still resumes.
fresh()
execute_process(COMMAND "${EXE}" --quick --no-plot --threads 1 --out "${DIR}/case" --resume
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0 OR NOT out MATCHES "rlvr_arithmetic: ok")
  message(FATAL_ERROR "the intact state did not resume (${rc}):\n${out}\n${err}")
endif()
message(STATUS "rlvr_arithmetic: every corrupted resume state rejected with a clear message")
