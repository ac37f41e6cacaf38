// The success tracker across ranks: every rank records every rank's rollout rewards, in global
// prompt order, so the trackers stay identical on all ranks (the same estimates, hence the same
// Knapsack allocation as one process that saw the whole batch). Prompt ids are int64 (dataset
// indices); a tracker keyed by strings would gather its keys the same way.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "xplor/budget/success_tracker.hpp"
#include "xplor/core/groups.hpp"
#include "xplor/dist/communicator.hpp"
#include "xplor/dist/knapsack.hpp"

namespace xplor::dist {

/// tracker.record(ids[g], rewards of group g) for the groups of every rank, rank 0's first.
/// `group_offsets` are this rank's ([ids.size() + 1], from 0 to rewards.size()).
template <communicator C, class Hash>
void record(C& comm, budget::basic_success_tracker<std::int64_t, Hash>& tracker,
            std::span<const std::int64_t> ids, std::span<const std::int64_t> group_offsets,
            std::span<const double> rewards) {
  constexpr const char* fn = "xplor::dist::record";
  const ragged_groups local(group_offsets, static_cast<std::int64_t>(rewards.size()));  // validates
  xplor::detail::require(static_cast<std::int64_t>(ids.size()) == local.num_groups(), fn, ids.size(),
                         " ids for ", local.num_groups(), " groups");
  std::vector<std::int64_t> sizes;
  for (std::int64_t g = 0; g < local.num_groups(); ++g) sizes.push_back(local.end(g) - local.begin(g));
  const std::vector<std::int64_t> all_ids = all_gather(comm, ids);
  const std::vector<std::int64_t> all_sizes = all_gather(comm, std::span<const std::int64_t>(sizes));
  const std::vector<double> all_rewards = all_gather(comm, rewards);
  std::size_t at = 0;
  for (std::size_t g = 0; g < all_ids.size(); ++g) {
    const auto n = static_cast<std::size_t>(all_sizes[g]);
    tracker.record(all_ids[g], std::span<const double>(all_rewards).subspan(at, n));
    at += n;
  }
}

/// Rollout counts for this rank's prompts `ids`, from the global Knapsack allocation of
/// `total_budget` over every rank's prompts (the tracker must be the same on every rank: record).
template <communicator C, class Hash>
std::vector<int> allocate(C& comm, const budget::basic_success_tracker<std::int64_t, Hash>& tracker,
                          std::span<const std::int64_t> ids, std::int64_t total_budget,
                          const budget::allocation_options& options = {}) {
  const budget::batch_estimates e = tracker.estimates(ids);
  std::vector<int> out(ids.size());
  allocate_rollouts(comm, std::span<const double>(e.p_hat), std::span<const std::uint8_t>(e.has_estimate),
                    total_budget, std::span<int>(out), options);
  return out;
}

}  // namespace xplor::dist
