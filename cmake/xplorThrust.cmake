# xplor_thrust_device_system(<target> <CUDA|OMP|CPP>)
#
# Links <target> to xplor::thrust and selects Thrust's device system for it. Under g++ the OMP
# system runs the device backend on CPU threads and CPP runs it serially, which is how the
# device code paths are tested without a GPU. The choice is per target because every TU of one
# binary must agree on THRUST_DEVICE_SYSTEM.
function(xplor_thrust_device_system target system)
  if(NOT TARGET xplor::thrust)
    message(FATAL_ERROR "xplor_thrust_device_system(${target}): xplor::thrust is not available (Thrust not found)")
  endif()
  target_link_libraries(${target} PRIVATE xplor::thrust)
  if(system STREQUAL "OMP")
    if(NOT TARGET OpenMP::OpenMP_CXX)
      find_package(OpenMP REQUIRED COMPONENTS CXX)
    endif()
    target_compile_definitions(${target} PRIVATE THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_OMP)
    target_link_libraries(${target} PRIVATE OpenMP::OpenMP_CXX)
  elseif(system STREQUAL "CPP")
    target_compile_definitions(${target} PRIVATE THRUST_DEVICE_SYSTEM=THRUST_DEVICE_SYSTEM_CPP)
  elseif(NOT system STREQUAL "CUDA")
    message(FATAL_ERROR "xplor_thrust_device_system(${target} ${system}): system must be CUDA, OMP or CPP")
  endif()
endfunction()
