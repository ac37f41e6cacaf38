// The batched search trees' device tests (tests/search/tree_batch_device_test.cpp) compiled by nvcc.
#include "../../tests/search/tree_batch_device_test.cpp"
