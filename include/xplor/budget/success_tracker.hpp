#pragma once
// Online per-prompt success estimates p_hat for Knapsack RL budgets (Li et al., "Knapsack RL:
// Unlocking Exploration of LLMs via Optimizing Budget Allocation", arXiv 2509.25849), as the
// reference code keeps them (liziniu/KnapsackRL, verl/utils/dataset/rl_dataset.py,
// update_sample_state / get_sample_state). docs/budget.md, "Success estimates".

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "xplor/budget/knapsack.hpp"
#include "xplor/core/error.hpp"

namespace xplor::budget {

/// How a prompt's success rate is estimated from the rewards of its visits (one visit = the group
/// of rollouts of one training step).
enum class estimate_mode {
  /// Mean reward of the most recent visit (the default, docs/methods.md §7.4; the code's
  /// epoch_estimation = True).
  last_visit,
  /// The code with robust_epoch_estimation = True (its 7B script): the last visit's mean if that
  /// visit had >= buffer_length rewards, else the mean of the last buffer_length rewards of all visits.
  last_visit_robust,
  /// Mean of the last buffer_length rewards across visits (the code's epoch_estimation = False).
  sliding_buffer,
};

/// What the rewards mean. The knapsack value assumes Bernoulli rewards; a reward r in [0, 1]
/// counts as r successes (so p_hat is the mean reward), which is exact for 0/1 rewards.
enum class reward_scale {
  unit_interval,  ///< rewards in [0, 1] (verifiable 0/1 rewards, or partial credit)
  ternary,        ///< rewards in {-1, 0, 1} (TruthRL), -1 -> 0 as the code's update_sample_state does
};

/// Options of `success_tracker`; defaults from rl_dataset.py and run_knapsack_grpo_7b.sh.
struct tracker_options {
  estimate_mode mode = estimate_mode::last_visit;  ///< docs/methods.md §7.4
  int buffer_length = 16;  ///< reward_buffer_length = 16 (REWARD_BUFFER_LENGTH in the 7B script)
  int min_rollouts = 8;    ///< min_buffer_length = 8: fewer rewards seen -> no estimate (uniform share)
  reward_scale rewards = reward_scale::unit_interval;  ///< the code asserts {-1, 0, 1}: `ternary`
};

/// Estimates for one batch of prompts, ready for `allocate_rollouts`.
struct batch_estimates {
  std::vector<double> p_hat = {};               ///< [B] estimate; 0 where there is none (not read)
  std::vector<std::uint8_t> has_estimate = {};  ///< [B] 1 once the prompt has >= min_rollouts rewards
};

/// Per-prompt success estimates keyed by prompt id.
/// @tparam Key prompt id type (dataset index by default; the code uses strings)
/// @tparam Hash hash of Key
template <class Key = std::int64_t, class Hash = std::hash<Key>>
class basic_success_tracker {
 public:
  explicit basic_success_tracker(tracker_options options = {}) : options_(options) {
    constexpr std::string_view fn = "xplor::budget::success_tracker";
    detail::require(options.buffer_length >= 1, fn, "options.buffer_length = ", options.buffer_length,
                    " is below 1");
    detail::require(options.min_rollouts >= 0, fn, "options.min_rollouts = ", options.min_rollouts,
                    " is negative");
  }

  /// Records one visit of prompt `id`: the rewards of its rollouts in this step (at least one).
  void record(const Key& id, std::span<const double> rewards) {
    constexpr std::string_view fn = "xplor::budget::success_tracker::record";
    detail::require(!rewards.empty(), fn, "rewards is empty; a visit needs at least one reward");
    for (std::size_t i = 0; i < rewards.size(); ++i) {
      const double r = rewards[i];
      if (options_.rewards == reward_scale::ternary)
        detail::require(r == -1.0 || r == 0.0 || r == 1.0, fn, "rewards[", i, "] = ", r,
                        " is not -1, 0 or 1 (reward_scale::ternary)");
      else
        detail::require(r >= 0.0 && r <= 1.0, fn, "rewards[", i, "] = ", r,
                        " is outside [0, 1] (reward_scale::unit_interval)");
    }
    state& s = states_[id];
    const auto cap = static_cast<std::size_t>(options_.buffer_length);
    if (s.ring.empty()) s.ring.assign(cap, 0.0);
    double sum = 0;
    for (const double raw : rewards) {
      const double r = raw < 0.0 ? 0.0 : raw;
      sum += r;
      s.ring[s.head] = r;
      s.head = (s.head + 1) % cap;
    }
    s.count += static_cast<std::int64_t>(rewards.size());
    s.last_size = static_cast<std::int64_t>(rewards.size());
    s.last_mean = sum / static_cast<double>(rewards.size());
  }

  /// The estimate of prompt `id`, or no value while fewer than min_rollouts rewards have been seen
  /// (the code's is_buffer_full = 0: the allocator gives such prompts the uniform share).
  std::optional<double> estimate(const Key& id) const {
    const auto it = states_.find(id);
    if (it == states_.end() || it->second.count < options_.min_rollouts) return std::nullopt;
    const state& s = it->second;
    const auto cap = static_cast<std::int64_t>(options_.buffer_length);
    if (options_.mode == estimate_mode::last_visit ||
        (options_.mode == estimate_mode::last_visit_robust && s.last_size >= cap))
      return s.last_mean;
    // Mean of the most recent min(count, buffer_length) rewards.
    const std::int64_t k = std::min(s.count, cap);
    double sum = 0;
    std::size_t at = s.head;
    for (std::int64_t j = 0; j < k; ++j) {
      at = (at == 0 ? static_cast<std::size_t>(cap) : at) - 1;
      sum += s.ring[at];
    }
    return sum / static_cast<double>(k);
  }

  /// Number of rewards recorded for `id` (0 if never seen).
  std::int64_t count(const Key& id) const {
    const auto it = states_.find(id);
    return it == states_.end() ? 0 : it->second.count;
  }

  /// p_hat and has_estimate for a batch of prompt ids, in order.
  batch_estimates estimates(std::span<const Key> ids) const {
    batch_estimates out;
    out.p_hat.resize(ids.size(), 0.0);
    out.has_estimate.resize(ids.size(), 0);
    for (std::size_t i = 0; i < ids.size(); ++i) {
      if (const auto e = estimate(ids[i])) {
        out.p_hat[i] = *e;
        out.has_estimate[i] = 1;
      }
    }
    return out;
  }

  /// Rollouts for a batch of prompt ids: `allocate_rollouts` on `estimates(ids)`.
  std::vector<int> allocate(std::span<const Key> ids, std::int64_t total_budget,
                            const allocation_options& options = {}) const {
    const batch_estimates e = estimates(ids);
    return allocate_rollouts(e.p_hat, e.has_estimate, total_budget, options);
  }

  std::size_t size() const noexcept { return states_.size(); }  ///< prompts seen
  const tracker_options& options() const noexcept { return options_; }
  void clear() { states_.clear(); }

 private:
  struct state {
    std::int64_t count = 0, last_size = 0;
    double last_mean = 0;
    std::vector<double> ring;  // the last buffer_length rewards, ring[head - 1] the newest
    std::size_t head = 0;
  };
  tracker_options options_;
  std::unordered_map<Key, state, Hash> states_;
};

using success_tracker = basic_success_tracker<>;

/// `allocate_rollouts` on a batch's estimates (prompts without one get the uniform share).
inline std::vector<int> allocate_rollouts(const batch_estimates& estimates, std::int64_t total_budget,
                                          const allocation_options& options = {}) {
  detail::require(estimates.p_hat.size() == estimates.has_estimate.size(), detail::kAllocate,
                  "estimates.p_hat has ", estimates.p_hat.size(), " entries but estimates.has_estimate has ",
                  estimates.has_estimate.size());
  return allocate_rollouts(estimates.p_hat, estimates.has_estimate, total_budget, options);
}

}  // namespace xplor::budget
