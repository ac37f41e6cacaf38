// The parallel allocator (budget/knapsack_parallel.hpp) on the CPU backend against the host
// solver: the same counts on every instance, for any thread count.
#include "xplor/budget/knapsack_parallel.hpp"

#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <random>
#include <span>
#include <vector>

#include "instances.hpp"

namespace kb = xplor::budget;
using Catch::Matchers::Contains;

namespace {

std::vector<int> parallel(const xplor::test::knapsack_instance& x, int threads = 0) {
  std::vector<int> out(x.p.size(), -1);
  kb::allocate_rollouts(xplor::cpu_t{threads}, std::span<const double>(x.p),
                        std::span<const std::uint8_t>(x.has), x.budget, std::span<int>(out), x.options);
  return out;
}

std::vector<int> host(const xplor::test::knapsack_instance& x) {
  return kb::allocate_rollouts(x.p, x.has, x.budget, x.options);
}

xplor::test::knapsack_instance instance(std::vector<double> p, std::int64_t budget, int n_min, int n_max,
                                        std::vector<std::uint8_t> has = {}) {
  xplor::test::knapsack_instance x;
  x.p = std::move(p);
  x.has = std::move(has);
  x.budget = budget;
  x.options.n_min = n_min;
  x.options.n_max = n_max;
  return x;
}

}  // namespace

TEST_CASE("parallel allocator: the host solver's worked allocations and tie rules", "[budget][knapsack]") {
  // Ties spread level by level, extras to the lower indices.
  CHECK(parallel(instance({0.0, 1.0, 0.0, 0.0}, 14, 2, 128)) == std::vector<int>{4, 4, 3, 3});
  CHECK(parallel(instance(std::vector<double>(5, 0.3), 33, 2, 128)) == std::vector<int>{7, 7, 7, 6, 6});
  CHECK(parallel(instance({0.0, 0.5, 0.0}, 3 * 128 - 1, 2, 128)) == std::vector<int>{128, 128, 127});
  // n_min = 0 (the hull and its dent repair): no prompt is left at one rollout unless every optimum does.
  CHECK(parallel(instance({0.5, 0.5}, 3, 0, 2)) == std::vector<int>{2, 1});
  CHECK(parallel(instance({0.5, 0.5}, 3, 0, 3)) == std::vector<int>{3, 0});
  CHECK(parallel(instance({0.5, 0.5, 0.5}, 5, 0, 8)) == std::vector<int>{3, 2, 0});
  // A tie across tasks: the fourth gain of p_a (a tail gain) equals, bit for bit, the hull gain of
  // p_b (found by bisection over doubles). With 4 rollouts the odd tied unit goes to the task that
  // already holds 3 rather than leaving the flat task at one.
  const double p_a = 0.25255069025739424, p_b = 0.17040283896136038;
  {
    const std::vector<double> pair{p_a, p_b};
    const kb::detail::gain_model model(pair, 0, 8, false);
    auto a = model.walker(0), b = model.walker(1);
    for (int k = 0; k < 3; ++k) a.next();
    REQUIRE(a.next() == b.next());
  }
  CHECK(parallel(instance({p_a, p_b}, 4, 0, 8)) == std::vector<int>{4, 0});
  CHECK(kb::knapsack_fast(std::vector<double>{p_a, p_b}, 4, 0, 8) == std::vector<int>{4, 0});
  // Tasks without an estimate: the uniform share, the remainder to the others.
  const double nan = std::numeric_limits<double>::quiet_NaN();
  CHECK(parallel(instance({nan, 0.5, 0.1}, 24, 2, 128, {0, 1, 1})) == std::vector<int>{8, 6, 10});
  CHECK(parallel(instance({nan, 0.5, 0.1}, 26, 2, 128, {0, 1, 1})) == std::vector<int>{8, 6, 12});
  CHECK(parallel(instance({nan, nan, nan}, 25, 2, 128, {0, 0, 0})) == std::vector<int>{9, 8, 8});
  CHECK(parallel(instance({0.0, 0.5, 0.5}, 26, 2, 9, {0, 0, 1})) == std::vector<int>{9, 8, 9});
  CHECK(parallel(instance({}, 0, 2, 128)).empty());
}

TEST_CASE("parallel allocator equals the host solver on random instances, any thread count",
          "[budget][knapsack][property]") {
  std::mt19937 gen(2024);
  int large = 0, hull = 0, missing = 0;
  for (int t = 0; t < 2000; ++t) {
    const auto x = xplor::test::random_knapsack_instance(gen, t);
    INFO("instance " << t << ": M = " << x.p.size() << ", n in [" << x.options.n_min << ", "
                     << x.options.n_max << "], budget " << x.budget);
    const auto expected = host(x);
    REQUIRE(parallel(x, 1) == expected);
    if (t % 8 == 3) REQUIRE(parallel(x, 2) == expected);
    large += x.p.size() >= 600;
    hull += x.options.n_min == 0 && x.options.n_max >= 2;
    missing += !x.has.empty();
  }
  CHECK(large >= 400);  // each family is exercised
  CHECK(hull >= 300);
  CHECK(missing >= 500);
}

TEST_CASE("parallel allocator equals the host solver at a million tasks", "[budget][knapsack][property]") {
  std::mt19937 gen(5);
  xplor::test::knapsack_instance x;
  x.p.resize(1000000);
  std::binomial_distribution<int> successes(8, 0.3);
  for (std::size_t i = 0; i < x.p.size(); ++i)  // half on the k/8 grid (ties), half uniform
    x.p[i] = i % 2 ? successes(gen) / 8.0 : std::uniform_real_distribution<double>(0.0, 1.0)(gen);
  x.budget = 8000000;
  CHECK(parallel(x) == host(x));
}

TEST_CASE("parallel allocator rejects bad input", "[budget][knapsack]") {
  std::vector<int> out(3);
  const std::vector<double> p{0.5, 0.2, 0.1};
  const auto call = [&](std::span<const double> q, std::int64_t budget, kb::allocation_options o = {},
                        std::span<const std::uint8_t> has = {}, std::span<int> dst = {}) {
    kb::allocate_rollouts(xplor::cpu, q, has, budget, dst.empty() ? std::span<int>(out) : dst, o);
  };
  const std::vector<double> bad{0.5, std::numeric_limits<double>::quiet_NaN(), 0.1};
  CHECK_THROWS_WITH(call(bad, 24), Contains("p_hat[1] = nan is not a probability"));
  CHECK_THROWS_WITH(call(std::vector<double>{0.5, 1.5, 0.1}, 24), Contains("p_hat[1] = 1.5"));
  const std::vector<std::uint8_t> skip{1, 0, 1};
  call(bad, 24, {}, skip);  // a task without an estimate is not read
  CHECK(out == kb::allocate_rollouts(bad, skip, 24));
  CHECK(out[1] == 8);
  CHECK_THROWS_WITH(call(p, 5), Contains("total_budget = 5 is below M * n_min"));
  CHECK_THROWS_WITH(call(p, 385), Contains("exceeds M * n_max"));
  kb::allocation_options o;
  o.reference_compat = true;
  CHECK_THROWS_WITH(call(p, 24, o), Contains("reference_compat = true runs on the host only"));
  o = {};
  o.solver = kb::solver_kind::dp;
  CHECK_THROWS_WITH(call(p, 24, o), Contains("solver_kind::dp runs on the host only"));
  std::vector<int> short_out(2);
  CHECK_THROWS_WITH(call(p, 24, {}, {}, short_out), Contains("out has 2 entries but p_hat has 3"));
  const std::vector<std::uint8_t> short_has{1, 1};
  CHECK_THROWS_WITH(call(p, 24, {}, short_has), Contains("has_estimate has 2 entries"));
  o = {};
  o.n_min = 5, o.n_max = 4;
  CHECK_THROWS_WITH(call(p, 24, o), Contains("n_min = 5 exceeds n_max = 4"));
}
