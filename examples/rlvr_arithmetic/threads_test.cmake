# CTest: the model's float reductions do not depend on the thread count, so an rlvr_arithmetic
# --quick run writes the same checkpoints, byte for byte, with OMP_NUM_THREADS=1 and 2; and a run
# interrupted on 1 thread and resumed on 2 ends with those same bytes.
# Run as: cmake -DEXE=<rlvr_arithmetic> -DDIR=<scratch folder> -P threads_test.cmake
file(REMOVE_RECURSE "${DIR}")
function(run threads)
  execute_process(COMMAND ${CMAKE_COMMAND} -E env OMP_NUM_THREADS=${threads} "${EXE}" --quick --no-plot ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "OMP_NUM_THREADS=${threads} rlvr_arithmetic ${ARGN} failed (${rc}):\n${out}\n${err}")
  endif()
endfunction()
run(1 --out "${DIR}/t1")
run(2 --out "${DIR}/t2")
run(1 --out "${DIR}/mixed" --stop-after 4)
run(2 --out "${DIR}/mixed" --resume)
foreach(stage sft rl_ternary rl_binary)
  foreach(other t2 mixed)
    execute_process(COMMAND ${CMAKE_COMMAND} -E compare_files "${DIR}/t1/seed1/${stage}.safetensors"
                            "${DIR}/${other}/seed1/${stage}.safetensors" RESULT_VARIABLE differ)
    if(differ)
      message(FATAL_ERROR "${stage}.safetensors differs between 1 thread and ${other}")
    endif()
  endforeach()
endforeach()
message(STATUS "rlvr_arithmetic: identical checkpoints on 1 and 2 threads")
