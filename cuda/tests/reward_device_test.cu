// The batched reward device tests (tests/reward/reward_device_test.cpp) compiled by nvcc.
#include "../../tests/reward/reward_device_test.cpp"
