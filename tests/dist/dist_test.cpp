// dist/ on thread ranks (dist/threads.hpp) and on the single-process communicator: every
// distributed result against the single-process one on 1 to 4 ranks (tests/dist/scenarios.hpp),
// aborts that end every rank, and bad input. tests/dist/mpi_check.cpp runs the same scenarios
// under mpirun.
#include "xplor/dist/threads.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

#include "scenarios.hpp"

namespace xd = xplor::dist;

TEST_CASE("distributed knapsack allocation equals one process on 1-4 ranks", "[dist][knapsack]") {
  for (int ranks = 1; ranks <= 4; ++ranks) {
    INFO(ranks << " ranks");
    REQUIRE_NOTHROW(xd::run_ranks(
        ranks, [&](xd::thread_communicator& c) { dist_scenarios::knapsack(c, 11 + ranks, 40); }));
  }
  xd::single_process one;
  REQUIRE_NOTHROW(dist_scenarios::knapsack(one, 5, 40));
}

TEST_CASE("distributed advantages and ReBN equal one process bit for bit", "[dist][advantage]") {
  for (int ranks = 1; ranks <= 4; ++ranks)
    for (std::uint64_t seed : {1u, 2u, 3u}) {
      INFO(ranks << " ranks, seed " << seed);
      REQUIRE_NOTHROW(
          xd::run_ranks(ranks, [&](xd::thread_communicator& c) { dist_scenarios::advantages(c, seed); }));
    }
}

TEST_CASE("trackers merged across ranks equal one tracker of every record", "[dist][tracker]") {
  for (int ranks = 1; ranks <= 4; ++ranks) {
    INFO(ranks << " ranks");
    REQUIRE_NOTHROW(xd::run_ranks(ranks, [&](xd::thread_communicator& c) { dist_scenarios::tracker(c, 5); }));
  }
}

TEST_CASE("sharded DeepSearch rounds equal one process, caches merged in prompt order", "[dist][search]") {
  for (int ranks = 1; ranks <= 4; ++ranks)
    for (std::uint64_t seed : {3u, 8u}) {
      INFO(ranks << " ranks, seed " << seed);
      REQUIRE_NOTHROW(
          xd::run_ranks(ranks, [&](xd::thread_communicator& c) { dist_scenarios::search(c, seed); }));
    }
}

TEST_CASE("collectives: ordered sums, offsets, integer reductions, broadcast", "[dist]") {
  for (int ranks = 1; ranks <= 4; ++ranks) {
    INFO(ranks << " ranks");
    REQUIRE_NOTHROW(
        xd::run_ranks(ranks, [&](xd::thread_communicator& c) { dist_scenarios::collectives(c, 3); }));
  }
  xd::single_process one;
  REQUIRE_NOTHROW(dist_scenarios::collectives(one, 3));
}

TEST_CASE("bad input is reported on every rank", "[dist]") {
  for (int ranks = 1; ranks <= 3; ++ranks)
    REQUIRE_NOTHROW(
        xd::run_ranks(ranks, [&](xd::thread_communicator& c) { dist_scenarios::bad_probability(c); }));
  using Catch::Matchers::Contains;
  xd::single_process one;
  std::vector<float> r{1, 0}, out(2);
  const std::vector<std::int64_t> offsets{0, 2};
  xplor::rl::advantage_options o;
  o.allreduce = [](std::span<double, 3>) {};
  CHECK_THROWS_WITH(xd::compute_advantages(one, xplor::rl::estimator::grpo, std::span<const float>(r),
                                           offsets, std::span<float>(out), o),
                    Contains("options.allreduce is set"));
  CHECK_THROWS_WITH(xd::run_ranks(0, [](xd::thread_communicator&) {}),
                    Contains("ranks = 0 must be at least 1"));
  CHECK_THROWS_WITH(xd::run_ranks(2,
                                  [](xd::thread_communicator& c) {
                                    std::vector<double> v(c.rank() + 1, 1.0);
                                    xd::sum_ordered(c, std::span<double>(v));
                                  }),
                    Contains("every rank must pass the same length"));
  double x = 1;
  CHECK_THROWS_WITH(one.all_reduce(std::span<double>(&x, 1), xd::reduce_op::sum),
                    Contains("use sum_ordered"));
}

TEST_CASE("a rank that fails ends every rank's collectives with its error", "[dist][abort]") {
  using Catch::Matchers::Contains;
  // Rank 1 aborts while the others wait in a collective it never joins: no rank hangs, and the
  // error that comes out names the rank and the reason.
  CHECK_THROWS_WITH(xd::run_ranks(3,
                                  [](xd::thread_communicator& c) {
                                    if (c.rank() == 1) c.abort("disk full");
                                    std::int64_t v = 1;
                                    c.all_reduce(std::span<std::int64_t>(&v, 1), xd::reduce_op::sum);
                                    c.all_reduce(std::span<std::int64_t>(&v, 1), xd::reduce_op::sum);
                                  }),
                    Contains("rank 1 of 3: disk full"));
  // An exception thrown on one rank (not an explicit abort) does the same, and keeps its message.
  CHECK_THROWS_WITH(xd::run_ranks(4,
                                  [](xd::thread_communicator& c) {
                                    std::vector<int> out(2);
                                    std::vector<double> p(2, 0.5);
                                    if (c.rank() == 2) throw std::runtime_error("out of memory");
                                    xd::allocate_rollouts(c, std::span<const double>(p), 4 * 2 * 4,
                                                          std::span<int>(out));
                                  }),
                    Contains("out of memory"));
  // run_or_abort on one process turns the exception into xplor::error.
  xd::single_process one;
  CHECK_THROWS_WITH(xd::run_or_abort(one, [] { throw std::runtime_error("boom"); }), Contains("boom"));
}
