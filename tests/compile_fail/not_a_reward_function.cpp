// expect: reward_function
// A function of the wrong sample type where a reward function goes: one error naming the
// reward_function concept.
#include <optional>
#include <string>
#include <xplor/reward/composite.hpp>

struct sample {
  std::string completion;
};

int main() {
  xplor::reward::composite_reward<sample> reward;
  reward.add("length", [](const std::string& s) { return std::optional<float>(float(s.size())); });
}
