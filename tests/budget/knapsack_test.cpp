#include "xplor/budget/knapsack.hpp"

#include <algorithm>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdint>
#include <limits>
#include <numeric>
#include <queue>
#include <random>
#include <string>
#include <vector>

#include "instances.hpp"

namespace kb = xplor::budget;
using Catch::Matchers::Contains;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

std::int64_t sum(const std::vector<int>& n) { return std::accumulate(n.begin(), n.end(), std::int64_t{0}); }

kb::allocation_options opts(int n_min, int n_max, kb::solver_kind solver = kb::solver_kind::fast,
                            bool compat = false) {
  kb::allocation_options o;
  o.n_min = n_min;
  o.n_max = n_max;
  o.solver = solver;
  o.reference_compat = compat;
  return o;
}

/// Greedy with a heap on the solver's own gains, key (gain desc, position asc, index asc): the
/// textbook exact algorithm for concave gains (n_min >= 1), with the documented tie order.
std::vector<int> heap_greedy(const std::vector<double>& p, std::int64_t budget, int n_min, int n_max) {
  const kb::detail::gain_model model(p, n_min, n_max, false);
  std::vector<kb::detail::gain_walker> walk;
  for (std::size_t i = 0; i < p.size(); ++i) walk.push_back(model.walker(i));
  struct item {
    double gain;
    int pos;
    std::size_t task;
  };
  const auto worse = [](const item& a, const item& b) {
    if (a.gain != b.gain) return a.gain < b.gain;
    if (a.pos != b.pos) return a.pos > b.pos;
    return a.task > b.task;
  };
  std::priority_queue<item, std::vector<item>, decltype(worse)> heap(worse);
  std::vector<int> n(p.size(), n_min);
  if (model.L > 0)
    for (std::size_t i = 0; i < p.size(); ++i) heap.push({walk[i].next(), 0, i});
  for (std::int64_t k = budget - static_cast<std::int64_t>(p.size()) * n_min; k > 0; --k) {
    const item top = heap.top();
    heap.pop();
    ++n[top.task];
    if (top.pos + 1 < model.L) heap.push({walk[top.task].next(), top.pos + 1, top.task});
  }
  return n;
}

using xplor::test::tie_heavy_p;

}  // namespace

// ------------------------------------------------------------------------------------------------
// Formulas

TEST_CASE("rollout_value reproduces the worked values of docs/methods.md 3.7", "[budget][knapsack]") {
  struct row {
    int n;
    double p, nonzero, gain, value;
  };
  const row rows[] = {
      {8, 0.5, 0.9921875, 0.125, 0.1240234375},         {8, 0.1, 0.56953278, 0.081, 0.0461321552},
      {8, 0.9, 0.56953278, 0.009, 0.0051257950},        {2, 0.5, 0.5, 0.125, 0.0625},
      {16, 0.05, 0.5598733313, 0.045125, 0.0252642841}, {93, 0.01, 0.6072889716, 0.009801, 0.0059520392},
  };
  for (const row& r : rows) {
    INFO("n = " << r.n << ", p = " << r.p);
    CHECK(kb::prob_nonzero_gradient(r.n, r.p) == Approx(r.nonzero).margin(5e-9));
    CHECK(kb::info_gain(r.p) == Approx(r.gain).margin(1e-15));
    CHECK(kb::rollout_value(r.n, r.p) == Approx(r.value).margin(5e-11));
  }
  CHECK(kb::rollout_value(8, 0.5) == 0.1240234375);  // exact in binary
  for (const int n : {0, 1, 2, 8, 128}) {
    CHECK(kb::rollout_value(n, 0.0) == 0.0);
    CHECK(kb::rollout_value(n, 1.0) == 0.0);
  }
  // No rollouts or one rollout: never both outcomes (the literal formula would give -1 at n = 0).
  CHECK(kb::prob_nonzero_gradient(0, 0.3) == 0.0);
  CHECK(kb::prob_nonzero_gradient(1, 0.3) == 0.0);
  // InfoGain peaks at p = 1/3 with 4/27.
  CHECK(kb::info_gain(1.0 / 3.0) == Approx(4.0 / 27.0).epsilon(1e-15));
  CHECK(kb::info_gain(0.3) < kb::info_gain(1.0 / 3.0));
  CHECK(kb::info_gain(0.36) < kb::info_gain(1.0 / 3.0));
}

TEST_CASE("the cost formulas reproduce the worked values", "[budget][knapsack]") {
  CHECK(kb::expectation_cost(0.5) == Approx(3.0).margin(1e-12));
  CHECK(kb::expectation_cost(0.1) == Approx(10.1111).margin(5e-5));
  CHECK(kb::expectation_cost(0.25) == Approx(4.3333).margin(5e-5));
  CHECK(kb::probability_cost(0.5) == Approx(3.3219).margin(5e-5));
  CHECK(kb::probability_cost(0.1) == Approx(21.8543).margin(5e-5));
  CHECK(kb::probability_cost(0.25, 0.9) == Approx(8.0039).margin(5e-5));
  // p below 2^-53: 1 - p rounds to 1, and log(max(p, 1-p)) = 0 made the cost -inf (converted to
  // a rollout count: undefined behaviour). log(1 - 0.9) / log1p(-1e-17) = 2.302585093e17.
  CHECK(kb::probability_cost(1e-17) == Approx(2.302585093e17).epsilon(1e-9));
  CHECK(kb::probability_cost(1.0 - 1e-17) == kb::probability_cost(0.0));  // 1 - 1e-17 == 1: p = 1
  CHECK(kb::probability_cost(1e-300) > 0.0);
  CHECK(kb::probability_cost(0.9) == kb::probability_cost(0.1));  // symmetric in p <-> 1 - p
  for (const double p : {0.0, 1.0}) {
    CHECK(kb::expectation_cost(p) == kInf);
    CHECK(kb::probability_cost(p) == kInf);
  }
}

TEST_CASE("formulas: random property test", "[budget][knapsack]") {
  std::mt19937 gen(20250929);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  for (int t = 0; t < 20000; ++t) {
    const double p = unit(gen), q = 1.0 - p;
    const int n = 2 + static_cast<int>(gen() % 300);
    const double nz = kb::prob_nonzero_gradient(n, p);
    INFO("n = " << n << ", p = " << p);
    REQUIRE(nz >= 0.0);
    REQUIRE(nz <= 1.0);
    // The accurate evaluation agrees with the literal formula, and is symmetric in p <-> 1 - p.
    REQUIRE(nz == Approx(1.0 - std::pow(p, n) - std::pow(q, n)).margin(1e-13));
    REQUIRE(nz == Approx(kb::prob_nonzero_gradient(n, q)).margin(1e-13));
    REQUIRE(kb::prob_nonzero_gradient(n + 1, p) >= nz);
    REQUIRE(kb::info_gain(p) == Approx(p * q * q).epsilon(1e-15));
    REQUIRE(kb::info_gain(p) <= 4.0 / 27.0 + 1e-16);
    REQUIRE(kb::rollout_value(n, p) == Approx(nz * kb::info_gain(p)).epsilon(1e-15));
    REQUIRE(kb::expectation_cost(p) == Approx(1.0 / (p * q) - 1.0).epsilon(1e-12));
    // The probability cost is the n at which 1 - max(p, 1-p)^n reaches alpha.
    const double alpha = 0.05 + 0.9 * unit(gen), c = kb::probability_cost(p, alpha);
    REQUIRE(1.0 - std::pow(std::max(p, q), c) == Approx(alpha).margin(1e-9));
  }
}

TEST_CASE("formulas reject bad input", "[budget][knapsack]") {
  CHECK_THROWS_AS(kb::rollout_value(-1, 0.5), xplor::error);
  CHECK_THROWS_WITH(kb::rollout_value(-1, 0.5),
                    Contains("xplor::budget::rollout_value") && Contains("n = -1"));
  CHECK_THROWS_WITH(kb::rollout_value(4, kNaN), Contains("p = nan"));
  CHECK_THROWS_WITH(kb::rollout_value(4, 1.5), Contains("p = 1.5"));
  CHECK_THROWS_WITH(kb::prob_nonzero_gradient(4, -0.25),
                    Contains("xplor::budget::prob_nonzero_gradient") && Contains("p = -0.25"));
  CHECK_THROWS_WITH(kb::prob_nonzero_gradient(-3, 0.5), Contains("n = -3"));
  CHECK_THROWS_WITH(kb::info_gain(kNaN), Contains("xplor::budget::info_gain") && Contains("p = nan"));
  CHECK_THROWS_WITH(kb::marginal_value(-1, 0.5), Contains("n = -1"));
  CHECK_THROWS_WITH(kb::marginal_value(2, 2.0), Contains("p = 2"));
  CHECK_THROWS_WITH(kb::expectation_cost(-0.5), Contains("p = -0.5"));
  CHECK_THROWS_WITH(kb::probability_cost(0.5, 1.0), Contains("alpha = 1"));
  CHECK_THROWS_WITH(kb::probability_cost(0.5, 0.0), Contains("alpha = 0"));
  CHECK_THROWS_WITH(kb::probability_cost(kInf), Contains("p = inf"));
  const std::vector<int> n{2, 3};
  const std::vector<double> p{0.5};
  CHECK_THROWS_WITH(kb::allocation_value(n, p), Contains("n has 2 entries but p_hat has 1"));
  CHECK_THROWS_WITH(kb::allocation_value(std::vector<int>{-1}, p), Contains("n[0] = -1"));
}

// ------------------------------------------------------------------------------------------------
// Concavity: the property the fast solver rests on (docs/budget.md, "Concavity").

TEST_CASE("marginal value is non-increasing in n for n >= 1, not from n = 0 to 1", "[budget][knapsack]") {
  std::vector<double> grid;
  for (int i = 0; i <= 2000; ++i) grid.push_back(i / 2000.0);
  for (const double e : {1e-300, 1e-12, 1e-6}) grid.insert(grid.end(), {e, 1.0 - e});
  for (const double p : grid) {
    INFO("p = " << p);
    const double q = 1.0 - p, w = p * p * q * q * q;
    // Closed form = definition.
    for (int n = 0; n <= 200; ++n) {
      const double diff = kb::rollout_value(n + 1, p) - kb::rollout_value(n, p);
      REQUIRE(kb::marginal_value(n, p) == Approx(diff).margin(1e-15));
    }
    // Non-increasing from n = 1 on (up to the rounding of pow).
    for (int n = 1; n < 200; ++n)
      REQUIRE(kb::marginal_value(n + 1, p) <= kb::marginal_value(n, p) * (1.0 + 1e-12));
    // At n = 0 it fails for every interior p: Value(0) = Value(1) = 0 < Value(2) = 2w.
    CHECK(kb::marginal_value(0, p) == 0.0);
    if (p > 0.0 && p < 1.0 && w > 0.0) CHECK(kb::marginal_value(1, p) > kb::marginal_value(0, p));
    // The concave hull on {0, 1, 2, 3}: Value(2) / 2 = Value(3) - Value(2) = p^2 (1-p)^3.
    CHECK(kb::rollout_value(2, p) / 2.0 == Approx(w).margin(1e-16));
    CHECK(kb::marginal_value(2, p) == Approx(w).margin(1e-16));
    // The solver's own gains (running products) are non-increasing bit for bit, hull included.
    for (const int n_min : {0, 1, 2, 5}) {
      const std::vector<double> one{p};
      const kb::detail::gain_model model(one, n_min, 160, false);
      auto walk = model.walker(0);
      double prev = walk.next();
      for (int k = 1; k < model.L; ++k) {
        const double v = walk.next();
        REQUIRE(v <= prev);
        prev = v;
      }
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Allocations

TEST_CASE("both solvers find the worked optimal allocations", "[budget][knapsack]") {
  for (const auto solver : {kb::solver_kind::fast, kb::solver_kind::dp}) {
    INFO("solver " << static_cast<int>(solver));
    const std::vector<double> a{0.5, 0.1}, b{0.5, 0.1, 0.9}, c{0.5, 0.2, 0.05};
    const auto na = kb::allocate_rollouts(a, 16, opts(2, 14, solver));
    CHECK(na == std::vector<int>{6, 10});
    CHECK(kb::allocation_value(na, a) == Approx(0.1738508).margin(5e-8));
    const auto nb = kb::allocate_rollouts(b, 24, opts(2, 20, solver));
    CHECK(nb == std::vector<int>{7, 15, 2});
    CHECK(kb::allocation_value(nb, b) == Approx(0.1889897).margin(5e-8));
    const auto nc = kb::allocate_rollouts(c, 24, opts(2, 20, solver));
    CHECK(nc == std::vector<int>{7, 12, 5});
    CHECK(kb::allocation_value(nc, c) == Approx(0.2524589).margin(5e-8));
    // The default bounds [2, 128] do not change them.
    CHECK(kb::allocate_rollouts(b, 24, opts(2, 128, solver)) == std::vector<int>{7, 15, 2});
    CHECK(kb::allocate_rollouts(c, 24, opts(2, 128, solver)) == std::vector<int>{7, 12, 5});
  }
  const std::vector<double> a{0.5, 0.1};
  CHECK(kb::knapsack_dp(a, 16, 2, 14) == std::vector<int>{6, 10});
  CHECK(kb::knapsack_fast(a, 16, 2, 14) == std::vector<int>{6, 10});
  CHECK(kb::allocate_rollouts(a, 16) == std::vector<int>{6, 10});
}

TEST_CASE("the fast solver reaches the DP optimum on thousands of random instances", "[budget][knapsack]") {
  std::mt19937 gen(5);
  int at_lower = 0, at_upper = 0, with_zero_min = 0;
  for (int t = 0; t < 6000; ++t) {
    const int m = 1 + static_cast<int>(gen() % 7);
    const int n_min = (gen() % 3 == 0) ? 0 : static_cast<int>(gen() % 4);
    const int n_max = n_min + static_cast<int>(gen() % 9);
    std::vector<double> p(static_cast<std::size_t>(m));
    for (double& x : p) x = tie_heavy_p(gen);
    const std::int64_t lo = std::int64_t{m} * n_min, hi = std::int64_t{m} * n_max;
    std::int64_t budget = lo + static_cast<std::int64_t>(gen() % static_cast<std::uint32_t>(hi - lo + 1));
    if (t % 10 == 0) budget = lo;
    if (t % 10 == 1) budget = hi;
    at_lower += budget == lo;
    at_upper += budget == hi;
    with_zero_min += n_min == 0;
    INFO("instance " << t << ": M = " << m << ", n in [" << n_min << ", " << n_max << "], budget " << budget);
    const auto dp = kb::knapsack_dp(p, budget, n_min, n_max);
    const auto fast = kb::knapsack_fast(p, budget, n_min, n_max);
    REQUIRE(sum(dp) == budget);
    REQUIRE(sum(fast) == budget);
    for (const int x : fast) REQUIRE((x >= n_min && x <= n_max));
    const double best = kb::allocation_value(dp, p);
    REQUIRE(kb::allocation_value(fast, p) == Approx(best).margin(1e-14));
  }
  CHECK(at_lower >= 600);
  CHECK(at_upper >= 600);
  CHECK(with_zero_min >= 1500);
}

TEST_CASE("the fast solver equals a heap greedy on large tie-heavy instances", "[budget][knapsack]") {
  // Big enough (M * (n_max - n_min) > 65536) for the sampled threshold search to run.
  std::mt19937 gen(77);
  for (int t = 0; t < 12; ++t) {
    const int m = 800 + static_cast<int>(gen() % 1500);
    const int n_min = 1 + static_cast<int>(gen() % 3), n_max = n_min + 60 + static_cast<int>(gen() % 70);
    std::vector<double> p(static_cast<std::size_t>(m));
    for (double& x : p) x = (t % 2) ? static_cast<double>(gen() % 17) / 16.0 : tie_heavy_p(gen);
    const std::int64_t lo = std::int64_t{m} * n_min, hi = std::int64_t{m} * n_max;
    const std::int64_t budget = (t % 3 == 0) ? lo + 1 : (t % 3 == 1) ? hi - 1 : lo + (hi - lo) / 17;
    INFO("instance " << t << ": M = " << m << ", budget " << budget);
    CHECK(kb::knapsack_fast(p, budget, n_min, n_max) == heap_greedy(p, budget, n_min, n_max));
  }
}

TEST_CASE("ties: equal prompts get counts that differ by at most one, extras to lower indices",
          "[budget][knapsack]") {
  // All-zero gains (p = 0 or 1): spare budget is spread level by level, lowest index first.
  CHECK(kb::knapsack_fast(std::vector<double>{0.0, 1.0, 0.0, 0.0}, 14, 2, 128) ==
        std::vector<int>{4, 4, 3, 3});
  CHECK(kb::knapsack_fast(std::vector<double>{0.0, 0.0, 0.0}, 6, 2, 128) == std::vector<int>{2, 2, 2});
  // Equal interior p.
  const std::vector<double> same(5, 0.3);
  CHECK(kb::knapsack_fast(same, 33, 2, 128) == std::vector<int>{7, 7, 7, 6, 6});
  // Prompts with gains left go first; ties among the rest spread.
  CHECK(kb::knapsack_fast(std::vector<double>{0.0, 0.5, 0.0}, 3 * 128 - 1, 2, 128) ==
        std::vector<int>{128, 128, 127});
  // Deterministic: the same input gives the same output.
  std::mt19937 gen(3);
  std::vector<double> p(3000);
  for (double& x : p) x = tie_heavy_p(gen);
  CHECK(kb::knapsack_fast(p, 24000, 2, 128) == kb::knapsack_fast(p, 24000, 2, 128));
}

TEST_CASE("n_min = 0: a prompt is left at one rollout only when every optimum does", "[budget][knapsack]") {
  // Value(1) = Value(0) = 0, so one rollout is wasted. Two p = 0.5 prompts, n <= 2, budget 3: any
  // allocation leaves one prompt at 1 (parity), the best is (2, 1).
  CHECK(kb::knapsack_fast(std::vector<double>{0.5, 0.5}, 3, 0, 2) == std::vector<int>{2, 1});
  // With room for a third rollout the odd unit goes to a prompt that already has two.
  CHECK(kb::knapsack_fast(std::vector<double>{0.5, 0.5}, 3, 0, 3) == std::vector<int>{3, 0});
  CHECK(kb::knapsack_fast(std::vector<double>{0.5, 0.5, 0.5}, 5, 0, 8) == std::vector<int>{3, 2, 0});
  // Budget 1: nothing can be gained.
  const auto one = kb::knapsack_fast(std::vector<double>{0.5, 0.0}, 1, 0, 8);
  CHECK(kb::allocation_value(one, std::vector<double>{0.5, 0.0}) == 0.0);
  // Random instances focused on n_min = 0 against the DP.
  std::mt19937 gen(99);
  for (int t = 0; t < 3000; ++t) {
    const int m = 1 + static_cast<int>(gen() % 6), n_max = static_cast<int>(gen() % 7);
    std::vector<double> p(static_cast<std::size_t>(m));
    for (double& x : p) x = (gen() % 2) ? 0.5 : tie_heavy_p(gen);  // many exact ties
    const std::int64_t budget = static_cast<std::int64_t>(gen() % static_cast<std::uint32_t>(m * n_max + 1));
    INFO("instance " << t);
    const auto fast = kb::knapsack_fast(p, budget, 0, n_max);
    REQUIRE(sum(fast) == budget);
    REQUIRE(kb::allocation_value(fast, p) ==
            Approx(kb::allocation_value(kb::knapsack_dp(p, budget, 0, n_max), p)).margin(1e-14));
  }
}

TEST_CASE("prompts without an estimate get the uniform share", "[budget][knapsack]") {
  const std::vector<double> p{kNaN, 0.5, 0.1};  // p_hat[0] is not read
  const std::vector<std::uint8_t> has{0, 1, 1};
  for (const auto solver : {kb::solver_kind::fast, kb::solver_kind::dp})
    CHECK(kb::allocate_rollouts(p, has, 24, opts(2, 128, solver)) == std::vector<int>{8, 6, 10});
  // floor(B / M); the remainder goes to prompts with estimates (optimum of 0.5, 0.1 at 18: 6, 12).
  CHECK(kb::allocate_rollouts(p, has, 26) == std::vector<int>{8, 6, 12});
  // Without any estimate: uniform, the remainder to the lowest indices.
  const std::vector<std::uint8_t> none{0, 0, 0};
  CHECK(kb::allocate_rollouts(p, none, 25) == std::vector<int>{9, 8, 8});
  // The others are full (n_max): the rest goes back to prompts without estimates.
  CHECK(kb::allocate_rollouts(std::vector<double>{0.0, 0.5, 0.5}, std::vector<std::uint8_t>{0, 0, 1}, 26,
                              opts(2, 9)) == std::vector<int>{9, 8, 9});
}

TEST_CASE("reference_compat reproduces sampling_budget_by_knapsack", "[budget][knapsack]") {
  // Expected values from a line-by-line port of the code (exploration_utils.py) in double precision.
  for (const auto solver : {kb::solver_kind::dp, kb::solver_kind::fast}) {
    INFO("solver " << static_cast<int>(solver));
    const auto compat = [&](int n_min, int n_max) { return opts(n_min, n_max, solver, true); };
    // Worked examples: the code's DP gives (6, 10) (estimated cost 3 + 21 = 24 > 12, no fallback)
    // and (7, 12, 5); on (0.5, 0.1, 0.9) "k = 0 scores 0" buys the p = 0.9 prompt a third
    // rollout: (7, 14, 3) instead of the optimum (7, 15, 2).
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.1}, 16, compat(2, 14)) == std::vector<int>{6, 10});
    // p = 1e-17: its cost (2.3e17) is capped at n_max (it was -inf, cast to int64: undefined), and
    // the DP gives the nearly hopeless prompt the minimum.
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 1e-17}, 16, compat(2, 14)) ==
          std::vector<int>{14, 2});
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.2, 0.05}, 24, compat(2, 20)) ==
          std::vector<int>{7, 12, 5});
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.1, 0.9}, 24, compat(2, 20)) ==
          std::vector<int>{7, 14, 3});
    // Fallback: estimated cost 3 < 18 spare, so 15 go to the p = 0 prompt (past n_max if need be).
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.0, 1.0}, 24, compat(2, 128)) ==
          std::vector<int>{5, 17, 2});
    auto no_fallback = compat(2, 128);
    no_fallback.allow_fallback = false;
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.0, 1.0}, 24, no_fallback) ==
          std::vector<int>{20, 2, 2});
    // Expectation cost: 3 + 4 = 7 < 18, fallback of 11 to the p = 0 prompt.
    auto expectation = compat(2, 128);
    expectation.cost = kb::cost_model::expectation;
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.0, 0.25}, 24, expectation) ==
          std::vector<int>{5, 13, 6});
    // No effective prompt: the spare budget is split over the p = 0 prompts ...
    CHECK(kb::allocate_rollouts(std::vector<double>{0.0, 1.0, 0.0}, 24, compat(2, 128)) ==
          std::vector<int>{11, 2, 11});
    // ... or, with none, everyone gets the uniform n.
    CHECK(kb::allocate_rollouts(std::vector<double>{1.0, 1.0}, 16, compat(2, 128)) == std::vector<int>{8, 8});
    // Prompts without estimates get n = B / M.
    const std::vector<std::uint8_t> has{1, 0, 1};
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.0, 0.1}, has, 24, compat(2, 128)) ==
          std::vector<int>{6, 8, 10});
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.3, 1.0, 0.9},
                                std::vector<std::uint8_t>{1, 0, 1, 1}, 32,
                                compat(2, 128)) == std::vector<int>{9, 8, 2, 13});
    // Spare budget beyond what the DP can place is spread over the effective prompts (past n_max).
    auto small = compat(2, 6);
    small.allow_fallback = false;
    CHECK(kb::allocate_rollouts(std::vector<double>{0.5, 0.0}, 12, small) == std::vector<int>{10, 2});
    // Budgets outside [M n_min, M n_max] are refused in this mode too.
    CHECK_THROWS_WITH(kb::allocate_rollouts(std::vector<double>{0.5, 0.0}, 13, small),
                      Contains("total_budget = 13"));
  }
}

TEST_CASE("allocate_rollouts rejects bad input", "[budget][knapsack]") {
  const std::vector<double> p{0.5, 0.1, 0.9};
  CHECK_THROWS_AS(kb::allocate_rollouts(p, 5), xplor::error);
  CHECK_THROWS_WITH(kb::allocate_rollouts(p, 5),
                    Contains("xplor::budget::allocate_rollouts") &&
                        Contains("total_budget = 5 is below M * n_min = 3 * 2 = 6"));
  CHECK_THROWS_WITH(kb::allocate_rollouts(p, 385),
                    Contains("total_budget = 385 exceeds M * n_max = 3 * 128 = 384"));
  CHECK_THROWS_WITH(kb::allocate_rollouts(std::vector<double>{0.5, kNaN}, 8), Contains("p_hat[1] = nan"));
  CHECK_THROWS_WITH(kb::allocate_rollouts(std::vector<double>{-0.1, 0.5}, 8), Contains("p_hat[0] = -0.1"));
  CHECK_THROWS_WITH(kb::allocate_rollouts(std::vector<double>{1.5}, 8), Contains("p_hat[0] = 1.5"));
  CHECK_THROWS_WITH(kb::allocate_rollouts(p, 12, opts(5, 4)), Contains("n_min = 5 exceeds n_max = 4"));
  CHECK_THROWS_WITH(kb::allocate_rollouts(p, 12, opts(-1, 4)), Contains("n_min = -1 is negative"));
  CHECK_THROWS_WITH(kb::allocate_rollouts(p, std::vector<std::uint8_t>{1, 1}, 12),
                    Contains("has_estimate has 2 entries but p_hat has 3"));
  auto compat = opts(2, 128, kb::solver_kind::fast, true);
  compat.alpha = 1.0;
  CHECK_THROWS_WITH(kb::allocate_rollouts(p, 24, compat), Contains("options.alpha = 1"));
  CHECK_THROWS_WITH(kb::knapsack_dp(p, 2, 1, 8),
                    Contains("xplor::budget::knapsack_dp") && Contains("total_budget = 2"));
  CHECK_THROWS_WITH(kb::knapsack_fast(std::vector<double>{2.0}, 2, 1, 8),
                    Contains("xplor::budget::knapsack_fast") && Contains("p_hat[0] = 2"));
  // The DP refuses tables beyond 2^28 cells instead of exhausting memory.
  const std::vector<double> many(5000, 0.5);
  CHECK_THROWS_WITH(kb::knapsack_dp(many, 5000 * 100, 2, 128), Contains("use solver_kind::fast"));
  // Empty batches: only budget 0 is feasible.
  CHECK(kb::allocate_rollouts(std::vector<double>{}, 0).empty());
  CHECK_THROWS_WITH(kb::allocate_rollouts(std::vector<double>{}, 1), Contains("total_budget = 1"));
  // Budgets at both bounds are fine.
  CHECK(kb::allocate_rollouts(p, 6) == std::vector<int>{2, 2, 2});
  CHECK(kb::allocate_rollouts(p, 384) == std::vector<int>{128, 128, 128});
}
