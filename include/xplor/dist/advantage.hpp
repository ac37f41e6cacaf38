// Advantages and ReBN over a batch sharded across ranks, equal to the single-process result on
// any number of ranks. Each rank passes its shard: whole groups (a prompt's rollouts are never
// split), in global order (rank 0 holds the first groups). The rewards are gathered (one float per
// response: a million responses are 4 MB), every rank runs the single-process estimator on the
// whole batch, and each keeps its slice. Batch statistics (scale = batch, REINFORCE++, ReBN) are
// therefore the very same sums as one process's, not a reduction of per-rank partial moments,
// whose float rounding would depend on how the batch is split (docs/distributed.md).
#pragma once

#include <algorithm>
#include <cstdint>
#include <span>
#include <vector>

#include "xplor/core/groups.hpp"
#include "xplor/dist/communicator.hpp"
#include "xplor/rl/advantage.hpp"

namespace xplor::dist {

namespace detail {
inline void require_no_allreduce(const rl::allreduce_fn& f, const char* fn) {
  xplor::detail::require(
      !f, fn, "options.allreduce is set; the communicator already spans the ranks (leave it empty)");
}
}  // namespace detail

/// rl::compute_advantages over the groups of every rank. `group_offsets` are this rank's local
/// offsets ([G_local + 1], starting at 0, ending at rewards.size()); `lengths` as in the
/// single-process call (OPO), this rank's slice or empty on every rank. Returns the global report.
template <communicator C>
rl::advantage_report compute_advantages(C& comm, rl::estimator kind, std::span<const float> rewards,
                                        std::span<const std::int64_t> group_offsets, std::span<float> out,
                                        const rl::advantage_options& options = {},
                                        std::span<std::uint8_t> degenerate = {},
                                        std::span<const float> lengths = {}) {
  constexpr const char* fn = "xplor::dist::compute_advantages";
  detail::require_no_allreduce(options.allreduce, fn);
  const ragged_groups local(group_offsets, static_cast<std::int64_t>(rewards.size()));  // validates
  xplor::detail::require(out.size() == rewards.size(), fn, "out has ", out.size(), " elements for ",
                         rewards.size(), " rewards");
  xplor::detail::require(degenerate.empty() || degenerate.size() + 1 == group_offsets.size(), fn,
                         "degenerate has ", degenerate.size(), " entries for ", group_offsets.size() - 1,
                         " groups");
  std::vector<std::int64_t> sizes;
  for (std::int64_t g = 0; g < local.num_groups(); ++g) sizes.push_back(local.end(g) - local.begin(g));
  std::vector<std::int64_t> reward_counts, group_counts;
  const std::vector<float> all_rewards = all_gather(comm, rewards, &reward_counts);
  const std::vector<std::int64_t> all_sizes =
      all_gather(comm, std::span<const std::int64_t>(sizes), &group_counts);
  std::vector<float> all_lengths;
  if (!lengths.empty()) all_lengths = all_gather(comm, lengths);
  std::vector<std::int64_t> offsets{0};
  for (std::int64_t n : all_sizes) offsets.push_back(offsets.back() + n);
  const auto n = static_cast<std::int64_t>(all_rewards.size());
  std::vector<float> all_out(all_rewards.size());
  std::vector<std::uint8_t> all_degenerate(all_sizes.size());
  const rl::advantage_report report =
      rl::compute_advantages(xplor::cpu, kind, std::span<const float>(all_rewards), ragged_groups(offsets, n),
                             std::span<float>(all_out), options, std::span<std::uint8_t>(all_degenerate),
                             std::span<const float>(all_lengths));
  std::size_t first = 0, first_group = 0;
  for (int r = 0; r < comm.rank(); ++r) {
    first += static_cast<std::size_t>(reward_counts[static_cast<std::size_t>(r)]);
    first_group += static_cast<std::size_t>(group_counts[static_cast<std::size_t>(r)]);
  }
  std::copy_n(all_out.begin() + static_cast<std::ptrdiff_t>(first), out.size(), out.begin());
  if (!degenerate.empty())
    std::copy_n(all_degenerate.begin() + static_cast<std::ptrdiff_t>(first_group), degenerate.size(),
                degenerate.begin());
  return report;
}

/// rl::rebn_advantages over the returns of every rank (each rank's slice in global order).
template <communicator C>
rl::advantage_report rebn_advantages(C& comm, std::span<const float> returns, std::span<float> out,
                                     const rl::rebn_options& options = {}) {
  constexpr const char* fn = "xplor::dist::rebn_advantages";
  detail::require_no_allreduce(options.allreduce, fn);
  xplor::detail::require(out.size() == returns.size(), fn, "out has ", out.size(), " elements for ",
                         returns.size(), " returns");
  std::vector<std::int64_t> counts;
  const std::vector<float> all = all_gather(comm, returns, &counts);
  std::vector<float> all_out(all.size());
  const rl::advantage_report report =
      rl::rebn_advantages(xplor::cpu, std::span<const float>(all), std::span<float>(all_out), options);
  std::size_t first = 0;
  for (int r = 0; r < comm.rank(); ++r)
    first += static_cast<std::size_t>(counts[static_cast<std::size_t>(r)]);
  std::copy_n(all_out.begin() + static_cast<std::ptrdiff_t>(first), out.size(), out.begin());
  return report;
}

}  // namespace xplor::dist
