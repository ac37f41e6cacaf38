# Finds xplor's optional dependencies. The core target needs none of them; each backend target
# exists only when its dependency was found (scripts/setup.sh installs them all on Debian).

# One target per dependency, each saying what is missing and which Debian package brings it.
find_package(Eigen3 3.3 QUIET NO_MODULE)
find_package(xtensor QUIET)
find_package(nlohmann_json 3 QUIET)
set(XPLOR_HAVE_EIGEN OFF)
set(XPLOR_HAVE_XTENSOR OFF)
set(XPLOR_HAVE_JSON OFF)
if(TARGET Eigen3::Eigen)
  set(XPLOR_HAVE_EIGEN ON)
else()
  message(STATUS "xplor: Eigen3 >= 3.3 not found (Debian: libeigen3-dev); xplor::eigen is not defined")
endif()
if(TARGET xtensor)
  set(XPLOR_HAVE_XTENSOR ON)
else()
  message(STATUS "xplor: xtensor not found (Debian: xtensor-dev); xplor::xtensor is not defined")
endif()
if(TARGET nlohmann_json::nlohmann_json)
  set(XPLOR_HAVE_JSON ON)
else()
  message(STATUS "xplor: nlohmann_json 3 not found (Debian: nlohmann-json3-dev); xplor::json is not defined")
endif()

# Thrust: prefer the CCCL of a CUDA toolkit (the one nvcc uses), else Debian's libthrust-dev.
# CUDA 13 moved the headers under include/cccl; never spell <cccl/...> in an include.
find_package(CUDAToolkit QUIET)
set(_xplor_thrust_hints)
if(CUDAToolkit_INCLUDE_DIRS)
  foreach(dir IN LISTS CUDAToolkit_INCLUDE_DIRS)
    list(APPEND _xplor_thrust_hints "${dir}/cccl" "${dir}")
  endforeach()
endif()
find_path(XPLOR_THRUST_INCLUDE_DIR thrust/version.h
  HINTS ${_xplor_thrust_hints} /usr/local/cuda/include/cccl
  DOC "Directory holding thrust/version.h (CCCL or libthrust-dev)")
if(NOT XPLOR_THRUST_INCLUDE_DIR)
  message(STATUS "xplor: Thrust not found; xplor::thrust is not defined")
endif()

# MPI: dist/mpi.hpp's communicator (xplor::mpi). Optional: single-process builds need no MPI.
find_package(MPI QUIET COMPONENTS CXX)
set(XPLOR_HAVE_MPI OFF)
# CMake 3.25's FindMPI defines MPI::MPI_CXX even when it finds no MPI: test MPI_CXX_FOUND.
if(MPI_CXX_FOUND AND TARGET MPI::MPI_CXX)
  set(XPLOR_HAVE_MPI ON)
else()
  message(STATUS "xplor: MPI not found (Debian: libopenmpi-dev); xplor::mpi is not defined")
endif()

find_package(OpenMP QUIET COMPONENTS CXX)
