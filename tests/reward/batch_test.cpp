// Batched reward arithmetic on the CPU backend: hand-computed values, equality with the scalar
// functions on random batches, bad input. tests/reward/reward_device_test.cpp runs the same
// batches on the device backend against these.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <vector>

#include "xplor/reward/batch.hpp"

using namespace xplor::reward;

namespace {
std::vector<outcome> all_outcomes() {
  return {outcome::correct, outcome::abstain, outcome::incorrect, outcome::no_answer};
}
}  // namespace

TEST_CASE("truth_rewards: TruthRL's table, element by element", "[reward][batch]") {
  const auto o = all_outcomes();
  std::vector<float> out(4);
  truth_rewards(xplor::cpu, std::span<const outcome>(o), reward_variant::ternary, {}, std::span(out));
  CHECK(out == std::vector<float>{1, 0, -1, -1});
  truth_rewards(xplor::cpu, std::span<const outcome>(o), reward_variant::binary, {}, std::span(out));
  CHECK(out == std::vector<float>{1, -1, -1, -1});
  const std::vector<std::uint8_t> ook = {1, 1, 0, 1};
  truth_rewards(xplor::cpu, std::span<const outcome>(o), reward_variant::ternary_ook, std::span(ook),
                std::span(out));
  CHECK(out == std::vector<float>{-1, 1, -1, -1});  // a correct answer out of knowledge is a lucky guess
  truth_rewards(xplor::cpu, std::span<const outcome>(o), reward_variant::binary_ook, std::span(ook),
                std::span(out));
  CHECK(out == std::vector<float>{-1, 1, -1, -1});

  std::mt19937 rng(11);
  std::vector<outcome> many(5000);
  std::vector<std::uint8_t> flags(many.size());
  for (std::size_t i = 0; i < many.size(); ++i) {
    many[i] = static_cast<outcome>(rng() % 4);
    flags[i] = static_cast<std::uint8_t>(rng() % 2);
  }
  std::vector<float> got(many.size());
  for (auto variant : {reward_variant::ternary, reward_variant::binary, reward_variant::ternary_ook,
                       reward_variant::binary_ook}) {
    truth_rewards(xplor::cpu, std::span<const outcome>(many), variant, std::span<const std::uint8_t>(flags),
                  std::span(got));
    for (std::size_t i = 0; i < many.size(); ++i)
      REQUIRE(got[i] == truth_reward(many[i], variant, flags[i] != 0));
  }
}

TEST_CASE("truth_rewards: bad codes, variants and sizes", "[reward][batch][errors]") {
  std::vector<outcome> o = all_outcomes();
  o[2] = static_cast<outcome>(7);
  std::vector<float> out(4);
  CHECK_THROWS_WITH(
      truth_rewards(xplor::cpu, std::span<const outcome>(o), reward_variant::ternary, {}, std::span(out)),
      Catch::Contains("outcomes[2] = 7 is not an outcome (0..3)"));
  o[2] = outcome::incorrect;
  CHECK_THROWS_WITH(truth_rewards(xplor::cpu, std::span<const outcome>(o), static_cast<reward_variant>(9), {},
                                  std::span(out)),
                    Catch::Contains("variant = 9"));
  std::vector<float> short_out(3);
  CHECK_THROWS_WITH(truth_rewards(xplor::cpu, std::span<const outcome>(o), reward_variant::binary, {},
                                  std::span(short_out)),
                    Catch::Contains("out has 3 elements for 4 outcomes"));
  const std::vector<std::uint8_t> ook(2);
  CHECK_THROWS_WITH(truth_rewards(xplor::cpu, std::span<const outcome>(o), reward_variant::ternary_ook,
                                  std::span(ook), std::span(out)),
                    Catch::Contains("out_of_knowledge has 2 elements for 4 outcomes"));
}

TEST_CASE("overlong_penalties: DAPO's ramp, both modes", "[reward][batch]") {
  // max 20, buffer 4, factor 1: 0 up to 16, then -1/4 per token, -1 at 20; linear goes on (-2 at 24).
  const std::vector<std::int64_t> lengths = {0, 16, 17, 18, 20, 22, 24};
  std::vector<float> out(lengths.size());
  overlong_penalties(xplor::cpu, std::span<const std::int64_t>(lengths), 20, 4, 1.0f, overlong_mode::linear,
                     std::span(out));
  CHECK(out == std::vector<float>{0, 0, -0.25f, -0.5f, -1, -1.5f, -2});
  overlong_penalties(xplor::cpu, std::span<const std::int64_t>(lengths), 20, 4, 1.0f, overlong_mode::clipped,
                     std::span(out));
  CHECK(out == std::vector<float>{0, 0, -0.25f, -0.5f, -1, -1, -1});

  std::mt19937 rng(5);
  std::vector<std::int64_t> many(4000);
  for (auto& l : many) l = static_cast<std::int64_t>(rng() % 1500);
  std::vector<float> got(many.size());
  for (auto mode : {overlong_mode::linear, overlong_mode::clipped}) {
    overlong_penalties(xplor::cpu, std::span<const std::int64_t>(many), 1024, 256, 0.7f, mode,
                       std::span(got));
    for (std::size_t i = 0; i < many.size(); ++i)
      REQUIRE(got[i] == overlong_penalty(many[i], 1024, 256, 0.7f, mode));
  }
  const std::vector<std::int64_t> bad = {3, -2};
  std::vector<float> two(2);
  CHECK_THROWS_WITH(overlong_penalties(xplor::cpu, std::span<const std::int64_t>(bad), 20, 4, 1.0f,
                                       overlong_mode::linear, std::span(two)),
                    Catch::Contains("lengths[1] is negative"));
  CHECK_THROWS_WITH(overlong_penalties(xplor::cpu, std::span<const std::int64_t>(lengths), 20, 30, 1.0f,
                                       overlong_mode::linear, std::span(out)),
                    Catch::Contains("buffer_length = 30 exceeds max_length = 20"));
}

TEST_CASE("format_rewards: markers once, in order, anchored", "[reward][batch]") {
  // Markers 100 <think>, 101 </think>, 102 <answer>, 103 </answer>; 0 is eos.
  const std::vector<std::vector<std::int32_t>> completions = {
      {100, 5, 6, 101, 102, 7, 103, 0},  // well formed, trailing eos
      {100, 5, 101, 102, 7, 103},        // well formed
      {5, 100, 101, 102, 7, 103},        // text before <think>: fails anchored only
      {100, 101, 102, 103, 9},           // text after </answer>: fails anchored only
      {100, 102, 101, 103},              // out of order
      {100, 101, 102, 103, 103},         // a marker twice
      {100, 101, 102},                   // a marker missing
      {},                                // empty
  };
  std::vector<std::int32_t> tokens;
  std::vector<std::int64_t> offsets = {0};
  for (const auto& c : completions) {
    tokens.insert(tokens.end(), c.begin(), c.end());
    offsets.push_back(static_cast<std::int64_t>(tokens.size()));
  }
  const std::vector<std::int32_t> markers = {100, 101, 102, 103};
  std::vector<float> out(completions.size());
  format_options o;
  o.eos = 0;
  format_rewards(xplor::cpu, std::span<const std::int32_t>(tokens), offsets, markers, o, std::span(out));
  CHECK(out == std::vector<float>{1, 1, 0, 0, 0, 0, 0, 0});
  o.anchored = false;
  o.matched = 0.5f;
  o.unmatched = -1.0f;
  format_rewards(xplor::cpu, std::span<const std::int32_t>(tokens), offsets, markers, o, std::span(out));
  CHECK(out == std::vector<float>{0.5f, 0.5f, 0.5f, 0.5f, -1, -1, -1, -1});

  // Random completions against a direct statement of the rule.
  std::mt19937 rng(2);
  tokens.clear();
  offsets = {0};
  std::vector<float> expected;
  for (int r = 0; r < 3000; ++r) {
    const int len = static_cast<int>(rng() % 9);
    std::vector<std::int32_t> c;
    for (int t = 0; t < len; ++t)
      c.push_back(rng() % 2 ? 100 + static_cast<std::int32_t>(rng() % 4)
                            : 1 + static_cast<std::int32_t>(rng() % 5));
    if (rng() % 3 == 0) c = {100, 3, 101, 102, 4, 103};  // some well-formed ones
    if (rng() % 2) c.push_back(0);
    std::vector<std::int32_t> body = c;
    if (!body.empty() && body.back() == 0) body.pop_back();
    std::vector<std::int32_t> seen;
    for (auto t : body)
      if (t >= 100) seen.push_back(t);
    const bool ok = seen == markers && body.front() == 100 && body.back() == 103;
    expected.push_back(ok ? 1.0f : 0.0f);
    tokens.insert(tokens.end(), c.begin(), c.end());
    offsets.push_back(static_cast<std::int64_t>(tokens.size()));
  }
  std::vector<float> got(expected.size());
  format_options anchored;
  anchored.eos = 0;
  format_rewards(xplor::cpu, std::span<const std::int32_t>(tokens), offsets, markers, anchored,
                 std::span(got));
  CHECK(got == expected);
}

TEST_CASE("format_rewards: bad offsets and markers", "[reward][batch][errors]") {
  const std::vector<std::int32_t> tokens = {1, 2, 3};
  std::vector<float> out(2);
  const std::vector<std::int32_t> markers = {1, 2};
  const auto call = [&](std::vector<std::int64_t> offsets, std::vector<std::int32_t> m,
                        format_options o = {}) {
    format_rewards(xplor::cpu, std::span<const std::int32_t>(tokens), offsets, m, o, std::span(out));
  };
  CHECK_THROWS_WITH(call({0, 2, 1}, markers), Catch::Contains("offsets[2] = 1 is below offsets[1] = 2"));
  CHECK_THROWS_WITH(call({0, 1, 2}, markers), Catch::Contains("offsets ends at 2, tokens has 3"));
  CHECK_THROWS_WITH(call({1, 2, 3}, markers), Catch::Contains("offsets[0] = 1 must be 0"));
  CHECK_THROWS_WITH(call({0, 3}, markers), Catch::Contains("out has 2 elements for 1 completions"));
  CHECK_THROWS_WITH(call({0, 1, 3}, {}), Catch::Contains("markers is empty"));
  CHECK_THROWS_WITH(call({0, 1, 3}, {4, 4}), Catch::Contains("markers[1] repeats markers[0] = 4"));
  format_options o;
  o.eos = 2;
  CHECK_THROWS_WITH(call({0, 1, 3}, markers, o), Catch::Contains("markers[1] = 2 is the eos token"));
  o.eos = -1;
  o.matched = std::numeric_limits<float>::quiet_NaN();
  CHECK_THROWS_WITH(call({0, 1, 3}, markers, o), Catch::Contains("must be finite"));
}

TEST_CASE("weighted_sum: composite_reward's sum with NaN for not applicable", "[reward][batch]") {
  const float na = std::numeric_limits<float>::quiet_NaN();
  // [3 samples, 2 functions], weights 1 and 0.5.
  const std::vector<float> values = {1.0f, 2.0f, na, 4.0f, na, na};
  const std::vector<float> weights = {1.0f, 0.5f};
  std::vector<float> out(3);
  weighted_sum(xplor::cpu, xplor::view2d<const float>(values.data(), {3, 2}, {2, 1}), weights,
               std::span(out));
  CHECK(out == std::vector<float>{2.0f, 2.0f, 0.0f});

  // Random batches against composite_reward::sum on the same values.
  struct sample {
    std::vector<std::optional<float>> v;
  };
  std::mt19937 rng(9);
  std::uniform_real_distribution<float> u(-3.0f, 3.0f);
  const std::vector<float> w = {1.0f, -0.25f, 2.0f};
  composite_reward<sample> c;
  const char* names[] = {"f0", "f1", "f2"};
  for (std::size_t k = 0; k < w.size(); ++k)
    c.add(
        names[k], [k](const sample& s) { return s.v[k]; }, w[k]);
  std::vector<sample> samples(2000);
  std::vector<float> flat;
  for (auto& s : samples)
    for (std::size_t k = 0; k < w.size(); ++k) {
      s.v.push_back(rng() % 4 == 0 ? std::nullopt : std::optional<float>(u(rng)));
      flat.push_back(s.v.back() ? *s.v.back() : na);
    }
  std::vector<float> got(samples.size());
  weighted_sum(xplor::cpu, xplor::view2d<const float>(flat.data(), {2000, 3}, {3, 1}), w, std::span(got));
  CHECK(got == c.sum(std::span<const sample>(samples)));

  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> bad = {1.0f, inf};
  std::vector<float> one(1);
  CHECK_THROWS_WITH(weighted_sum(xplor::cpu, xplor::view2d<const float>(bad.data(), {1, 2}, {2, 1}), weights,
                                 std::span(one)),
                    Catch::Contains("values(0, 1) is infinite"));
  const std::vector<float> bad_w = {1.0f, na};
  CHECK_THROWS_WITH(weighted_sum(xplor::cpu, xplor::view2d<const float>(values.data(), {3, 2}, {2, 1}), bad_w,
                                 std::span(out)),
                    Catch::Contains("weights[1] = nan is not finite"));
  CHECK_THROWS_WITH(weighted_sum(xplor::cpu, xplor::view2d<const float>(values.data(), {2, 3}, {3, 1}),
                                 weights, std::span(out)),
                    Catch::Contains("values has 3 columns for 2 weights"));
}
