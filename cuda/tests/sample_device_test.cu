// The sampling device tests (tests/sample/sample_device_test.cpp) compiled by nvcc.
#include "../../tests/sample/sample_device_test.cpp"
