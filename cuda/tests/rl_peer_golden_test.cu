// The TRL / verl golden cases (tests/rl/peer_golden_test.cpp) on the GPU's device backend.
#define XPLOR_PEER_GOLDEN_DEVICE 1
#include "../../tests/rl/peer_golden_test.cpp"
