// The per-token terms of every policy loss mode, KL estimator and aggregation of
// rl/loss_options.hpp as XPLOR_HD kernels (one sequence per call), for policy_loss's general
// path; the common TRL settings also have a vectorised path in loss.hpp that gives the same
// numbers. Each formula follows the peer's code named in docs/rl.md; the gradient is the one
// PyTorch's autograd computes for it (clamps pass gradient inside their closed bounds, a
// stop-gradient passes none).
#pragma once

#include <cmath>
#include <cstdint>

#include "xplor/core/config.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/random.hpp"
#include "xplor/core/select.hpp"
#include "xplor/rl/loss_options.hpp"

namespace xplor::rl::kernels {

/// Per-sequence sums of the general pass (the statistics of loss_result, before their means).
struct term_sums {
  double loss = 0, policy = 0, kl = 0, kl_term = 0, entropy = 0, entropy_term = 0, clip_low = 0,
         clip_high = 0, pg_clipfrac = 0, pg_clipfrac_lower = 0, ppo_kl = 0, ratio = 0, active = 0;
};
struct add_term_sums {
  XPLOR_HD term_sums operator()(const term_sums& a, const term_sums& b) const {
    return {a.loss + b.loss,
            a.policy + b.policy,
            a.kl + b.kl,
            a.kl_term + b.kl_term,
            a.entropy + b.entropy,
            a.entropy_term + b.entropy_term,
            a.clip_low + b.clip_low,
            a.clip_high + b.clip_high,
            a.pg_clipfrac + b.pg_clipfrac,
            a.pg_clipfrac_lower + b.pg_clipfrac_lower,
            a.ppo_kl + b.ppo_kl,
            a.ratio + b.ratio,
            a.active + b.active};
  }
};
struct read_term_sums {
  const term_sums* sums;
  XPLOR_HD term_sums operator()(std::int64_t s) const { return sums[s]; }
};

/// The batch-wide constants of an aggregation: how a sequence with `active` mask weight turns a
/// token's m * l into its share of the loss.
struct aggregate_weight {
  loss_type type;
  bool verl_denominators;  // exclude_empty_sequences: seq-mean over non-empty sequences, active + 1e-8
  double sequences;        // S, the non-empty sequences, or num_sequences_in_batch
  double tokens;           // bnpo / dapo normaliser
  double fixed;            // dr_grpo's S * max_completion_length, seq_mean_token_sum_norm's factor
  double dp;               // token_sum's factor (verl dp_size)
  XPLOR_HD double weight(double active) const {
    switch (type) {
      case loss_type::grpo:
        if (verl_denominators) return active > 0.0 ? 1.0 / ((active + 1e-8) * sequences) : 0.0;
        return 1.0 / ((active > 1.0 ? active : 1.0) * sequences);
      case loss_type::seq_mean_token_sum:
        return 1.0 / sequences;
      case loss_type::bnpo:
      case loss_type::dapo:
        return 1.0 / tokens;
      case loss_type::dr_grpo:
        return 1.0 / fixed;
      case loss_type::seq_mean_token_sum_norm:
        return 1.0 / (sequences * fixed);
      case loss_type::token_sum:
        return dp;
    }
    return 0.0;
  }
};

/// Token flags decided over the whole batch before the loss pass.
inline constexpr std::uint8_t flag_entropy = 1;  // in TRL's top-entropy set (or no quantile asked)
inline constexpr std::uint8_t flag_cov = 2;      // chosen by Clip-Cov (detached) or KL-Cov (penalised)

/// loss_options resolved to plain values for device code (no std::optional in kernels).
struct term_options {
  policy_loss_mode mode;
  bool sequence_ratio, sequence_ratio_token_gradient;
  float lo_eps, hi_eps;          // epsilon, epsilon_high (GMPO clamps the log-ratio with them)
  float cap, dual;               // delta and dual clip (3.4e38: off)
  float log_ratio_clamp;         // 0: off
  float sequence_log_ratio_max;  // 3.4e38: off
  float beta;
  kl_estimator kl;
  bool kl_bias_correction, kl_clamp, kl_straight_through;
  float entropy_coef;
  bool entropy_token_mean;
  float sapo_tau_pos, sapo_tau_neg, kl_cov_coef;
  float vespo_k_pos, vespo_lambda_pos, vespo_k_neg, vespo_lambda_neg;
  bool off_policy_mask;
  float off_policy_threshold;
};
inline term_options resolve_terms(const loss_options& o) {
  term_options t{};
  t.mode = o.mode;
  t.sequence_ratio = o.importance_sampling_level == ratio_level::sequence;
  t.sequence_ratio_token_gradient = o.sequence_ratio_token_gradient;
  t.lo_eps = o.epsilon;
  t.hi_eps = o.epsilon_high.value_or(o.epsilon);
  t.cap = o.mode == policy_loss_mode::clip && o.delta ? *o.delta : 3.4e38f;
  t.dual = o.mode == policy_loss_mode::clip && o.dual_clip ? *o.dual_clip : 3.4e38f;
  t.log_ratio_clamp = o.log_ratio_clamp.value_or(0.0f);
  t.sequence_log_ratio_max = o.sequence_log_ratio_max.value_or(3.4e38f);
  t.beta = o.beta;
  t.kl = o.kl;
  t.kl_bias_correction = o.kl_bias_correction;
  t.kl_clamp = o.kl_clamp;
  t.kl_straight_through = o.kl_straight_through;
  t.entropy_coef = o.entropy_coef;
  t.entropy_token_mean = o.entropy_agg == entropy_aggregation::token_mean;
  t.sapo_tau_pos = o.sapo_tau_pos;
  t.sapo_tau_neg = o.sapo_tau_neg;
  t.kl_cov_coef = o.kl_cov_coef;
  t.vespo_k_pos = o.vespo_k_pos;
  t.vespo_lambda_pos = o.vespo_lambda_pos;
  t.vespo_k_neg = o.vespo_k_neg;
  t.vespo_lambda_neg = o.vespo_lambda_neg;
  t.off_policy_mask = o.off_policy_mask_threshold.has_value();
  t.off_policy_threshold = o.off_policy_mask_threshold.value_or(0.0f);
  return t;
}

/// One sequence of the general path: its statistics into out[s], d loss / d logp (and
/// d loss / d entropy, the per-token loss) for its tokens.
struct general_sequence_loss {
  const float* logp;
  const float* old_logp;  // may be null: on-policy
  const float* ref_logp;  // null unless beta != 0
  const float* adv;
  const float* mask;          // may be null
  const float* entropies;     // may be null
  const float* is_weights;    // may be null
  const float* sampling;      // null unless the off-policy mask is on
  const std::uint8_t* flags;  // may be null (every flag set but flag_cov)
  const std::int64_t* offsets;
  const std::uint8_t* truncated;  // may be null
  float* dlogp;
  float* dentropy;    // may be null
  float* token_loss;  // may be null
  term_sums* out;     // [S]
  term_options o;
  aggregate_weight policy_agg, kl_agg;
  double entropy_tokens;  // token-mean entropy: max(1, sum of the mask over the entropy set)
  double num_sequences;   // geo_mean's mean over S
  float lo, hi;           // 1 - epsilon, 1 + epsilon_high

  XPLOR_HD static float clampf(float x, float a, float b) { return x < a ? a : (x > b ? b : x); }
  XPLOR_HD static float signf(float x) { return x > 0.0f ? 1.0f : (x < 0.0f ? -1.0f : 0.0f); }

  /// The KL term of one token and its derivative in logp (before any bias correction).
  XPLOR_HD void kl_term(float lp, float ref, float& kl, float& dkl) const {
    const float y = ref - lp;  // log(pi_ref / pi)
    switch (o.kl) {
      case kl_estimator::k1:
        kl = -y;
        dkl = 1.0f;
        break;
      case kl_estimator::k2:
        kl = 0.5f * y * y;
        dkl = -y;
        break;
      case kl_estimator::abs:
        kl = y < 0.0f ? -y : y;
        dkl = -signf(y);
        break;
      case kl_estimator::k3: {
        const bool live = !o.kl_clamp || (y >= -20.0f && y <= 20.0f);
        const float yc = o.kl_clamp ? clampf(y, -20.0f, 20.0f) : y;
        const float e = exp_fast(yc);
        kl = e - yc - 1.0f;
        dkl = live ? 1.0f - e : 0.0f;
        if (o.kl_clamp && (kl < -10.0f || kl > 10.0f)) {
          kl = clampf(kl, -10.0f, 10.0f);
          dkl = 0.0f;
        }
        break;
      }
    }
    if (o.kl_straight_through) dkl = -y;  // k2's gradient: d/dlogp of (logp - ref)^2 / 2
  }

  XPLOR_HD void operator()(std::int64_t s) const {
    const std::int64_t b = offsets[s], e = offsets[s + 1];
    const float keep = truncated != nullptr && truncated[s] ? 0.0f : 1.0f;
    const float* old = old_logp != nullptr ? old_logp : logp;
    auto m_at = [&](std::int64_t t) { return keep * (mask != nullptr ? mask[t] : 1.0f); };
    auto flag = [&](std::int64_t t, std::uint8_t f) {
      return flags != nullptr ? (flags[t] & f) != 0 : f == flag_entropy;
    };
    const bool geo = o.mode == policy_loss_mode::geo_mean;

    // Pass 1: the sequence's sums (active weight, mean log-ratio, off-policy KL, GMPO's means).
    const bool vespo = o.mode == policy_loss_mode::vespo;
    double active = 0.0, log_ratio = 0.0, off_kl = 0.0, gm_log = 0.0, gm_adv = 0.0, gm_is = 0.0, ve_log = 0.0;
    for (std::int64_t t = b; t < e; ++t) {
      const float m = m_at(t);
      const float x = logp[t] - old[t];
      active += m;
      log_ratio += double(m) * x;
      if (vespo) {
        // TRL get_gamma_weights: sum_t m clamp(x, +-20), plus the log importance weights of every
        // position (unmasked, as TRL sums them), clamped to [log 1e-8, 20].
        ve_log += double(m) * clampf(x, -20.0f, 20.0f);
        if (is_weights != nullptr) {
          const double lw = std::log(double(is_weights[t]));
          ve_log += lw < -18.420680743952367 ? -18.420680743952367 : (lw > 20.0 ? 20.0 : lw);
        }
      }
      if (sampling != nullptr) off_kl += double(m) * (sampling[t] - logp[t]);
      if (geo) {
        const float sg = signf(adv[t]);
        const float xc = clampf(x, -o.lo_eps, o.hi_eps);
        const float a = sg * x, c = sg * xc;
        gm_log += double(m) * (sg * (a < c ? a : c));
        gm_adv += double(m) * adv[t];
        if (is_weights != nullptr) gm_is += double(m) * std::log(double(is_weights[t]) + 1e-10);
      }
    }
    const double denom = active > 1.0 ? active : 1.0;
    // GSPO's sequence ratio (TRL and verl both divide by max(1, active)).
    const bool seq = o.sequence_ratio;
    float seq_log = static_cast<float>(log_ratio / denom);
    bool seq_live = true;
    if (seq_log > o.sequence_log_ratio_max) {
      seq_log = o.sequence_log_ratio_max;
      seq_live = false;
    }
    const float seq_rho = exp_fast(seq_log);
    const bool low_off_kl = !o.off_policy_mask || off_kl / denom <= o.off_policy_threshold;
    const double w_pol = policy_agg.weight(active), w_kl = kl_agg.weight(active);
    const double w_ent = o.entropy_token_mean ? 1.0 / entropy_tokens : w_kl;
    const float dual = o.dual, cap = o.cap;
    // GMPO: one term per sequence, -A_s exp(mean clipped log-ratio) (times the geometric mean of
    // the importance weights), averaged over the S sequences.
    const double gm_n = active + 1e-8;
    const double gm_rho = geo ? double(exp_fast(static_cast<float>(gm_log / gm_n))) : 0.0;
    const double gm_a = gm_adv / gm_n;
    const double gm_w = is_weights != nullptr ? std::exp(gm_is / gm_n) : 1.0;

    // VESPO: log w of the sequence, clamped to [log 1e-8, 20]; phi(w) (detached) for A >= 0 and A < 0.
    const double ve_w_log =
        ve_log < -18.420680743952367 ? -18.420680743952367 : (ve_log > 20.0 ? 20.0 : ve_log);
    auto gamma_weight = [&](double k, double lambda) {
      if (lambda < 1e-4) lambda = 1e-4;
      const double phi = std::exp(lambda + k * ve_w_log - lambda * std::exp(ve_w_log));
      return phi <= 1.7976931348623157e308 ? phi : 0.0;  // TRL: nan_to_num(nan, posinf, neginf -> 0)
    };
    const double phi_pos = vespo ? gamma_weight(o.vespo_k_pos, o.vespo_lambda_pos) : 0.0;
    const double phi_neg = vespo ? gamma_weight(o.vespo_k_neg, o.vespo_lambda_neg) : 0.0;

    term_sums r;
    r.active = active;
    double d_seq = 0.0;  // d loss / d rho_seq, for the gradient through the mean log-ratio
    for (std::int64_t t = b; t < e; ++t) {
      const float m = m_at(t), a = adv[t], lp = logp[t];
      const float x = logp[t] - old[t];
      const float bound = o.log_ratio_clamp;
      const bool x_live = bound <= 0.0f || (x >= -bound && x <= bound);
      const float xc = bound > 0.0f ? clampf(x, -bound, bound) : x;
      float rho, drho;  // the ratio and its derivative in logp_t through this token alone
      if (seq) {
        rho = seq_rho;
        drho = o.sequence_ratio_token_gradient && seq_live ? seq_rho : 0.0f;
      } else {
        rho = exp_fast(xc);
        drho = x_live ? rho : 0.0f;
      }
      // The policy term l, its derivative through rho and its direct derivative in logp.
      float l = 0.0f, dl_drho = 0.0f, dl_direct = 0.0f, clipfrac = 0.0f, clipfrac_lower = 0.0f;
      switch (o.mode) {
        case policy_loss_mode::clip:
        case policy_loss_mode::clip_cov: {
          const float capped = rho > cap ? cap : rho;
          const float clipped = clampf(rho, lo, hi);
          const float u = capped * a, c = clipped * a;
          const bool take_u = u <= c;
          l = take_u ? -u : -c;
          bool live = take_u ? capped == rho : clipped == rho;
          clipfrac = -a * clipped > -a * rho ? 1.0f : 0.0f;
          if (a < 0.0f && -dual * a < l) {
            l = -dual * a;
            live = false;
            clipfrac_lower = 1.0f;
          }
          if (o.mode == policy_loss_mode::clip_cov) {
            clipfrac = flag(t, flag_cov) ? 1.0f : 0.0f;
            if (flag(t, flag_cov)) {
              l = 0.0f;
              live = false;
            }
          }
          dl_drho = live ? -a : 0.0f;
          break;
        }
        case policy_loss_mode::cispo: {
          const float w = clampf(rho, lo, hi);
          l = -w * a * lp;
          dl_direct = -w * a;
          clipfrac = w != rho ? 1.0f : 0.0f;
          break;
        }
        case policy_loss_mode::sapo: {
          const float tau = a > 0.0f ? o.sapo_tau_pos : o.sapo_tau_neg;
          const float g = 1.0f / (1.0f + exp_fast(-tau * (rho - 1.0f)));
          l = -g * (4.0f / tau) * a;
          dl_drho = -4.0f * g * (1.0f - g) * a;
          break;
        }
        case policy_loss_mode::gpg:
          l = -lp * a;
          dl_direct = -a;
          break;
        case policy_loss_mode::kl_cov:
          l = -a * rho;
          dl_drho = -a;
          if (flag(t, flag_cov)) {
            l += o.kl_cov_coef * (x < 0.0f ? -x : x);
            dl_direct = o.kl_cov_coef * signf(x);
          }
          break;
        case policy_loss_mode::vespo: {
          const double phi = a >= 0.0f ? phi_pos : phi_neg;
          l = static_cast<float>(-phi * a * lp);
          dl_direct = static_cast<float>(-phi * a);
          break;
        }
        case policy_loss_mode::geo_mean: {
          const float sg = signf(a);
          const float xg = clampf(x, -o.lo_eps, o.hi_eps);
          clipfrac = xg != x && a > 0.0f ? 1.0f : 0.0f;
          clipfrac_lower = xg != x && a < 0.0f ? 1.0f : 0.0f;
          // d/dx of sg * min(sg x, sg clamp(x)): 1 unless the clamped value is the strict minimum.
          const float dxm = sg != 0.0f && sg * x <= sg * xg ? 1.0f : 0.0f;
          dl_direct = static_cast<float>(-gm_a * gm_w * gm_rho * double(m) * dxm / gm_n / num_sequences);
          break;
        }
      }
      // Multipliers of the policy term: importance weight, TRL's entropy and off-policy masks.
      float f = is_weights != nullptr && !geo && !vespo ? is_weights[t] : 1.0f;
      if (!flag(t, flag_entropy)) f = 0.0f;
      if (!low_off_kl && a < 0.0f) f = 0.0f;
      const float l_pol = f * l;
      const float wp = static_cast<float>(w_pol) * m;
      float g = geo ? dl_direct : wp * f * (dl_direct + dl_drho * drho);
      if (seq && !o.sequence_ratio_token_gradient) d_seq += double(wp) * f * dl_drho;

      float kl_v = 0.0f;
      if (ref_logp != nullptr) {
        float kl = 0.0f, dkl = 0.0f;  // set by kl_term; initialised for -Wmaybe-uninitialized
        kl_term(lp, ref_logp[t], kl, dkl);
        const float wk = static_cast<float>(w_kl) * m * o.beta;
        if (o.kl_bias_correction) {
          // TRL: the KL estimate times the importance ratio; the ratio's gradient flows too.
          kl_v = kl * rho;
          g += wk * (dkl * rho + kl * drho);
          if (seq && !o.sequence_ratio_token_gradient) d_seq += double(wk) * kl;
        } else {
          kl_v = kl;
          g += wk * dkl;
        }
        r.kl += double(m) * kl_v;
        r.kl_term += w_kl * double(m) * kl_v;
      }
      const float h = entropies != nullptr ? entropies[t] : 0.0f;
      const float em = flag(t, flag_entropy) ? m : 0.0f;
      if (entropies != nullptr) {
        r.entropy += double(m) * h;
        r.entropy_term += w_ent * double(em) * h;
      }
      if (dentropy != nullptr) dentropy[t] = static_cast<float>(-double(o.entropy_coef) * w_ent * em);
      if (!geo) r.policy += double(wp) * l_pol;
      r.loss += (geo ? 0.0 : double(wp) * l_pol) + w_kl * double(m) * o.beta * kl_v -
                double(o.entropy_coef) * w_ent * double(em) * h;
      if (token_loss != nullptr) token_loss[t] = (geo ? 0.0f : l_pol) + o.beta * kl_v;
      dlogp[t] = g;
      if (seq) {
        if (t == b) {  // TRL counts a sequence-level ratio's clipping once per sequence
          r.clip_low = a < 0.0f && rho < lo ? 1.0 : 0.0;
          r.clip_high = a > 0.0f && rho > hi ? 1.0 : 0.0;
        }
      } else {
        r.clip_low += a < 0.0f && rho < lo ? double(m) : 0.0;
        r.clip_high += a > 0.0f && rho > hi ? double(m) : 0.0;
      }
      r.pg_clipfrac += double(m) * clipfrac;
      r.pg_clipfrac_lower += double(m) * clipfrac_lower;
      r.ppo_kl += o.mode == policy_loss_mode::kl_cov ? double(m) * (x < 0.0f ? -x : x) : -double(m) * xc;
      r.ratio += double(m) * rho;
    }
    if (geo) {
      const double l_s = -gm_a * gm_rho * gm_w / num_sequences;
      r.policy = l_s;
      r.loss += l_s;
    }
    if (seq && !o.sequence_ratio_token_gradient && seq_live && active > 0.0) {
      // rho_seq = exp(sum_t m_t (logp_t - old_t) / max(1, active)): d rho / d logp_t = rho m_t / max(1,
      // active)
      const double gs = d_seq * seq_rho / denom;
      for (std::int64_t t = b; t < e; ++t) dlogp[t] += static_cast<float>(gs * m_at(t));
    }
    out[s] = r;
  }
};

/// m_eff[t] = mask[t] (1 when absent), 0 for the tokens of a truncated completion that leaves the loss.
struct effective_mask {
  const float* mask;  // may be null
  const std::int64_t* offsets;
  const std::uint8_t* truncated;  // may be null
  float* out;
  XPLOR_HD void operator()(std::int64_t s) const {
    const float keep = truncated != nullptr && truncated[s] ? 0.0f : 1.0f;
    for (std::int64_t t = offsets[s]; t < offsets[s + 1]; ++t)
      out[t] = keep * (mask != nullptr ? mask[t] : 1.0f);
  }
};
/// Per sequence: its active weight, and 1 when it has any (verl's non-empty sequences).
struct active_pair {
  double active = 0.0, nonempty = 0.0;
};
struct add_active_pair {
  XPLOR_HD active_pair operator()(const active_pair& a, const active_pair& b) const {
    return {a.active + b.active, a.nonempty + b.nonempty};
  }
};
struct sequence_active {
  const float* m;
  const std::int64_t* offsets;
  XPLOR_HD active_pair operator()(std::int64_t s) const {
    double a = 0.0;
    bool any = false;
    for (std::int64_t t = offsets[s]; t < offsets[s + 1]; ++t) {
      a += m[t];
      any = any || m[t] > 0.0f;
    }
    return {a, any ? 1.0 : 0.0};
  }
};

/// Masked sums for the covariance selections: sum m A, sum m logp, sum m (Clip-Cov, weighted by
/// the mask) or the same over the tokens with m > 0 counted once (KL-Cov).
struct cov_moments {
  double adv = 0.0, logp = 0.0, weight = 0.0;
};
struct add_cov_moments {
  XPLOR_HD cov_moments operator()(const cov_moments& a, const cov_moments& b) const {
    return {a.adv + b.adv, a.logp + b.logp, a.weight + b.weight};
  }
};
struct token_cov_moments {
  const float* m;
  const float* adv;
  const float* logp;
  bool weighted;
  XPLOR_HD cov_moments operator()(std::int64_t t) const {
    const double w = weighted ? double(m[t]) : (m[t] > 0.0f ? 1.0 : 0.0);
    return {w * adv[t], w * logp[t], w};
  }
};
/// cov_t = (A_t - mean A) (logp_t - mean logp) for the tokens a covariance method may choose,
/// and their selection keys: KL-Cov takes the largest covariances; Clip-Cov's candidates
/// (lb < cov < ub, not clipped by the surrogate itself) are drawn at random (a hash of seed and
/// index ranks them).
struct cov_key {
  const float* m;
  const float* adv;
  const float* logp;
  const float* old;
  double mean_adv, mean_logp;
  bool clip_cov;
  float lo, hi, lb, ub;
  std::uint64_t seed;
  XPLOR_HD bool candidate(std::int64_t t, double& cov) const {
    if (!(m[t] > 0.0f)) return false;
    cov = (double(adv[t]) - mean_adv) * (double(logp[t]) - mean_logp);
    if (!clip_cov) return true;
    const float a = adv[t], rho = exp_fast(logp[t] - old[t]);
    const float clipped = rho < lo ? lo : (rho > hi ? hi : rho);
    const bool clipped_by_origin = -a * clipped > -a * rho;
    return !clipped_by_origin && cov > double(lb) && cov < double(ub);
  }
  XPLOR_HD std::uint64_t operator()(std::int64_t t) const {
    double cov = 0.0;
    if (!candidate(t, cov)) return 0;
    if (!clip_cov) return xplor::detail::rank_key(static_cast<float>(cov), t);
    // Philox of (seed, token) ranks the candidates: a uniform random subset, the same on every backend.
    const std::uint32_t h =
        xplor::philox4x32_10({static_cast<std::uint32_t>(t), static_cast<std::uint32_t>(t >> 32), 0u, 0u},
                             {static_cast<std::uint32_t>(seed), static_cast<std::uint32_t>(seed >> 32)})[0];
    return (std::uint64_t(1) << 63) | (std::uint64_t(h >> 1) << 32) |
           (0xFFFFFFFFu - static_cast<std::uint32_t>(t));
  }
};
struct count_nonzero_keys {
  cov_key key;
  XPLOR_HD std::int64_t operator()(std::int64_t t) const { return key(t) != 0 ? 1 : 0; }
};
/// flags[t] |= flag_cov for the chosen tokens (key >= the k-th largest key; all candidates when
/// threshold is 1).
struct mark_cov {
  cov_key key;
  std::uint64_t threshold;
  std::uint8_t* flags;
  XPLOR_HD void operator()(std::int64_t t) const {
    const std::uint64_t k = key(t);
    if (k != 0 && k >= threshold) flags[t] |= flag_cov;
  }
};
/// TRL's top-entropy set: active tokens (m != 0) whose entropy is >= the threshold.
struct entropy_key {
  const float* m;
  const float* h;
  XPLOR_HD std::uint64_t operator()(std::int64_t t) const {
    return m[t] != 0.0f ? xplor::detail::rank_key(h[t], t) : 0;
  }
};
struct mark_entropy {
  const float* m;
  const float* h;
  double threshold;
  std::uint8_t* flags;
  XPLOR_HD void operator()(std::int64_t t) const {
    flags[t] = (m[t] != 0.0f && double(h[t]) >= threshold) ? flag_entropy : std::uint8_t{0};
  }
};
struct fill_flags {
  std::uint8_t* flags;
  std::uint8_t value;
  XPLOR_HD void operator()(std::int64_t t) const { flags[t] = value; }
};
struct entropy_set_weight {
  const float* m;
  const std::uint8_t* flags;
  XPLOR_HD double operator()(std::int64_t t) const {
    return (flags[t] & flag_entropy) != 0 ? double(m[t]) : 0.0;
  }
};

}  // namespace xplor::rl::kernels
