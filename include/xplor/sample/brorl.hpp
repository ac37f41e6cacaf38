// BroRL (NVIDIA), "BroRL: Scaling Reinforcement Learning via Broadened Exploration", arXiv
// 2510.01180. The mass-balance analysis of one update in logit space (Theorem 1, Lemma 2)
// as diagnostics, the pass@k link, and the training preset (N = 512 rollouts per prompt, 128
// prompts per step, lr scaled by sqrt of the batch ratio, dynamic sampling, REINFORCE++).
// Formulas and the bandit simulator: docs/brorl.md; spec: docs/methods.md §1.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/rl/advantage.hpp"
#include "xplor/rl/loss.hpp"

namespace xplor::sample {

// ---------------------------------------------------------------------------------------------
// Theorem 1 (docs/methods.md §1.3). A vocabulary with probabilities p = softmax(z), a correct set P and
// a set of sampled tokens. A sampled correct token earns R_c, a sampled wrong token R_w
// (R_c >= 0 >= R_w), an unsampled token 0. The sampled set is given as one byte per token,
// nonzero = sampled: a per-token sample count works as is, and each sampled token counts once
// whatever its multiplicity, as in the theorem. A = sampled & correct, B = sampled & wrong,
// U = unsampled.

/// The three terms of Theorem 1 divided by eta/N, and the quantities they are built from:
///   dQ_pos / (eta/N) = (R_c - S_R) Q_neg A2 + (S_R - R_w) Q_pos B2 + S_R (Q_pos U_neg2 - Q_neg U_pos2).
struct mass_balance_terms {
  double sampled_correct = 0.0;     ///< (R_c - S_R) Q_neg A2, always >= 0
  double sampled_incorrect = 0.0;   ///< (S_R - R_w) Q_pos B2, always >= 0
  double unsampled_coupling = 0.0;  ///< S_R (Q_pos U_neg2 - Q_neg U_pos2), either sign
  double q_pos = 0.0;               ///< sum of p over the correct set P
  double q_neg = 0.0;               ///< 1 - q_pos
  double p_pos = 0.0;               ///< sum of p over A
  double p_neg = 0.0;               ///< sum of p over B
  double s_r = 0.0;                 ///< S_R = R_c p_pos + R_w p_neg, in [R_w, R_c]
  double a2 = 0.0;                  ///< sum of p^2 over A
  double b2 = 0.0;                  ///< sum of p^2 over B
  double u_pos2 = 0.0;              ///< sum of p^2 over unsampled correct tokens
  double u_neg2 = 0.0;              ///< sum of p^2 over unsampled wrong tokens
  /// dQ_pos / (eta/N), the first-order change of the correct mass per unit of eta/N.
  double total() const { return sampled_correct + sampled_incorrect + unsampled_coupling; }
};

namespace detail {

using xplor::detail::fail;
using xplor::detail::require;

/// Probabilities in [0, 1] summing to 1 within 1e-6; per-token arrays of the same size.
inline void check_distribution(const char* fn, std::span<const double> p,
                               std::span<const std::uint8_t> correct) {
  require(!p.empty(), fn, "p is empty");
  require(correct.size() == p.size(), fn, "correct has ", correct.size(), " elements for ", p.size(),
          " probabilities");
  double sum = 0.0;
  for (std::size_t k = 0; k < p.size(); ++k) {
    require(std::isfinite(p[k]) && p[k] >= 0.0 && p[k] <= 1.0, fn, "p[", k, "] = ", p[k],
            " is outside [0, 1]");
    sum += p[k];
  }
  require(std::abs(sum - 1.0) <= 1e-6, fn, "p sums to ", sum, ", not 1 (tolerance 1e-6)");
}

inline void check_sampled(const char* fn, std::span<const double> p, std::span<const std::uint8_t> sampled) {
  require(sampled.size() == p.size(), fn, "sampled has ", sampled.size(), " elements for ", p.size(),
          " probabilities");
}

inline void check_rewards(const char* fn, double reward_correct, double reward_wrong) {
  require(std::isfinite(reward_correct) && reward_correct >= 0.0, fn, "reward_correct = ", reward_correct,
          " must be finite and >= 0");
  require(std::isfinite(reward_wrong) && reward_wrong <= 0.0, fn, "reward_wrong = ", reward_wrong,
          " must be finite and <= 0");
}

/// The theorem's quantities on validated input.
inline mass_balance_terms mass_balance_unchecked(std::span<const double> p,
                                                 std::span<const std::uint8_t> correct,
                                                 std::span<const std::uint8_t> sampled, double reward_correct,
                                                 double reward_wrong) {
  mass_balance_terms t;
  for (std::size_t k = 0; k < p.size(); ++k) {
    const double p2 = p[k] * p[k];
    if (correct[k] != 0) {
      t.q_pos += p[k];
      if (sampled[k] != 0) {
        t.p_pos += p[k];
        t.a2 += p2;
      } else {
        t.u_pos2 += p2;
      }
    } else if (sampled[k] != 0) {
      t.p_neg += p[k];
      t.b2 += p2;
    } else {
      t.u_neg2 += p2;
    }
  }
  t.q_neg = 1.0 - t.q_pos;
  t.s_r = reward_correct * t.p_pos + reward_wrong * t.p_neg;
  t.sampled_correct = (reward_correct - t.s_r) * t.q_neg * t.a2;
  t.sampled_incorrect = (t.s_r - reward_wrong) * t.q_pos * t.b2;
  t.unsampled_coupling = t.s_r * (t.q_pos * t.u_neg2 - t.q_neg * t.u_pos2);
  return t;
}

}  // namespace detail

/// Theorem 1's terms for probabilities `p` [V], correct flags `correct` [V] and sampled flags
/// `sampled` [V] (nonzero = sampled at least once; counts are accepted, multiplicity is ignored).
/// Throws xplor::error unless p is a distribution (entries in [0, 1], sum 1 within 1e-6), the
/// sizes match and reward_correct >= 0 >= reward_wrong.
inline mass_balance_terms mass_balance(std::span<const double> p, std::span<const std::uint8_t> correct,
                                       std::span<const std::uint8_t> sampled, double reward_correct,
                                       double reward_wrong) {
  constexpr const char* fn = "xplor::sample::mass_balance";
  detail::check_distribution(fn, p, correct);
  detail::check_sampled(fn, p, sampled);
  detail::check_rewards(fn, reward_correct, reward_wrong);
  return detail::mass_balance_unchecked(p, correct, sampled, reward_correct, reward_wrong);
}

/// The update behind Theorem 1: one gradient-ascent step of the linear surrogate
/// J = sum over sampled tokens of R_k p_k (each sampled token once), written to `dz` [V]:
///   dz_k = scale * p_k * (R_k - S_R),  R_k = R_c (sampled correct), R_w (sampled wrong), 0 (unsampled),
/// with scale = eta/N. Its first-order effect on the correct mass is scale * mass_balance(...).total().
inline void first_order_logit_step(std::span<const double> p, std::span<const std::uint8_t> correct,
                                   std::span<const std::uint8_t> sampled, double reward_correct,
                                   double reward_wrong, double scale, std::span<double> dz) {
  constexpr const char* fn = "xplor::sample::first_order_logit_step";
  detail::check_distribution(fn, p, correct);
  detail::check_sampled(fn, p, sampled);
  detail::check_rewards(fn, reward_correct, reward_wrong);
  detail::require(std::isfinite(scale) && scale >= 0.0, fn, "scale = ", scale, " must be finite and >= 0");
  detail::require(dz.size() == p.size(), fn, "dz has ", dz.size(), " elements for ", p.size(),
                  " probabilities");
  const double s_r = detail::mass_balance_unchecked(p, correct, sampled, reward_correct, reward_wrong).s_r;
  for (std::size_t k = 0; k < p.size(); ++k) {
    const double r = sampled[k] == 0 ? 0.0 : (correct[k] != 0 ? reward_correct : reward_wrong);
    dz[k] = scale * p[k] * (r - s_r);
  }
}

/// The exact change of the correct mass when the logits behind `p` move by `dz` [V]:
/// Q_pos(softmax(log p + dz)) - Q_pos(p), evaluated as (S M_P - Q_P M) / (S (S + M)) with
/// m_k = expm1(dz_k), S = sum p, Q_P = sum_P p, M = sum p m, M_P = sum_P p m, so a tiny step
/// loses no digits to cancellation (finite-difference checks of Theorem 1 use eps ~ 1e-6).
inline double correct_mass_change(std::span<const double> p, std::span<const std::uint8_t> correct,
                                  std::span<const double> dz) {
  constexpr const char* fn = "xplor::sample::correct_mass_change";
  detail::check_distribution(fn, p, correct);
  detail::require(dz.size() == p.size(), fn, "dz has ", dz.size(), " elements for ", p.size(),
                  " probabilities");
  double s = 0.0, q = 0.0, m = 0.0, m_pos = 0.0;
  for (std::size_t k = 0; k < p.size(); ++k) {
    detail::require(std::isfinite(dz[k]) && dz[k] <= 700.0, fn, "dz[", k, "] = ", dz[k],
                    " is not finite or overflows exp (> 700)");
    const double pm = p[k] * std::expm1(dz[k]);
    s += p[k];
    m += pm;
    if (correct[k] != 0) {
      q += p[k];
      m_pos += pm;
    }
  }
  return (s * m_pos - q * m) / (s * (s + m));
}

/// Lemma 2: the expected contribution of a token of probability p to the unsampled second
/// moment (U_pos2 or U_neg2) after n i.i.d. draws, p^2 (1 - p)^n. Decays geometrically in n.
inline double expected_unsampled_second_moment(double p, int n) {
  constexpr const char* fn = "xplor::sample::expected_unsampled_second_moment";
  detail::require(std::isfinite(p) && p >= 0.0 && p <= 1.0, fn, "p = ", p, " is outside [0, 1]");
  detail::require(n >= 0, fn, "n = ", n, " must be >= 0");
  if (p == 1.0) return n == 0 ? 1.0 : 0.0;
  return p * p * std::exp(double(n) * std::log1p(-p));
}

/// pass@k of a prompt whose correct mass is q_pos: 1 - (1 - q_pos)^k (docs/methods.md §1.3).
inline double pass_at_k(double q_pos, int k) {
  constexpr const char* fn = "xplor::sample::pass_at_k";
  detail::require(std::isfinite(q_pos) && q_pos >= 0.0 && q_pos <= 1.0, fn, "q_pos = ", q_pos,
                  " is outside [0, 1]");
  detail::require(k >= 1, fn, "k = ", k, " must be >= 1");
  if (q_pos == 1.0) return 1.0;
  return -std::expm1(double(k) * std::log1p(-q_pos));
}

// ---------------------------------------------------------------------------------------------
// The BroRL training preset (docs/methods.md §1.2, §1.4, §1.6): the ProRLv2 recipe with one knob turned.

/// BroRL's settings against the ProRL baseline they were scaled from. The learning rate follows
/// eta_new = eta_0 sqrt(B_new / B_0) with B counted in samples (prompts x rollouts): 128 x 512 =
/// 65536 against 512 x 16 = 8192, a factor sqrt(8) = 2.8284. The paper does not say which B it
/// uses; counting prompts instead would give sqrt(1/4) = 0.5.
struct brorl_preset {
  int num_generations = 512;        ///< N, rollouts per prompt (BroRL)
  int prompts_per_step = 128;       ///< prompts per step (BroRL)
  int base_num_generations = 16;    ///< N_0 of the ProRL baseline
  int base_prompts_per_step = 512;  ///< prompts per step of the ProRL baseline
  /// DAPO dynamic sampling: drop groups whose rewards are all equal (all correct or all wrong);
  /// see keep_nondegenerate_groups.
  bool dynamic_sampling = true;
  /// REINFORCE++ advantages: group mean subtracted, then a z-score over the global batch.
  rl::estimator advantage_estimator = rl::estimator::reinforce_pp;
  /// veRL's conventions (BroRL trains on veRL): unbiased std, eps 1e-6 added to the std, a group
  /// of one keeps its reward. (veRL's whitening, as we read it, uses rsqrt(var + 1e-8): a relative
  /// difference near 1e-6.)
  rl::advantage_options advantage = rl::verl_options();
  /// Clip-higher PPO bounds: ProRL's values, UNVERIFIED for the BroRL runs (docs/methods.md §1.2: the
  /// BroRL paper does not give them).
  float epsilon_low = 0.2f;
  float epsilon_high = 0.4f;

  /// Samples (rollouts) per step, B = prompts_per_step * num_generations.
  std::int64_t samples_per_step() const {
    check("samples_per_step");
    return std::int64_t{prompts_per_step} * num_generations;
  }
  /// B_0 = base_prompts_per_step * base_num_generations.
  std::int64_t base_samples_per_step() const {
    check("base_samples_per_step");
    return std::int64_t{base_prompts_per_step} * base_num_generations;
  }
  /// sqrt(B / B_0), samples counted: 2.8284 for the paper's numbers.
  double lr_scale() const { return std::sqrt(double(samples_per_step()) / double(base_samples_per_step())); }
  /// base_lr * lr_scale().
  double learning_rate(double base_lr) const {
    detail::require(std::isfinite(base_lr) && base_lr > 0.0, "xplor::sample::brorl_preset::learning_rate",
                    "base_lr = ", base_lr, " must be finite and > 0");
    return base_lr * lr_scale();
  }
  /// The policy-loss options: xplor's defaults (token-mean "dapo" aggregation) with
  /// epsilon = epsilon_low and epsilon_high. ProRL's KL penalty with periodic reference resets is
  /// left to the trainer (beta stays 0 here: the BroRL coefficient is not published).
  rl::loss_options loss() const {
    constexpr const char* fn = "xplor::sample::brorl_preset::loss";
    detail::require(std::isfinite(epsilon_low) && epsilon_low > 0.0f && epsilon_low < 1.0f, fn,
                    "epsilon_low = ", epsilon_low, " is outside (0, 1)");
    detail::require(std::isfinite(epsilon_high) && epsilon_high > 0.0f, fn, "epsilon_high = ", epsilon_high,
                    " must be finite and > 0");
    rl::loss_options o;
    o.epsilon = epsilon_low;
    o.epsilon_high = epsilon_high;
    return o;
  }

 private:
  void check(const char* what) const {
    std::string fn = "xplor::sample::brorl_preset::";
    fn += what;
    detail::require(num_generations >= 1, fn, "num_generations = ", num_generations, " must be >= 1");
    detail::require(prompts_per_step >= 1, fn, "prompts_per_step = ", prompts_per_step, " must be >= 1");
    detail::require(base_num_generations >= 1, fn, "base_num_generations = ", base_num_generations,
                    " must be >= 1");
    detail::require(base_prompts_per_step >= 1, fn, "base_prompts_per_step = ", base_prompts_per_step,
                    " must be >= 1");
  }
};

/// Dynamic sampling: the indices of the groups to keep, in order, given one flag per group
/// (nonzero = degenerate, e.g. the `degenerate` output of rl::compute_advantages: all rewards
/// equal). Recompute the advantages on the kept groups so that the batch z-score of REINFORCE++
/// sees only them (docs/brorl.md).
inline std::vector<std::int64_t> keep_nondegenerate_groups(std::span<const std::uint8_t> degenerate) {
  std::vector<std::int64_t> kept = {};
  kept.reserve(degenerate.size());
  for (std::size_t g = 0; g < degenerate.size(); ++g)
    if (degenerate[g] == 0) kept.push_back(static_cast<std::int64_t>(g));
  return kept;
}

}  // namespace xplor::sample
