// The core device tests (tests/core/device_test.cpp and adapt_thrust_test.cpp) compiled by nvcc:
// one source of truth, run on the GPU here and on Thrust's OMP system in the CPU test suite.
#include "../../tests/core/adapt_thrust_test.cpp"
#include "../../tests/core/device_test.cpp"
