#include "xplor/reward/composite.hpp"

#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

using xplor::reward::composite_reward;
using xplor::reward::overlong_mode;
using xplor::reward::overlong_penalty;

namespace {
using opt = std::optional<float>;
}  // namespace

TEST_CASE("composite_reward evaluates named functions", "[composite]") {
  struct sample {
    float correctness;
    int length;
  };
  composite_reward<sample> reward;
  reward.add("correct", [](const sample& s) { return std::optional<float>(s.correctness); })
      .add(
          "short",
          [](const sample& s) {
            return s.length < 0 ? std::nullopt : std::optional<float>(-0.01f * static_cast<float>(s.length));
          },
          2.0f);
  CHECK(reward.size() == 2);
  CHECK(reward.names() == std::vector<std::string>{"correct", "short"});
  const std::vector<sample> samples{{1, 10}, {-1, -1}, {0, 50}, {1, 0}};
  const auto values = reward.evaluate(samples);
  REQUIRE(values.size() == 8);
  CHECK_FALSE(values[3].has_value());
  const auto sums = reward.sum(samples);
  CHECK(sums[0] == Approx(1.0 - 0.2));
  CHECK(sums[1] == Approx(-1.0));
  CHECK(sums[2] == Approx(-1.0));
  CHECK(reward.weights()[1] == 2.0f);

  composite_reward<sample> bad;
  bad.add("nan", [](const sample&) { return std::optional<float>(std::numeric_limits<float>::quiet_NaN()); });
  CHECK_THROWS_WITH(bad.evaluate(samples),
                    Catch::Contains("\"nan\" returned nan") && Catch::Contains("samples[0]"));
  CHECK_THROWS_WITH(bad.add("empty", composite_reward<sample>::function_type{}),
                    Catch::Contains("function \"empty\" is empty"));
  // Not a reward function at all (wrong argument or result type) does not compile:
  // tests/compile_fail/not_a_reward_function.cpp.
  CHECK_THROWS_WITH(bad.add(
                        "w", [](const sample&) { return std::optional<float>(1.0f); },
                        std::numeric_limits<float>::infinity()),
                    Catch::Contains("weight = inf"));
  CHECK_THROWS_WITH(composite_reward<sample>{}.evaluate(samples), Catch::Contains("no reward functions"));
}

TEST_CASE("overlong_penalty: DAPO's soft length penalty", "[composite]") {
  // L_max = 20, L_buf = 5: free up to 15, then linear down to -f at 20.
  CHECK(overlong_penalty(0, 20, 5) == 0.0f);
  CHECK(overlong_penalty(10, 20, 5) == 0.0f);
  CHECK(overlong_penalty(15, 20, 5) == 0.0f);
  CHECK(overlong_penalty(16, 20, 5) == Approx(-0.2));
  CHECK(overlong_penalty(18, 20, 5) == Approx(-0.6));
  CHECK(overlong_penalty(20, 20, 5) == Approx(-1.0));
  CHECK(overlong_penalty(18, 20, 5, 0.5f) == Approx(-0.3));
  CHECK(overlong_penalty(18, 20, 5, 0.0f) == 0.0f);
  // Past L_max: the reference code keeps decreasing; the paper / TRL clip at -f.
  CHECK(overlong_penalty(25, 20, 5) == Approx(-2.0));
  CHECK(overlong_penalty(25, 20, 5, 0.5f, overlong_mode::linear) == Approx(-1.0));
  CHECK(overlong_penalty(25, 20, 5, 1.0f, overlong_mode::clipped) == Approx(-1.0));
  CHECK(overlong_penalty(25, 20, 5, 0.5f, overlong_mode::clipped) == Approx(-0.5));
  CHECK(overlong_penalty(20, 20, 5, 1.0f, overlong_mode::clipped) == Approx(-1.0));
  CHECK(overlong_penalty(19, 20, 20) == Approx(-0.95));
  // DAPO's setting: L_max = 20480, L_buf = 4096.
  CHECK(overlong_penalty(16384, 20480, 4096) == 0.0f);
  CHECK(overlong_penalty(18432, 20480, 4096) == Approx(-0.5));

  CHECK_THROWS_WITH(overlong_penalty(10, 20, 0), Catch::Contains("buffer_length = 0"));
  CHECK_THROWS_WITH(overlong_penalty(10, 20, -3), Catch::Contains("buffer_length = -3"));
  CHECK_THROWS_WITH(overlong_penalty(10, 20, 21),
                    Catch::Contains("buffer_length = 21 exceeds max_length = 20"));
  CHECK_THROWS_WITH(overlong_penalty(-1, 20, 5), Catch::Contains("length = -1"));
  CHECK_THROWS_WITH(overlong_penalty(1, 0, 5), Catch::Contains("max_length = 0"));
  CHECK_THROWS_WITH(overlong_penalty(1, 20, 5, NAN), Catch::Contains("factor = nan"));
  CHECK_THROWS_WITH(overlong_penalty(1, 20, 5, -1.0f), Catch::Contains("factor = -1"));
  CHECK_THROWS_WITH(overlong_penalty(1, 20, 5, 1.0f, static_cast<overlong_mode>(4)),
                    Catch::Contains("mode = 4"));
}

TEST_CASE("overlong_penalty is monotone and bounded on random lengths", "[composite][property]") {
  std::mt19937 gen(55);
  std::uniform_int_distribution<std::int64_t> max_len(1, 5000);
  std::uniform_real_distribution<float> factor(0.0f, 3.0f);
  for (int trial = 0; trial < 300; ++trial) {
    const std::int64_t lmax = max_len(gen);
    const std::int64_t lbuf = std::uniform_int_distribution<std::int64_t>(1, lmax)(gen);
    const float f = factor(gen);
    float previous = 0.0f;
    for (std::int64_t len = 0; len <= lmax + lbuf; len += 1 + lmax / 50) {
      const float p = overlong_penalty(len, lmax, lbuf, f);
      const float c = overlong_penalty(len, lmax, lbuf, f, overlong_mode::clipped);
      CHECK(p <= previous + 1e-6f);
      CHECK(p <= 0.0f);
      CHECK(c >= -f - 1e-5f);
      if (len <= lmax) CHECK(c == p);
      if (len <= lmax - lbuf) CHECK(p == 0.0f);
      previous = p;
    }
  }
}
