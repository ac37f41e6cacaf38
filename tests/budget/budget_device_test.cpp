// The rollout allocator on the device backend (Thrust OMP in CI, the GPU under nvcc via cuda/)
// against the host solver: the same counts on every instance, a million tasks included.
#include <catch2/catch.hpp>
#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "../device_vectors.hpp"
#include "instances.hpp"
#include "xplor/budget/knapsack_parallel.hpp"
#include "xplor/core/adapt_thrust.hpp"
#include "xplor/core/device.hpp"

using xplor::test::dev;
using xplor::test::host;

namespace {

std::vector<int> on_device(const xplor::test::knapsack_instance& x) {
  const auto p = dev(x.p);
  const auto has = dev(x.has);
  thrust::device_vector<int> out(x.p.size(), -1);
  xplor::budget::allocate_rollouts(xplor::device, xplor::as_span(p), xplor::as_span(has), x.budget,
                                   xplor::as_span(out), x.options);
  return host(out);
}

}  // namespace

TEST_CASE("device: the rollout allocator equals the host solver", "[device][budget]") {
  std::mt19937 gen(31);
  for (int t = 0; t < 400; ++t) {
    const auto x = xplor::test::random_knapsack_instance(gen, t);
    INFO("instance " << t << ": M = " << x.p.size() << ", n in [" << x.options.n_min << ", "
                     << x.options.n_max << "], budget " << x.budget);
    REQUIRE(on_device(x) == xplor::budget::allocate_rollouts(x.p, x.has, x.budget, x.options));
  }
}

TEST_CASE("device: the rollout allocator at a million tasks", "[device][budget]") {
  std::mt19937 gen(8);
  xplor::test::knapsack_instance x;
  x.p.resize(1000000);
  x.has.resize(x.p.size());
  std::binomial_distribution<int> successes(8, 0.3);
  for (std::size_t i = 0; i < x.p.size(); ++i) {
    x.p[i] = i % 2 ? successes(gen) / 8.0 : std::uniform_real_distribution<double>(0.0, 1.0)(gen);
    x.has[i] = static_cast<std::uint8_t>(i % 97 != 0);  // a few prompts not seen yet
  }
  x.budget = 8000000;
  REQUIRE(on_device(x) == xplor::budget::allocate_rollouts(x.p, x.has, x.budget, x.options));
}

TEST_CASE("device: the rollout allocator names a bad probability", "[device][budget]") {
  xplor::test::knapsack_instance x;
  x.p = {0.5, 0.25, -0.5};
  x.budget = 12;
  CHECK_THROWS_WITH(on_device(x), Catch::Matchers::Contains("p_hat[2] = -0.5 is not a probability"));
}
