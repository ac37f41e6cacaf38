// Random knapsack instances for the parallel allocator's tests on both backends: tie-heavy
// success rates, every regime of (n_min, n_max) the solver distinguishes, budgets at and near the
// ends, and tasks without an estimate.
#pragma once

#include <cstdint>
#include <limits>
#include <random>
#include <vector>

#include "xplor/budget/knapsack.hpp"

namespace xplor::test {

struct knapsack_instance {
  std::vector<double> p;
  std::vector<std::uint8_t> has;  // empty: every task has an estimate
  std::int64_t budget = 0;
  budget::allocation_options options;
};

/// p on the grid k/8, exactly 0 or 1, or uniform: many exact ties and all-zero gains.
inline double tie_heavy_p(std::mt19937& gen) {
  switch (gen() % 4) {
    case 0:
      return static_cast<double>(gen() % 9) / 8.0;
    case 1:
      return (gen() % 2) ? 0.0 : 1.0;
    default:
      return std::uniform_real_distribution<double>(0.0, 1.0)(gen);
  }
}

/// Instance t of a family: large (t % 4 == 3: M * L > 65536, so the sampled band search runs),
/// n_min = 0 on at most 6 tasks (t % 4 == 1: the hull and every case of its repair, n_max <= 1
/// included), or small (M <= 40, n_max <= 9).
inline knapsack_instance random_knapsack_instance(std::mt19937& gen, int t) {
  knapsack_instance x;
  const bool large = t % 4 == 3;
  const int m = large ? 600 + static_cast<int>(gen() % 2000) : 1 + static_cast<int>(gen() % 40);
  int n_min = static_cast<int>(gen() % 4);
  int n_max = large ? n_min + 100 + static_cast<int>(gen() % 60) : n_min + static_cast<int>(gen() % 7);
  const bool dent = t % 4 == 1;  // n_min = 0 on a few tasks: the hull's repair cases
  if (dent) n_min = 0, n_max = static_cast<int>(gen() % 7);
  const int tasks = dent ? 1 + static_cast<int>(gen() % 6) : m;
  x.options.n_min = n_min;
  x.options.n_max = n_max;
  x.p.resize(static_cast<std::size_t>(tasks));
  const bool all_half = gen() % 6 == 0;  // one tie class
  for (double& v : x.p) v = all_half || (dent && gen() % 2) ? 0.5 : tie_heavy_p(gen);
  if (gen() % 3 == 0) {
    x.has.resize(x.p.size());
    for (std::size_t i = 0; i < x.p.size(); ++i) {
      x.has[i] = static_cast<std::uint8_t>(gen() % 4 != 0);
      if (x.has[i] == 0) x.p[i] = std::numeric_limits<double>::quiet_NaN();  // never read
    }
  }
  const std::int64_t lo = std::int64_t{tasks} * n_min, hi = std::int64_t{tasks} * n_max;
  const auto where = gen() % 6;
  const std::int64_t span = hi - lo;
  x.budget = where == 0   ? lo
             : where == 1 ? hi
             : where == 2 ? std::min(hi, lo + 1)
             : where == 3 ? std::max(lo, hi - 1)
                          : lo + static_cast<std::int64_t>(gen() % static_cast<std::uint64_t>(span + 1));
  return x;
}

}  // namespace xplor::test
