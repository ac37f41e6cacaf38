// expect: xplor::device needs its Thrust drivers: #include <xplor/core/device.hpp>
// The device tag used without core/device.hpp (device memory passed correctly): one error that
// names the header.
#include <xplor/rl/advantage.hpp>

void advantages_on_device(const float* rewards, float* advantages) {
  xplor::rl::group_advantages(xplor::device, xplor::device_span<const float>(rewards, 8), 4,
                              xplor::device_span<float>(advantages, 8));
}
