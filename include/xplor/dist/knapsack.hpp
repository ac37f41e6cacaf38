// The exact Knapsack RL allocation of a task set sharded across ranks: each rank holds a
// contiguous slice of the tasks (in global task order: rank 0 the first tasks), and the fast
// solver's threshold search (budget/knapsack_parallel.hpp) runs on all-reduced counts. Only
// integers are summed across ranks (exact in any order) and sampled or banded gains are
// exchanged as values, never added, so every rank writes its slice of exactly the allocation a
// single process computes for all the tasks, on any number of ranks. Memory per rank is its
// shard plus a 16,384-gain sample and at most 65,536 banded gains: this is how the allocator
// scales past one machine's memory. Cost: about 4 all-reduces and one 16,384-value max-reduce
// per narrowing round (a handful of rounds), then one all-gather of the final band
// (docs/distributed.md).
#pragma once

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

#include "xplor/budget/knapsack_parallel.hpp"
#include "xplor/dist/communicator.hpp"

namespace xplor::dist {

/// budget::local_tasks' hooks over a communicator (see knapsack_parallel.hpp).
template <communicator C>
struct comm_tasks {
  C* comm = nullptr;
  std::int64_t base = 0;

  std::int64_t total(std::int64_t local) {
    comm->all_reduce(std::span<std::int64_t>(&local, 1), reduce_op::sum);
    return local;
  }
  budget::kernels::four_counts total(budget::kernels::four_counts local) {
    comm->all_reduce(std::span<std::int64_t>(local.c, 4), reduce_op::sum);
    return local;
  }
  std::int64_t before(std::int64_t local) { return shard_offset(*comm, local); }
  std::int64_t lowest(std::int64_t global) {
    comm->all_reduce(std::span<std::int64_t>(&global, 1), reduce_op::min);
    return global;
  }
  budget::kernels::threshold_summary merge(const budget::kernels::threshold_summary& s) {
    const auto all = all_gather(*comm, std::span<const budget::kernels::threshold_summary>(&s, 1));
    budget::kernels::threshold_summary m = all.front();
    for (std::size_t r = 1; r < all.size(); ++r) m = budget::kernels::merge_summary{}(m, all[r]);
    return m;
  }
  void max_fill(std::span<double> values) { comm->all_reduce(values, reduce_op::max); }
  std::vector<double> gather(std::vector<double> local) {
    return all_gather(*comm, std::span<const double>(local));
  }
};

/// budget::allocate_rollouts over the tasks of every rank: this rank's p_hat (and has_estimate,
/// may be empty) are its slice of the global task list, `out` receives its slice of the counts;
/// total_budget and options are the global ones and must be the same on every rank. Equal, task
/// for task, to the single-process allocation of the concatenated slices. Every rank must call it
/// (it is a collective); bad probabilities are reported on every rank with their global index.
template <communicator C>
void allocate_rollouts(C& comm, std::span<const double> p_hat, std::span<const std::uint8_t> has_estimate,
                       std::int64_t total_budget, std::span<int> out,
                       const budget::allocation_options& options = {}) {
  budget::detail::allocate_on_shard(xplor::cpu, p_hat, has_estimate, total_budget, out, options,
                                    comm_tasks<C>{&comm, 0});
}

template <communicator C>
void allocate_rollouts(C& comm, std::span<const double> p_hat, std::int64_t total_budget, std::span<int> out,
                       const budget::allocation_options& options = {}) {
  allocate_rollouts(comm, p_hat, {}, total_budget, out, options);
}

}  // namespace xplor::dist
