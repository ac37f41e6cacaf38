// expect: response_verifier
// A verifier that returns bool instead of an outcome: one error naming the response_verifier
// concept.
#include <vector>
#include <xplor/sample/scripted_policy.hpp>
#include <xplor/search/deep_search.hpp>

int main() {
  xplor::sample::scripted_policy policy(4, [](std::span<const std::int32_t>, std::span<float> out) {
    for (float& x : out) x = 0.0f;
  });
  const std::vector<std::int32_t> prompt{0};
  xplor::search::deep_search(
      policy, prompt, [](std::span<const std::int32_t>, bool) { return true; },
      xplor::search::search_params{}, 1);
}
