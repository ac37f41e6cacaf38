// expect: group_layout
// A group count where a group layout goes: one error naming the group_layout concept.
#include <span>
#include <vector>
#include <xplor/rl/advantage.hpp>

int main() {
  std::vector<float> rewards(8, 1.0f), advantages(8);
  xplor::rl::compute_advantages(xplor::cpu, xplor::rl::estimator::grpo, std::span<const float>(rewards), 4,
                                std::span<float>(advantages));
}
