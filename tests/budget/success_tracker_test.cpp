#include "xplor/budget/success_tracker.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <vector>

namespace kb = xplor::budget;
using Catch::Matchers::Contains;

namespace {

std::vector<double> repeat(double r, int n) { return std::vector<double>(static_cast<std::size_t>(n), r); }

kb::tracker_options with_mode(kb::estimate_mode mode) {
  kb::tracker_options o;
  o.mode = mode;
  return o;
}

}  // namespace

TEST_CASE("no estimate until 8 rewards have been seen, then the last visit's mean", "[budget][tracker]") {
  kb::success_tracker t;
  CHECK_FALSE(t.estimate(7).has_value());
  CHECK(t.count(7) == 0);
  t.record(7, std::vector<double>{1, 0, 1, 1});
  CHECK_FALSE(t.estimate(7).has_value());  // 4 < 8
  CHECK(t.count(7) == 4);
  t.record(7, std::vector<double>{0, 0, 1, 0});
  REQUIRE(t.estimate(7).has_value());
  CHECK(*t.estimate(7) == 0.25);  // the last visit only: 1 / 4
  t.record(7, repeat(1.0, 8));
  CHECK(*t.estimate(7) == 1.0);
  t.record(7, repeat(0.0, 2));
  CHECK(*t.estimate(7) == 0.0);
  CHECK(t.count(7) == 18);
  CHECK(t.size() == 1);
  t.clear();
  CHECK(t.size() == 0);
  CHECK_FALSE(t.estimate(7).has_value());
}

TEST_CASE("last_visit_robust and sliding_buffer follow update_sample_state", "[budget][tracker]") {
  // robust_epoch_estimation: a visit of >= 16 rewards stands alone; a smaller one is pooled with
  // the previous visits up to 16 rewards.
  kb::success_tracker robust(with_mode(kb::estimate_mode::last_visit_robust));
  robust.record(1, repeat(1.0, 8));
  CHECK(*robust.estimate(1) == 1.0);
  robust.record(1, repeat(0.0, 8));
  CHECK(*robust.estimate(1) == 0.5);  // last 16 = 8 ones + 8 zeros
  robust.record(1, repeat(0.0, 4));
  CHECK(*robust.estimate(1) == 0.25);  // last 16 = 4 ones + 12 zeros
  robust.record(1, repeat(1.0, 16));
  CHECK(*robust.estimate(1) == 1.0);  // a full visit
  robust.record(1, std::vector<double>{0, 0});
  CHECK(*robust.estimate(1) == 14.0 / 16.0);
  // sliding_buffer: always the last 16 rewards, even after a full visit.
  kb::success_tracker sliding(with_mode(kb::estimate_mode::sliding_buffer));
  sliding.record(1, repeat(0.0, 20));
  sliding.record(1, repeat(1.0, 20));
  CHECK(*sliding.estimate(1) == 1.0);
  sliding.record(1, repeat(0.0, 4));
  CHECK(*sliding.estimate(1) == 0.75);
}

TEST_CASE("estimates: random property test against a plain history", "[budget][tracker]") {
  std::mt19937 gen(8);
  for (const auto mode : {kb::estimate_mode::last_visit, kb::estimate_mode::last_visit_robust,
                          kb::estimate_mode::sliding_buffer}) {
    kb::tracker_options o;
    o.mode = mode;
    o.buffer_length = 1 + static_cast<int>(gen() % 20);
    o.min_rollouts = static_cast<int>(gen() % 12);
    kb::success_tracker t(o);
    std::map<std::int64_t, std::vector<std::vector<double>>> history;
    for (int step = 0; step < 3000; ++step) {
      const std::int64_t id = static_cast<std::int64_t>(gen() % 40);
      std::vector<double> visit(1 + gen() % 24);
      for (double& r : visit)
        r = (gen() % 3 == 0) ? 0.5 * static_cast<double>(gen() % 3) : static_cast<double>(gen() % 2);
      t.record(id, visit);
      history[id].push_back(visit);
      // The reference rule, written out.
      const auto& h = history[id];
      std::size_t count = 0;
      for (const auto& v : h) count += v.size();
      const auto e = t.estimate(id);
      INFO("mode " << static_cast<int>(mode) << ", step " << step);
      REQUIRE(e.has_value() == (count >= static_cast<std::size_t>(o.min_rollouts)));
      if (!e) continue;
      const auto& last = h.back();
      double expected = std::accumulate(last.begin(), last.end(), 0.0) / static_cast<double>(last.size());
      const bool pooled = mode == kb::estimate_mode::sliding_buffer ||
                          (mode == kb::estimate_mode::last_visit_robust &&
                           last.size() < static_cast<std::size_t>(o.buffer_length));
      if (pooled) {
        std::deque<double> recent;
        for (const auto& v : h)
          for (const double r : v) {
            recent.push_back(r);
            if (recent.size() > static_cast<std::size_t>(o.buffer_length)) recent.pop_front();
          }
        expected = std::accumulate(recent.begin(), recent.end(), 0.0) / static_cast<double>(recent.size());
      }
      REQUIRE(*e == Approx(expected).margin(1e-12));
    }
  }
}

TEST_CASE("ternary rewards count -1 as a failure", "[budget][tracker]") {
  kb::tracker_options o;
  o.rewards = kb::reward_scale::ternary;
  kb::success_tracker t(o);
  t.record(3, std::vector<double>{-1, 1, 0, 1, -1, 1, 1, 1});
  CHECK(*t.estimate(3) == 5.0 / 8.0);
  CHECK_THROWS_WITH(t.record(3, std::vector<double>{0.5}), Contains("rewards[0] = 0.5 is not -1, 0 or 1"));
}

TEST_CASE("success_tracker rejects bad input", "[budget][tracker]") {
  kb::success_tracker t;
  CHECK_THROWS_AS(t.record(1, std::vector<double>{0.5, 1.5}), xplor::error);
  CHECK_THROWS_WITH(t.record(1, std::vector<double>{0.5, 1.5}),
                    Contains("xplor::budget::success_tracker::record") && Contains("rewards[1] = 1.5"));
  CHECK_THROWS_WITH(t.record(1, std::vector<double>{-1.0}), Contains("rewards[0] = -1 is outside [0, 1]"));
  CHECK_THROWS_WITH(t.record(1, std::vector<double>{std::numeric_limits<double>::quiet_NaN()}),
                    Contains("rewards[0] = nan"));
  CHECK_THROWS_WITH(t.record(1, std::vector<double>{}), Contains("rewards is empty"));
  CHECK(t.count(1) == 0);  // a rejected visit changes nothing
  kb::tracker_options o;
  o.buffer_length = 0;
  CHECK_THROWS_WITH(kb::success_tracker(o), Contains("options.buffer_length = 0"));
  o.buffer_length = 16;
  o.min_rollouts = -1;
  CHECK_THROWS_WITH(kb::success_tracker(o), Contains("options.min_rollouts = -1"));
  const kb::batch_estimates broken{{0.5, 0.5}, {1}};
  CHECK_THROWS_WITH(kb::allocate_rollouts(broken, 8), Contains("estimates.p_hat has 2 entries"));
}

TEST_CASE("a batch's estimates feed allocate_rollouts, unseen prompts get the uniform share",
          "[budget][tracker]") {
  kb::success_tracker t;
  t.record(10, std::vector<double>{1, 0, 1, 0, 1, 0, 1, 0});  // p = 0.5
  t.record(11, std::vector<double>{1, 0, 0, 0, 0, 0, 0, 0});  // p = 0.125
  t.record(12, std::vector<double>{1, 1, 1});                 // 3 rewards: no estimate yet
  const std::vector<std::int64_t> ids{10, 99, 11, 12};
  const auto e = t.estimates(ids);
  CHECK(e.p_hat == std::vector<double>{0.5, 0.0, 0.125, 0.0});
  CHECK(e.has_estimate == std::vector<std::uint8_t>{1, 0, 1, 0});
  const auto n = t.allocate(ids, 32);
  CHECK(n[1] == 8);  // uniform share B / M
  CHECK(n[3] == 8);
  CHECK(n == kb::allocate_rollouts(e, 32));
  CHECK(n[0] + n[2] == 16);
  CHECK(n == std::vector<int>{6, 8, 10, 8});
  // Reference mode on the same estimates.
  kb::allocation_options compat;
  compat.reference_compat = true;
  CHECK(t.allocate(ids, 32, compat) == kb::allocate_rollouts(e.p_hat, e.has_estimate, 32, compat));
}

TEST_CASE("prompt ids can be strings", "[budget][tracker]") {
  kb::basic_success_tracker<std::string> t;
  t.record("gsm8k/17", std::vector<double>(8, 1.0));
  CHECK(*t.estimate("gsm8k/17") == 1.0);
  CHECK_FALSE(t.estimate("gsm8k/18").has_value());
  const std::vector<std::string> ids{"gsm8k/17", "gsm8k/18"};
  CHECK(t.estimates(ids).has_estimate == std::vector<std::uint8_t>{1, 0});
}
