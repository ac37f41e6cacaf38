// expect: device_span
// Host memory (a std::vector) handed to the device backend: a compile error, not a fault on
// the GPU that a CPU-only build would never see.
#include <span>
#include <vector>
#include <xplor/core/device.hpp>
#include <xplor/rl/advantage.hpp>

int main() {
  std::vector<float> rewards(8, 1.0f), advantages(8);
  xplor::rl::group_advantages(xplor::device, std::span<const float>(rewards), 4,
                              std::span<float>(advantages));
}
