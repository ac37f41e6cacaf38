// Knapsack RL rollout allocation (arXiv 2509.25849): the fast exact solver at the scale of a big
// dataset pass (a million prompts, 8 rollouts each on average, n in [2, 128]) on one core, and the
// reference dynamic program against the fast solver at the paper's batch (256 prompts, 2048
// rollouts), measured in the same run. Both solvers return an optimum; only the time differs.
// The parallel allocator (budget/knapsack_parallel.hpp) at a million prompts on the CPU backend
// (1 and 2 threads) and on Thrust's device system (OMP here, the GPU in cuda/), against the host
// solver ("baseline" there): the same counts, so only the time differs.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <span>
#include <vector>
#include <xplor/budget/knapsack.hpp>
#include <xplor/budget/knapsack_parallel.hpp>
#if XPLOR_BENCH_DEVICE
#include <thrust/device_vector.h>

#include <xplor/core/adapt_thrust.hpp>
#include <xplor/core/device.hpp>
#endif

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
  state.SetLabel("baseline");
}

/// The parallel allocator on the CPU backend with `threads` OpenMP threads.
void alloc_M1e6_B8e6_parallel(benchmark::State& state) {
  const auto p = uniform_p(1000000, 2);
  std::vector<int> n(p.size());
  const xplor::cpu_t exec{static_cast<int>(state.range(0))};
  for (auto _ : state) {
    kb::allocate_rollouts(exec, std::span<const double>(p), 8000000, std::span<int>(n));
    benchmark::DoNotOptimize(n.data());
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(p.size()));
}

#if XPLOR_BENCH_DEVICE
/// The parallel allocator on Thrust's device system (data already in device memory).
void alloc_M1e6_B8e6_device(benchmark::State& state) {
  const auto host_p = uniform_p(1000000, 2);
  const thrust::device_vector<double> p(host_p.begin(), host_p.end());
  thrust::device_vector<int> n(host_p.size());
  for (auto _ : state) {
    kb::allocate_rollouts(xplor::device, xplor::as_span(p), 8000000, xplor::as_span(n));
    benchmark::DoNotOptimize(thrust::raw_pointer_cast(n.data()));
  }
  state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(host_p.size()));
}
#endif

void alloc_M1e6_B8e6_fast_grid(benchmark::State& state) {
  run(state, grid_p(1000000, 3), 8000000, kb::solver_kind::fast);
}

}  // namespace

BENCHMARK(alloc_M256_B2048_dp)->Name("alloc_M256_B2048/dp")->Unit(benchmark::kMillisecond);
BENCHMARK(alloc_M256_B2048_fast)->Name("alloc_M256_B2048/fast")->Unit(benchmark::kMillisecond);
BENCHMARK(alloc_M1e6_B8e6_fast)->Name("alloc_M1e6_B8e6/fast")->Unit(benchmark::kMillisecond);
BENCHMARK(alloc_M1e6_B8e6_parallel)
    ->Name("alloc_M1e6_B8e6/parallel_cpu_threads")
    ->Arg(1)
    ->Arg(2)
    ->Unit(benchmark::kMillisecond);
#if XPLOR_BENCH_DEVICE
BENCHMARK(alloc_M1e6_B8e6_device)->Name("alloc_M1e6_B8e6/parallel_device_omp")->Unit(benchmark::kMillisecond);
#endif
BENCHMARK(alloc_M1e6_B8e6_fast_grid)
    ->Name("alloc_M1e6_B8e6/fast_p_on_k_over_8")
    ->Unit(benchmark::kMillisecond);
