// Token-level advantage estimators on either backend, as verl computes them over a response
// batch: GAE with a value function's values (Schulman et al. 2016), REINFORCE++ with discounted
// token returns (arXiv 2501.03262), ReMax's greedy-baseline returns (arXiv 2310.10505), verl's
// masked whitening, and outcome advantages spread over the response tokens. Formulas: docs/rl.md.
//
// Layout: token arrays [T] in the backend's memory, sequence s owns [offsets[s], offsets[s+1])
// (host offsets); a padded [B, L] batch is the flat layout with offsets b * L, padding mask 0.
// Positions with mask 0 inside or after a response are handled as verl 0.9 handles them (GAE and
// REINFORCE++ skip them and carry their running values through), so the arrays equal verl's
// element by element.
#pragma once

#include <cmath>
#include <cstdint>
#include <span>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/groups.hpp"
#include "xplor/core/numerics.hpp"

namespace xplor::rl {

namespace kernels {

/// verl compute_gae_advantage_return over one sequence, backwards: delta_t = r_t + gamma V_{t+1}
/// - V_t, A_t = delta_t + gamma lambda A_{t+1}, where "next" skips positions with mask 0.
struct gae_kernel {
  const float* rewards;
  const float* values;
  const float* mask;
  const std::int64_t* offsets;
  float gamma, lam;
  float* adv;
  float* returns;
  XPLOR_HD void operator()(std::int64_t s) const {
    float next_value = 0.0f, last = 0.0f;
    for (std::int64_t t = offsets[s + 1]; t-- > offsets[s];) {
      const float m = mask[t];
      const float delta = rewards[t] + gamma * next_value - values[t];
      const float candidate = delta + gamma * lam * last;
      next_value = values[t] * m + (1.0f - m) * next_value;
      last = candidate * m + (1.0f - m) * last;
      adv[t] = last;
      returns[t] = last + values[t];
    }
  }
};

/// verl compute_reinforce_plus_plus_outcome_advantage's returns: G_t = r_t + gamma G_{t+1} over
/// the positions with mask 1; a position with mask 0 (an observation span) gets return 0 and
/// passes the running return through unchanged (verl 0.9).
struct discounted_token_returns {
  const float* rewards;
  const float* mask;
  const std::int64_t* offsets;
  float gamma;
  float* returns;
  XPLOR_HD void operator()(std::int64_t s) const {
    float running = 0.0f;
    for (std::int64_t t = offsets[s + 1]; t-- > offsets[s];) {
      const float next = rewards[t] + gamma * running;
      returns[t] = next * mask[t];
      running = next * mask[t] + running * (1.0f - mask[t]);
    }
  }
};

/// ReMax: returns = reverse cumulative sum of r m; A = returns - baseline_s m.
struct remax_kernel {
  const float* rewards;
  const float* mask;
  const float* baselines;
  const std::int64_t* offsets;
  float* adv;
  float* returns;
  XPLOR_HD void operator()(std::int64_t s) const {
    float sum = 0.0f;
    for (std::int64_t t = offsets[s + 1]; t-- > offsets[s];) {
      sum += rewards[t] * mask[t];
      returns[t] = sum;
      adv[t] = sum - baselines[s] * mask[t];
    }
  }
};

struct masked_moments {
  double sum = 0.0, weight = 0.0;
};
struct add_masked_moments {
  XPLOR_HD masked_moments operator()(const masked_moments& a, const masked_moments& b) const {
    return {a.sum + b.sum, a.weight + b.weight};
  }
};
/// (sum of m (x - shift)^power, sum of m) with verl's masked_sum (x where m != 0, times m).
struct masked_power {
  const float* x;
  const float* m;
  double shift;
  int power;
  XPLOR_HD masked_moments operator()(std::int64_t t) const {
    if (m[t] == 0.0f) return {0.0, 0.0};
    const double d = double(x[t]) - shift;
    return {(power == 1 ? d : d * d) * m[t], double(m[t])};
  }
};
struct whiten_kernel {
  const float* in;
  float* out;
  double mean, inv_std;
  bool shift_mean;
  XPLOR_HD void operator()(std::int64_t t) const {
    const double w = (double(in[t]) - mean) * inv_std;
    out[t] = static_cast<float>(shift_mean ? w : w + mean);
  }
};
/// out[t] = values[s] * mask[t] (verl: scores.unsqueeze(-1) * response_mask).
struct spread_kernel {
  const float* values;
  const float* mask;
  const std::int64_t* offsets;
  float* out;
  XPLOR_HD void operator()(std::int64_t s) const {
    for (std::int64_t t = offsets[s]; t < offsets[s + 1]; ++t) out[t] = values[s] * mask[t];
  }
};
/// out[k] = the sum of x over sequence order[k] (double accumulation).
struct row_sums {
  const float* x;
  const std::int64_t* offsets;
  const std::int64_t* order;
  float* out;
  XPLOR_HD void operator()(std::int64_t k) const {
    const std::int64_t s = order[k];
    double sum = 0.0;
    for (std::int64_t t = offsets[s]; t < offsets[s + 1]; ++t) sum += x[t];
    out[k] = static_cast<float>(sum);
  }
};
/// out[order[k]] = in[k].
struct scatter_by {
  const float* in;
  const std::int64_t* order;
  float* out;
  XPLOR_HD void operator()(std::int64_t k) const { out[order[k]] = in[k]; }
};
struct copy_kernel {
  const float* in;
  float* out;
  XPLOR_HD void operator()(std::int64_t t) const { out[t] = in[t]; }
};
struct multiply_kernel {
  float* x;
  const float* m;
  XPLOR_HD void operator()(std::int64_t t) const { x[t] *= m[t]; }
};

template <class Exec>
void check_token_inputs(Exec exec, std::span<const std::int64_t> offsets, std::int64_t T,
                        std::initializer_list<std::pair<span_for<Exec, const float>, const char*>> arrays,
                        const char* fn) {
  const ragged_groups sequences(offsets, T);
  (void)sequences;
  for (const auto& [a, name] : arrays) {
    detail::require(static_cast<std::int64_t>(a.size()) == T, fn, name, " has ", a.size(), " elements for ",
                    T, " tokens");
    check_finite(exec, a, fn, name);
  }
}

}  // namespace kernels

/// verl masked_whiten: (x - mean) / sqrt(var + 1e-8) with the mask-weighted mean and the Bessel
/// variance (sum m (x - mean)^2 / (sum m + 1e-8) * sum m / (sum m - 1)); with shift_mean false
/// the mean is added back. Needs a mask weight above 1 (verl raises otherwise). `out` may alias
/// `values`.
template <execution_tag Exec>
void masked_whiten(Exec exec, span_for<Exec, const float> values, span_for<Exec, const float> mask,
                   span_for<Exec, float> out, bool shift_mean = true) {
  constexpr const char* fn = "xplor::rl::masked_whiten";
  const auto T = static_cast<std::int64_t>(values.size());
  detail::require(mask.size() == values.size() && out.size() == values.size(), fn,
                  "values, mask and out have ", values.size(), ", ", mask.size(), " and ", out.size(),
                  " elements");
  const auto first = transform_reduce(exec, T, kernels::masked_moments{}, kernels::add_masked_moments{},
                                      kernels::masked_power{values.data(), mask.data(), 0.0, 1});
  detail::require(first.weight > 1.0, fn, "the mask weighs ", first.weight,
                  "; the Bessel variance needs more than one token");
  const double mean = first.sum / (first.weight + 1e-8);
  const auto second = transform_reduce(exec, T, kernels::masked_moments{}, kernels::add_masked_moments{},
                                       kernels::masked_power{values.data(), mask.data(), mean, 2});
  const double var = second.sum / (first.weight + 1e-8) * (first.weight / (first.weight - 1.0));
  for_each_index(
      exec, T,
      kernels::whiten_kernel{values.data(), out.data(), mean, 1.0 / std::sqrt(var + 1e-8), shift_mean});
}

/// GAE (verl compute_gae_advantage_return): advantages and returns = advantages + values, then
/// the advantages whitened over the masked tokens (`whiten`, verl's behaviour).
template <execution_tag Exec>
void gae_advantages(Exec exec, span_for<Exec, const float> token_rewards, span_for<Exec, const float> values,
                    span_for<Exec, const float> mask, std::span<const std::int64_t> sequence_offsets,
                    float gamma, float lam, span_for<Exec, float> advantages, span_for<Exec, float> returns,
                    bool whiten = true) {
  constexpr const char* fn = "xplor::rl::gae_advantages";
  const auto T = static_cast<std::int64_t>(token_rewards.size());
  kernels::check_token_inputs(exec, sequence_offsets, T,
                              {{token_rewards, "token_rewards"}, {values, "values"}, {mask, "mask"}}, fn);
  detail::require(std::isfinite(gamma) && gamma >= 0.0f && gamma <= 1.0f, fn, "gamma = ", gamma,
                  " is outside [0, 1]");
  detail::require(std::isfinite(lam) && lam >= 0.0f && lam <= 1.0f, fn, "lam = ", lam, " is outside [0, 1]");
  detail::require(
      static_cast<std::int64_t>(advantages.size()) == T && static_cast<std::int64_t>(returns.size()) == T, fn,
      "advantages / returns have ", advantages.size(), " / ", returns.size(), " elements for ", T, " tokens");
  const auto offsets = stage(exec, sequence_offsets);
  const auto S = static_cast<std::int64_t>(sequence_offsets.size()) - 1;
  for_each_index(exec, S,
                 kernels::gae_kernel{token_rewards.data(), values.data(), mask.data(), offsets.data(), gamma,
                                     lam, advantages.data(), returns.data()});
  if (whiten) masked_whiten(exec, span_for<Exec, const float>(advantages), mask, advantages);
}

/// REINFORCE++ (verl compute_reinforce_plus_plus_outcome_advantage): discounted token returns,
/// whitened over the masked tokens, times the mask.
template <execution_tag Exec>
void reinforce_pp_token_advantages(Exec exec, span_for<Exec, const float> token_rewards,
                                   span_for<Exec, const float> mask,
                                   std::span<const std::int64_t> sequence_offsets, float gamma,
                                   span_for<Exec, float> advantages, span_for<Exec, float> returns) {
  constexpr const char* fn = "xplor::rl::reinforce_pp_token_advantages";
  const auto T = static_cast<std::int64_t>(token_rewards.size());
  kernels::check_token_inputs(exec, sequence_offsets, T, {{token_rewards, "token_rewards"}, {mask, "mask"}},
                              fn);
  detail::require(std::isfinite(gamma) && gamma >= 0.0f && gamma <= 1.0f, fn, "gamma = ", gamma,
                  " is outside [0, 1]");
  detail::require(
      static_cast<std::int64_t>(advantages.size()) == T && static_cast<std::int64_t>(returns.size()) == T, fn,
      "advantages / returns have ", advantages.size(), " / ", returns.size(), " elements for ", T, " tokens");
  const auto offsets = stage(exec, sequence_offsets);
  const auto S = static_cast<std::int64_t>(sequence_offsets.size()) - 1;
  for_each_index(exec, S,
                 kernels::discounted_token_returns{token_rewards.data(), mask.data(), offsets.data(), gamma,
                                                   returns.data()});
  masked_whiten(exec, span_for<Exec, const float>(returns), mask, advantages);
  for_each_index(exec, T, kernels::multiply_kernel{advantages.data(), mask.data()});
}

/// ReMax (verl compute_remax_outcome_advantage): returns = reverse cumulative sum of r m,
/// A = returns - baseline_s m, with baselines [S] the rewards of the greedy responses.
template <execution_tag Exec>
void remax_advantages(Exec exec, span_for<Exec, const float> token_rewards,
                      span_for<Exec, const float> baselines, span_for<Exec, const float> mask,
                      std::span<const std::int64_t> sequence_offsets, span_for<Exec, float> advantages,
                      span_for<Exec, float> returns) {
  constexpr const char* fn = "xplor::rl::remax_advantages";
  const auto T = static_cast<std::int64_t>(token_rewards.size());
  kernels::check_token_inputs(exec, sequence_offsets, T, {{token_rewards, "token_rewards"}, {mask, "mask"}},
                              fn);
  const auto S = static_cast<std::int64_t>(sequence_offsets.size()) - 1;
  detail::require(static_cast<std::int64_t>(baselines.size()) == S, fn, "baselines has ", baselines.size(),
                  " elements for ", S, " sequences");
  check_finite(exec, baselines, fn, "baselines");
  detail::require(
      static_cast<std::int64_t>(advantages.size()) == T && static_cast<std::int64_t>(returns.size()) == T, fn,
      "advantages / returns have ", advantages.size(), " / ", returns.size(), " elements for ", T, " tokens");
  const auto offsets = stage(exec, sequence_offsets);
  for_each_index(exec, S,
                 kernels::remax_kernel{token_rewards.data(), mask.data(), baselines.data(), offsets.data(),
                                       advantages.data(), returns.data()});
}

/// Outcome advantages [S] spread over the response tokens: out[t] = values[s] * mask[t]; with
/// `whiten` (verl's reinforce_plus_plus_baseline) then masked_whiten and times the mask again.
template <execution_tag Exec>
void spread_over_tokens(Exec exec, span_for<Exec, const float> values, span_for<Exec, const float> mask,
                        std::span<const std::int64_t> sequence_offsets, span_for<Exec, float> out,
                        bool whiten = false) {
  constexpr const char* fn = "xplor::rl::spread_over_tokens";
  const auto T = static_cast<std::int64_t>(mask.size());
  kernels::check_token_inputs(exec, sequence_offsets, T, {{mask, "mask"}}, fn);
  const auto S = static_cast<std::int64_t>(sequence_offsets.size()) - 1;
  detail::require(static_cast<std::int64_t>(values.size()) == S, fn, "values has ", values.size(),
                  " elements for ", S, " sequences");
  detail::require(static_cast<std::int64_t>(out.size()) == T, fn, "out has ", out.size(), " elements for ", T,
                  " tokens");
  const auto offsets = stage(exec, sequence_offsets);
  for_each_index(exec, S, kernels::spread_kernel{values.data(), mask.data(), offsets.data(), out.data()});
  if (whiten) {
    masked_whiten(exec, span_for<Exec, const float>(out), mask, out);
    for_each_index(exec, T, kernels::multiply_kernel{out.data(), mask.data()});
  }
}

}  // namespace xplor::rl
