// What a policy loss computes: the loss modes, aggregations, KL estimators and their options,
// the batch it reads and the statistics it returns. Defaults are TRL GRPOConfig's; verl's and
// TRL's other settings come from rl/presets.hpp. Formulas and sources: docs/rl.md.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"

namespace xplor::rl {

/// How per-token losses l (mask m, S sequences) become one number:
///   grpo:   mean_s [ sum_t m l / max(1, sum_t m) ]       (TRL grpo/sapo; verl seq-mean-token-mean)
///   bnpo:   sum m l / max(1, sum m)                        (TRL bnpo: the local tokens)
///   dr_grpo: sum m l / (S * max_completion_length)        (TRL dr_grpo)
///   dapo:   sum m l / num_items_in_batch (default: the active tokens)   (TRL dapo; verl token-mean)
///   seq_mean_token_sum: mean_s [ sum_t m l ]               (verl seq-mean-token-sum; TRL luspo)
///   seq_mean_token_sum_norm: mean_s [ sum_t m l ] / loss_scale_factor   (verl 0.9 seq-mean-token-sum-norm)
///   token_sum: sum m l                                      (verl token-sum)
/// With exclude_empty_sequences (verl), the seq-mean modes average over the sequences that have
/// an active token, and grpo's per-sequence denominator is sum_t m + 1e-8 (verl's agg_loss).
enum class loss_type { grpo, bnpo, dr_grpo, dapo, seq_mean_token_sum, seq_mean_token_sum_norm, token_sum };
/// KL estimators of log(pi / pi_ref) per token (Schulman's k1, k2, k3; verl's abs).
enum class kl_estimator { k1, k2, k3, abs };
/// TRL importance_sampling_level: per-token ratio, or GSPO's exp(mean_t(logp - old_logp)).
enum class ratio_level { token, sequence };
/// The per-token policy term (docs/rl.md has each formula and its source).
enum class policy_loss_mode {
  clip,      // PPO/GRPO clipped surrogate (+ delta, dual clip)             TRL, verl "vanilla"
  cispo,     // -sg(clip(rho)) A logp                      MiniMax-M1 (arXiv 2506.13585)
  sapo,      // -(4/tau) sigmoid(tau (rho - 1)) A          SAPO (arXiv 2511.20347)
  gpg,       // -A logp                                    GPG (arXiv 2504.02546)
  clip_cov,  // clipped surrogate, random high-covariance tokens detached   Cui et al. 2505.22617
  kl_cov,    // -A rho + coef |log rho| on the top-covariance tokens        Cui et al. 2505.22617
  geo_mean,  // -A_s exp(mean_t clipped log rho) per sequence              GMPO (arXiv 2507.20673)
  vespo,     // -sg(phi(w_s)) A logp, phi a gamma weight of the sequence ratio   TRL vespo
};
/// How the entropy bonus is aggregated: TRL always takes the token mean over the tokens it acts
/// on; verl aggregates it like the loss (agg_loss with loss_agg_mode).
enum class entropy_aggregation { token_mean, loss_type };

/// Aggregations by TRL's names ("grpo", "bnpo", "dr_grpo", "dapo") and verl's loss_agg_mode
/// names ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm",
/// "token-sum").
/// TRL's cispo, sapo and luspo are loss modes as well as aggregations: trl_options() maps them.
inline loss_type loss_type_from_name(std::string_view name) {
  if (name == "grpo" || name == "seq-mean-token-mean") return loss_type::grpo;
  if (name == "bnpo") return loss_type::bnpo;
  if (name == "dr_grpo") return loss_type::dr_grpo;
  if (name == "dapo" || name == "token-mean") return loss_type::dapo;
  if (name == "seq-mean-token-sum") return loss_type::seq_mean_token_sum;
  if (name == "seq-mean-token-sum-norm") return loss_type::seq_mean_token_sum_norm;
  if (name == "token-sum") return loss_type::token_sum;
  detail::fail("xplor::rl::loss_type_from_name", "unknown loss type '", name, "'");
}

/// Defaults are TRL GRPOConfig's (loss_type dapo, epsilon 0.2, beta 0, use_bias_correction_kl,
/// entropy as a token mean).
struct loss_options {
  policy_loss_mode mode = policy_loss_mode::clip;
  loss_type type = loss_type::dapo;
  /// The policy term's own aggregation when it differs from `type` (verl 0.9's SAPO always uses
  /// seq-mean-token-mean for it while KL and entropy follow loss_agg_mode). geo_mean always
  /// averages its per-sequence terms over the S sequences.
  std::optional<loss_type> policy_type = {};
  float epsilon = 0.2f;                    // lower clip: ratio >= 1 - epsilon, in (0, 1]
  std::optional<float> epsilon_high = {};  // upper clip 1 + epsilon_high; = epsilon unless set (DAPO: 0.28)
  std::optional<float> delta = {};         // cap on the unclipped ratio (two-sided GRPO), > 1 + epsilon
  std::optional<float> dual_clip = {};     // verl clip_ratio_c (> 1): for A < 0, l = min(l, -c A)
  ratio_level importance_sampling_level = ratio_level::token;
  /// GSPO's gradient: false (TRL) differentiates the sequence ratio through its mean log-ratio;
  /// true (verl) uses the token form sg[s] pi_t / sg[pi_t], so token t's term moves logp_t only.
  bool sequence_ratio_token_gradient = false;
  std::optional<float> log_ratio_clamp = {};         // verl: logp - old clamped to [-c, c] (c = 20)
  std::optional<float> sequence_log_ratio_max = {};  // verl GSPO: the log sequence ratio <= 10
  float beta = 0.0f;                                 // KL coefficient; 0 needs no reference log-probs
  kl_estimator kl = kl_estimator::k3;                // TRL and verl low_var_kl
  bool kl_bias_correction = true;    // TRL use_bias_correction_kl: the KL term times the ratio
  bool kl_clamp = false;             // verl low_var_kl: ref - logp in [-20, 20], the estimate in [-10, 10]
  bool kl_straight_through = false;  // verl "k3+": the estimator's value with k2's gradient
  float entropy_coef = 0.0f;         // loss -= entropy_coef * aggregated entropy
  entropy_aggregation entropy_agg = entropy_aggregation::token_mean;
  float sapo_tau_pos = 1.0f, sapo_tau_neg = 1.05f;  // SAPO temperatures for A > 0 and A <= 0
  float clip_cov_ratio = 2e-4f, clip_cov_lb = 1.0f, clip_cov_ub = 5.0f;
  std::uint64_t clip_cov_seed = 0;  // which candidates Clip-Cov detaches when there are more than it needs
  float kl_cov_ratio = 2e-4f, kl_cov_coef = 1.0f;  // verl kl_cov_ratio, ppo_kl_coef
  /// VESPO's gamma weight phi(w) = exp(lambda + k log w - lambda w) for A >= 0 and A < 0 (TRL's defaults)
  float vespo_k_pos = 2.0f, vespo_lambda_pos = 3.0f, vespo_k_neg = 3.0f, vespo_lambda_neg = 2.0f;
  /// TRL top_entropy_quantile: the policy term only on tokens whose entropy is at least the
  /// (1 - q) quantile of the active tokens' entropies (1: every token).
  float top_entropy_quantile = 1.0f;
  /// TRL off_policy_mask_threshold (DeepSeek-V3.2's off-policy sequence masking): a sequence with
  /// A < 0 whose mean log(pi_sampling / pi) exceeds it leaves the policy term.
  std::optional<float> off_policy_mask_threshold = {};
  std::int64_t max_completion_length = 0;   // dr_grpo's constant
  bool mask_truncated_completions = false;  // DAPO: truncated completions leave the loss
  bool exclude_empty_sequences = false;     // verl: fully masked sequences leave the seq-mean denominators
  std::optional<double> num_items_in_batch = {};      // dapo: global active tokens / processes
  std::optional<double> num_sequences_in_batch = {};  // seq-mean modes: global sequences / processes
  std::optional<double> loss_scale_factor = {};       // seq_mean_token_sum_norm (padded batches: L)
  /// verl dp_size: without num_items_in_batch / num_sequences_in_batch, the token-mean and
  /// seq-mean normalisers are the local counts divided by it (verl's agg_loss times dp_size).
  double dp_size = 1.0;
};

/// One batch of sampled completions, flattened token-major: sequence s owns tokens
/// [sequence_offsets[s], sequence_offsets[s+1]). Token arrays live in the backend's memory;
/// offsets and truncated flags are host memory.
/// `Space` says where the token arrays live: policy_batch (host_memory) for xplor::cpu,
/// device_policy_batch (device_memory, device_span) for xplor::device.
template <class Space>
struct basic_policy_batch {
  span_in<Space, const float> logp = {};        // [T] log pi_theta(token)
  span_in<Space, const float> old_logp = {};    // [T] log pi_old; empty: on-policy (ratio 1, gradient flows)
  span_in<Space, const float> ref_logp = {};    // [T] log pi_ref; needed when beta != 0
  span_in<Space, const float> advantages = {};  // [T] per token (broadcast_to_tokens for per-sequence values)
  span_in<Space, const float> mask =
      {};  // [T] completion mask in [0, 1] (fractions weight a token); empty: all 1
  span_in<Space, const float> entropies = {};  // [T] entropy per position; needed when entropy_coef != 0
  std::span<const std::int64_t> sequence_offsets = {};  // [S + 1], host
  std::span<const std::uint8_t> truncated = {};         // [S] host; empty: none truncated
  /// [T] importance weights multiplying the policy term (rollout correction: TRL's vLLM
  /// importance_sampling_ratio, verl's rollout_is_weights); empty: 1
  span_in<Space, const float> is_weights = {};
  /// [T] log pi of the sampler, for the off-policy mask (TRL sampling_per_token_logps); empty: old_logp
  span_in<Space, const float> sampling_logp = {};
};
using policy_batch = basic_policy_batch<host_memory>;
using device_policy_batch = basic_policy_batch<device_memory>;

/// The loss and its statistics. Means are over the active tokens (sum of the mask weights).
struct loss_result {
  double loss = 0.0;          // the aggregated objective (policy + beta KL - entropy_coef H)
  double policy_loss = 0.0;   // its policy part (verl pg_loss)
  double kl = 0.0;            // mean KL term over active tokens (TRL "kl", bias-corrected when on)
  double kl_loss = 0.0;       // the KL term aggregated as in the loss (verl actor/kl_loss)
  double entropy = 0.0;       // mean entropy over active tokens (TRL "entropy")
  double entropy_loss = 0.0;  // the entropy aggregated as in the loss (verl actor/entropy)
  /// TRL clip_ratio/low_mean and high_mean: A < 0 and ratio < 1 - epsilon; A > 0 and ratio >
  /// 1 + epsilon_high (with a sequence-level ratio, the fraction of sequences).
  double clip_low_fraction = 0.0;
  double clip_high_fraction = 0.0;
  double pg_clipfrac = 0.0;        // verl actor/pg_clipfrac (the mode's own clipping test)
  double pg_clipfrac_lower = 0.0;  // verl actor/pg_clipfrac_lower (dual clip active; GMPO A < 0)
  double ppo_kl = 0.0;             // verl actor/ppo_kl: mean of old_logp - logp (kl_cov: |logp - old_logp|)
  double mean_ratio = 0.0;
  double active_tokens = 0.0;
};

}  // namespace xplor::rl
