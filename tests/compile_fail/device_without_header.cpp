// expect: xplor::device needs its Thrust drivers: #include <xplor/core/device.hpp>
// The device tag used without core/device.hpp: one error that names the header.
#include <span>
#include <vector>
#include <xplor/rl/advantage.hpp>

int main() {
  std::vector<float> rewards(8, 1.0f), advantages(8);
  xplor::rl::group_advantages(xplor::device, std::span<const float>(rewards), 4, std::span<float>(advantages));
}
