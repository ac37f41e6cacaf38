// The rollout allocator's device tests (tests/budget/budget_device_test.cpp) compiled by nvcc.
#include "../../tests/budget/budget_device_test.cpp"
