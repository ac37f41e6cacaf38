// The advantage and loss device tests (tests/rl/rl_device_test.cpp) compiled by nvcc.
#include "../../tests/rl/rl_device_test.cpp"
