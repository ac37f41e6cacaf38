#include "xplor/sample/rollout_xtensor.hpp"

#include <catch2/catch.hpp>
#include <vector>

#include "xplor/sample/scripted_policy.hpp"

using namespace xplor::sample;

TEST_CASE("rollout batches as padded xtensor arrays", "[sample][rollout][xtensor]") {
  // Next token = last + 1 (mod 10) with probability ~1; token 0 is eos.
  scripted_policy policy(10, [](std::span<const std::int32_t> h, std::span<float> out) {
    std::fill(out.begin(), out.end(), 0.0f);
    out[static_cast<std::size_t>((h.back() + 1) % 10)] = 60.0f;
  });
  sampling_params p;
  p.eos_token = 0;
  p.max_completion_length = 5;
  const std::vector<std::vector<std::int32_t>> prompts{{7}, {2}};
  const std::vector<int> counts{1, 3};
  const auto b = generate(policy, std::span(prompts), std::span(counts), p, 1);
  // prompt 0: 8 9 0 (eos); prompt 1: 3 4 5 6 7 (length) three times.
  CHECK(padded_shape(b) == std::array<std::size_t, 3>{2, 3, 5});
  const auto tokens = padded<std::int32_t>(b, b.tokens, -1);
  CHECK(tokens(0, 0, 0) == 8);
  CHECK(tokens(0, 0, 2) == 0);
  CHECK(tokens(0, 0, 3) == -1);  // past the end of the completion
  CHECK(tokens(0, 1, 0) == -1);  // prompt 0 has one completion
  CHECK(tokens(1, 2, 4) == 7);
  const auto mask = padded_mask(b);
  CHECK(static_cast<std::size_t>(xt::sum(mask)()) == b.tokens.size());
  const auto lp = padded<float>(b, b.logprobs, 0.0f);
  CHECK(lp(1, 1, 2) == b.logprobs[static_cast<std::size_t>(b.offsets[2] + 2)]);
  const auto view = token_view(b);
  CHECK(view.size() == b.tokens.size());
  CHECK(&view(0) == b.tokens.data());  // no copy
  CHECK(logprob_view(b)(3) == b.logprobs[3]);
  const std::vector<float> wrong(3, 0.0f);
  CHECK_THROWS_WITH(padded<float>(b, wrong, 0.0f), Catch::Contains("per_token has 3 values"));
}
