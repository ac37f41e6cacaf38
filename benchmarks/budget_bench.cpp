// Knapsack RL rollout allocation (arXiv 2509.25849): the fast exact solver at the scale of a big
// dataset pass (a million prompts, 8 rollouts each on average, n in [2, 128]) on one core, and the
// reference dynamic program against the fast solver at the paper's batch (256 prompts, 2048
// rollouts), measured in the same run. Both solvers return an optimum; only the time differs.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>
#include <xplor/budget/knapsack.hpp>

namespace {

namespace kb = xplor::budget;

std::vector<double> uniform_p(std::size_t m, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  std::vector<double> p(m);
  for (double& x : p) x = unit(gen);
  return p;
}

/// Estimates from 8 rollouts each: p_hat on the grid k / 8, full of exact ties.
std::vector<double> grid_p(std::size_t m, std::uint32_t seed) {
  std::mt19937 gen(seed);
  std::binomial_distribution<int> successes(8, 0.3);
  std::vector<double> p(m);
  for (double& x : p) x = successes(gen) / 8.0;
  return p;
}

void run(benchmark::State& state, const std::vector<double>& p, std::int64_t budget, kb::solver_kind solver) {
  kb::allocation_options options;  // n in [2, 128]
  options.solver = solver;
  for (auto _ : state) {
    auto n = kb::allocate_rollouts(p, budget, options);
    benchmark::DoNotOptimize(n.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(p.size()));
}

void alloc_M256_B2048_dp(benchmark::State& state) {
  run(state, uniform_p(256, 1), 2048, kb::solver_kind::dp);
  state.SetLabel("baseline");
}

void alloc_M256_B2048_fast(benchmark::State& state) {
  run(state, uniform_p(256, 1), 2048, kb::solver_kind::fast);
}

void alloc_M1e6_B8e6_fast(benchmark::State& state) {
  run(state, uniform_p(1000000, 2), 8000000, kb::solver_kind::fast);
}

void alloc_M1e6_B8e6_fast_grid(benchmark::State& state) {
  run(state, grid_p(1000000, 3), 8000000, kb::solver_kind::fast);
}

}  // namespace

BENCHMARK(alloc_M256_B2048_dp)->Name("alloc_M256_B2048/dp")->Unit(benchmark::kMillisecond);
BENCHMARK(alloc_M256_B2048_fast)->Name("alloc_M256_B2048/fast")->Unit(benchmark::kMillisecond);
BENCHMARK(alloc_M1e6_B8e6_fast)->Name("alloc_M1e6_B8e6/fast")->Unit(benchmark::kMillisecond);
BENCHMARK(alloc_M1e6_B8e6_fast_grid)
    ->Name("alloc_M1e6_B8e6/fast_p_on_k_over_8")
    ->Unit(benchmark::kMillisecond);
