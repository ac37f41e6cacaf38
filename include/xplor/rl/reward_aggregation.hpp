// Several reward functions into one advantage per sample, TRL's multi_objective_aggregation:
// sum_then_normalize (the weighted sum, then GRPO group advantages) or normalize_then_sum (each
// function z-scored within its group over the samples where it applies, the weighted sum, then a
// batch z-score). Both reuse compute_advantages / rebn_advantages, so the normalisation formulas
// live in advantage.hpp only. Values come from xplor::reward::composite_reward::evaluate.
#pragma once

#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/groups.hpp"
#include "xplor/rl/advantage.hpp"

namespace xplor::rl {

/// TRL `multi_objective_aggregation`.
enum class aggregation { sum_then_normalize, normalize_then_sum };

struct aggregate_options {
  aggregation mode = aggregation::sum_then_normalize;
  scale_rewards scale = scale_rewards::group;  // sum_then_normalize; normalize_then_sum always z-scores
  float eps = 1e-4f;                           // added to the std, as TRL
};

struct aggregate_result {
  std::vector<float> rewards = {};     // per sample: the weighted sum (of rewards, or of z-scores)
  std::vector<float> advantages = {};  // per sample
  /// Fraction of samples whose scaling std is zero (TRL `frac_reward_zero_std`, per sample): the
  /// group's std for sum_then_normalize, the batch's for normalize_then_sum.
  double frac_zero_std = 0.0;
};

/// `rewards_per_func` is row-major [samples, K] (nullopt: not applicable), `weights` has K
/// entries, `groups` is equal_groups or ragged_groups over the samples. Std is Bessel-corrected
/// everywhere (TRL nanstd); a function with fewer than two applicable samples in a group
/// contributes nothing there (TRL: its nanstd is NaN and nansum drops it).
template <class Groups>
aggregate_result aggregate_rewards(std::span<const std::optional<float>> rewards_per_func,
                                   std::span<const float> weights, const Groups& groups,
                                   const aggregate_options& options = {}) {
  constexpr const char* fn = "xplor::rl::aggregate_rewards";
  const std::size_t k_funcs = weights.size();
  const auto n = static_cast<std::size_t>(groups.num_elements());
  detail::require(k_funcs > 0, fn, "weights is empty; give one weight per reward function");
  for (std::size_t k = 0; k < k_funcs; ++k)
    detail::require(std::isfinite(weights[k]), fn, "weights[", k, "] = ", weights[k], " is not finite");
  detail::require(rewards_per_func.size() == n * k_funcs, fn, "rewards_per_func has ",
                  rewards_per_func.size(), " values; expected ", n, " samples x ", k_funcs,
                  " functions = ", n * k_funcs);
  for (std::size_t i = 0; i < rewards_per_func.size(); ++i) {
    const std::optional<float>& v = rewards_per_func[i];
    detail::require(!v || std::isfinite(*v), fn, "rewards_per_func[", i / k_funcs, ", ", i % k_funcs,
                    "] = ", v ? *v : 0.0f,
                    " is not finite; return std::nullopt for a reward that does not apply");
  }
  detail::require(std::isfinite(options.eps) && options.eps >= 0.0f, fn, "eps = ", options.eps,
                  " must be finite and >= 0");

  aggregate_result result;
  result.rewards.assign(n, 0.0f);
  result.advantages.assign(n, 0.0f);
  advantage_options grpo;  // TRL: Bessel std, eps added, a group of one gets 0
  grpo.eps = options.eps;
  if (options.mode == aggregation::sum_then_normalize) {
    for (std::size_t i = 0; i < n; ++i) {
      double r = 0.0;
      for (std::size_t k = 0; k < k_funcs; ++k)
        if (const auto& v = rewards_per_func[i * k_funcs + k]) r += double(weights[k]) * *v;
      result.rewards[i] = static_cast<float>(r);
    }
    grpo.scale = options.scale;
    std::vector<std::uint8_t> zero_std(static_cast<std::size_t>(groups.num_groups()));
    const advantage_report report =
        compute_advantages(cpu, estimator::grpo, std::span<const float>(result.rewards), groups,
                           std::span(result.advantages), grpo, std::span(zero_std));
    std::int64_t flagged = 0;
    for (std::int64_t g = 0; g < groups.num_groups(); ++g)
      if (zero_std[static_cast<std::size_t>(g)]) flagged += groups.end(g) - groups.begin(g);
    // TRL tests the std it scales by: the batch's under scale_rewards = batch (1 or 0).
    result.frac_zero_std = options.scale == scale_rewards::batch
                               ? report.frac_zero_std()
                               : (n == 0 ? 0.0 : double(flagged) / double(n));
    return result;
  }
  // normalize_then_sum: per function, the applicable values compacted into ragged groups.
  std::vector<double> sums(n, 0.0);
  std::vector<float> present, z;
  std::vector<std::int64_t> offsets, where;
  for (std::size_t k = 0; k < k_funcs; ++k) {
    present.clear();
    where.clear();
    offsets.assign(1, 0);
    for (std::int64_t g = 0; g < groups.num_groups(); ++g) {
      for (std::int64_t i = groups.begin(g); i < groups.end(g); ++i)
        if (const auto& v = rewards_per_func[static_cast<std::size_t>(i) * k_funcs + k]) {
          present.push_back(*v);
          where.push_back(i);
        }
      offsets.push_back(static_cast<std::int64_t>(present.size()));
    }
    z.assign(present.size(), 0.0f);
    group_advantages(cpu, std::span<const float>(present), std::span<const std::int64_t>(offsets),
                     std::span(z), grpo);
    for (std::size_t j = 0; j < present.size(); ++j)
      sums[static_cast<std::size_t>(where[j])] += double(weights[k]) * z[j];
  }
  for (std::size_t i = 0; i < n; ++i) result.rewards[i] = static_cast<float>(sums[i]);
  rebn_options batch;
  batch.eps = options.eps;
  batch.std = std_kind::unbiased;
  const auto report =
      rebn_advantages(cpu, std::span<const float>(result.rewards), std::span(result.advantages), batch);
  result.frac_zero_std = report.batch_std <= double(grpo.degenerate_threshold) ? 1.0 : 0.0;
  return result;
}

}  // namespace xplor::rl
