// Policy-gradient losses for LLM RL on either backend: every loss mode, KL estimator and
// aggregation of TRL 1.16 and verl 0.9 (rl/loss_options.hpp lists them; rl/presets.hpp maps the
// trainers' own option names). TRL's default clipped surrogate runs in a vectorised kernel here;
// everything else in the general per-sequence kernel of rl/loss_terms.hpp, with the token
// selections (top-entropy, Clip-Cov, KL-Cov) decided first. Formulas and sources: docs/rl.md.
//
// The loss never sees a model: it takes per-token log-probabilities, advantages and masks, and
// returns the scalar loss and d loss / d logp for every token, which a trainer feeds to its
// autodiff (transformer::backward(dlogp) for xplor's reference model) or turns into a gradient on
// the logits with logits_gradient().
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>
#include <type_traits>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/groups.hpp"
#include "xplor/core/numerics.hpp"
#include "xplor/core/select.hpp"
#include "xplor/core/view.hpp"
#include "xplor/rl/loss_options.hpp"
#include "xplor/rl/loss_terms.hpp"

namespace xplor::rl {

namespace kernels {

struct loss_sums {
  double loss = 0, policy = 0, kl = 0, entropy = 0, clip_low = 0, clip_high = 0, ratio = 0, active = 0;
  double nonfinite = 0;  // sequences with a NaN or infinite input (the loss pass checks them)
  double kl_term = 0, entropy_term = 0, log_ratio = 0;  // weighted KL and entropy, sum of m (logp - old)
  double clipped_tokens = 0;                            // verl pg_clipfrac's count (token-level clip tests)
};
struct add_loss_sums {
  XPLOR_HD loss_sums operator()(const loss_sums& a, const loss_sums& b) const {
    return {a.loss + b.loss,
            a.policy + b.policy,
            a.kl + b.kl,
            a.entropy + b.entropy,
            a.clip_low + b.clip_low,
            a.clip_high + b.clip_high,
            a.ratio + b.ratio,
            a.active + b.active,
            a.nonfinite + b.nonfinite,
            a.kl_term + b.kl_term,
            a.entropy_term + b.entropy_term,
            a.log_ratio + b.log_ratio,
            a.clipped_tokens + b.clipped_tokens};
  }
};

/// Index t when mask[t] is outside [0, 1] or NaN, else -1 (reduced with min_valid_code).
struct mask_outside_unit {
  const float* mask;
  XPLOR_HD std::int64_t operator()(std::int64_t t) const {
    const float w = mask[t];
    return (w >= 0.0f && w <= 1.0f) ? -1 : t;
  }
};

/// Per sequence: the active-token count (mask, minus truncated completions).
struct active_count {
  const float* mask;  // may be null (all 1)
  const std::int64_t* offsets;
  const std::uint8_t* truncated;  // may be null
  XPLOR_HD double operator()(std::int64_t s) const {
    if (truncated != nullptr && truncated[s]) return 0.0;
    const std::int64_t b = offsets[s], e = offsets[s + 1];
    if (mask == nullptr) return double(e - b);
    // Four running sums (independent chains), then pairwise; exact for 0/1 masks.
    double c[4] = {};
    std::int64_t t = b;
    for (; t + 4 <= e; t += 4)
      for (int j = 0; j < 4; ++j) c[j] += mask[t + j];
    double r = (c[0] + c[1]) + (c[2] + c[3]);
    for (; t < e; ++t) r += mask[t];
    return r;
  }
};
struct plus_double {
  XPLOR_HD double operator()(double a, double b) const { return a + b; }
};

/// The loss of one sequence and d(loss)/d(logp) of its tokens, with the aggregation folded into
/// per-token weights: weight_t = mask_t * (per-sequence factor or a global normaliser).
struct sequence_loss {
  const float* logp;
  const float* old_logp;  // may be null
  const float* ref_logp;  // may be null
  const float* adv;
  const float* mask;       // may be null
  const float* entropies;  // may be null
  const std::int64_t* offsets;
  const std::uint8_t* truncated;  // may be null
  float* dlogp;
  float* dentropy;  // may be null
  loss_sums* out;   // [S]
  loss_type type;
  double global_norm;  // bnpo / dapo / dr_grpo / seq_mean_token_sum normaliser
  double num_sequences;
  float lo, hi;
  float delta;  // <= 0: off
  bool sequence_ratio;
  float beta;
  kl_estimator kl;
  float entropy_coef;

  // Every sum over a sequence's tokens has one order on every backend: the tokens of the full
  // groups of 8 from the sequence's start go to lane (t - b) % 8, the lanes are added as
  // ((0 + 1) + (2 + 3)) + ((4 + 5) + (6 + 7)), then the remaining tokens one by one. The host
  // SIMD loops (4 or 8 lanes) keep exactly this order, so the sums equal the device's.
  static constexpr int kLanes = 8;
  XPLOR_HD static float lanes_sum(const float* l) {
    return ((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]));
  }

  /// One token's terms: q[0..6] the summands of total, policy, kl, entropy, clip_low, clip_high,
  /// ratio, q[7] that of d_seq_rho; writes dlogp[t] (without the sequence-ratio term).
  XPLOR_HD void token_terms(std::int64_t t, float m, float w, float seq_rho, float dl_cap,
                            const float* old_ptr, float* q, float& probe) const {
    const float a = adv[t];
    probe += a - a;
    const float rho = sequence_ratio ? seq_rho : exp_fast(logp[t] - old_ptr[t]);
    // Clipped surrogate l = -min(u, c), u = min(rho, delta) A, c = clip(rho, lo, hi) A.
    const float capped = rho > dl_cap ? dl_cap : rho;
    const float clipped = rho < lo ? lo : (rho > hi ? hi : rho);
    const float u = capped * a, c = clipped * a;
    const bool take_u = u <= c;
    const float l_clip = take_u ? -u : -c;
    const bool live = take_u ? capped == rho : clipped == rho;
    const float l = l_clip;
    const float dl_drho = live ? -a : 0.0f;
    float kl_t = 0.0f, dkl = 0.0f;
    if (ref_logp != nullptr) {
      const float x = ref_logp[t] - logp[t];  // log(pi_ref / pi)
      probe += ref_logp[t] - ref_logp[t];
      if (kl == kl_estimator::k1) {
        kl_t = -x;
        dkl = 1.0f;
      } else if (kl == kl_estimator::k2) {
        kl_t = 0.5f * x * x;
        dkl = -x;
      } else {
        const float ex = exp_fast(x);
        kl_t = ex - x - 1.0f;
        dkl = 1.0f - ex;
      }
    }
    const float weight = m * w;
    const float h = entropies != nullptr ? entropies[t] : 0.0f;
    probe += h - h;
    q[0] = weight * (l + beta * kl_t - entropy_coef * h);
    q[1] = weight * l;
    q[2] = m * kl_t;
    q[3] = m * h;
    q[4] = a < 0.0f && rho < lo ? m : 0.0f;
    q[5] = a > 0.0f && rho > hi ? m : 0.0f;
    q[6] = m * rho;
    q[7] = weight * dl_drho;
    dlogp[t] = (sequence_ratio ? 0.0f : weight * dl_drho * rho) + weight * beta * dkl;  // drho/dlogp = rho
  }

#if XPLOR_HOST_SIMD
  /// Host: the token loop of operator() over the full groups of 8 tokens, in vectors of 4 or 8
  /// lanes (the per-token formulas of token_terms, the lane sums of the order above, left in
  /// lane[q][0..8)), specialised on what the batch holds. With delta off the cap never binds
  /// (rho <= exp_fast(88.3) < 3.4e38), so that select is skipped: the results are the same.
  template <class V, bool kMask, bool kSeq, bool kRef, bool kEnt>
  XPLOR_SIMD_INLINE void simd_tokens_as(const float* old, std::int64_t b, std::int64_t full, float keep,
                                        float w, float seq_rho, float dl_cap, float (*lane)[kLanes],
                                        float& probe) const {
    using f4 = V;  // 4 or 8 lanes
    using i4 = typename simd::lanes<V>::mask;
    constexpr int n = simd::lanes<V>::n, parts = kLanes / n;
    f4 kv, w4, lo4, hi4, cap4, one, seq4;
    simd::splat(kv, keep);
    simd::splat(w4, w);
    simd::splat(lo4, lo);
    simd::splat(hi4, hi);
    simd::splat(cap4, dl_cap);
    simd::splat(one, 1.0f);
    simd::splat(seq4, seq_rho);
    const f4 zero = {};
    const bool has_cap = delta > 0.0f;
    f4 acc[8][parts] = {};
    f4 bad = {};  // the sum of x - x over the inputs read here (NaN iff one is not finite)
    for (std::int64_t t0 = b; t0 < full; t0 += kLanes)
      for (int part = 0; part < parts; ++part) {
        const std::int64_t t = t0 + part * n;
        f4 m = kv, a, lp, rho = seq4;
        if constexpr (kMask) {
          simd::load(m, mask + t);
          m = kv * m;
        }
        simd::load(a, adv + t);
        simd::load(lp, logp + t);
        bad += a - a;
        if constexpr (!kSeq) {
          simd::load(rho, old + t);
          rho = lp - rho;
          simd::exp_fast(rho);
        }
        f4 capped = rho;
        if (has_cap) capped = rho > cap4 ? cap4 : rho;
        const f4 clipped = rho < lo4 ? lo4 : (rho > hi4 ? hi4 : rho);
        const f4 u = capped * a, c = clipped * a;
        const i4 take_u = u <= c;
        const f4 l_clip = take_u ? -u : -c;
        const i4 live = take_u ? (capped == rho) : (clipped == rho);
        const f4 l = l_clip;
        const f4 dl_drho = live ? -a : zero;
        const f4 weight = m * w4;
        f4 g = kSeq ? zero : weight * dl_drho * rho;
        if constexpr (kRef) {
          f4 x;
          simd::load(x, ref_logp + t);
          bad += x - x;
          x = x - lp;
          f4 kl_t, dkl;
          if (kl == kl_estimator::k1) {
            kl_t = -x;
            dkl = one;
          } else if (kl == kl_estimator::k2) {
            kl_t = 0.5f * x * x;
            dkl = -x;
          } else {
            f4 ex = x;
            simd::exp_fast(ex);
            kl_t = ex - x - 1.0f;
            dkl = 1.0f - ex;
          }
          f4 h = zero;
          if constexpr (kEnt) {
            simd::load(h, entropies + t);
            bad += h - h;
          }
          acc[0][part] += weight * (l + beta * kl_t - entropy_coef * h);
          acc[2][part] += m * kl_t;
          acc[3][part] += m * h;
          g += weight * beta * dkl;
        } else {
          f4 h = zero;
          if constexpr (kEnt) {
            simd::load(h, entropies + t);
            bad += h - h;
          }
          acc[0][part] += weight * (l + beta * zero - entropy_coef * h);
          acc[2][part] += m * zero;
          acc[3][part] += m * h;
          g += weight * beta * zero;
        }
        acc[1][part] += weight * l;
        acc[4][part] += ((a < zero) & (rho < lo4)) ? m : zero;
        acc[5][part] += ((a > zero) & (rho > hi4)) ? m : zero;
        acc[6][part] += m * rho;
        acc[7][part] += weight * dl_drho;
        simd::store(dlogp + t, g);
      }
    for (int q = 0; q < 8; ++q)
      for (int part = 0; part < parts; ++part) simd::store(lane[q] + part * n, acc[q][part]);
    probe += simd::reduce_add(bad);
  }
  template <class V>
  XPLOR_SIMD_INLINE void simd_tokens_in(const float* old, std::int64_t b, std::int64_t full, float keep,
                                        float w, float seq_rho, float dl_cap, float (*lane)[kLanes],
                                        float& probe) const {
#define XPLOR_TOKENS_(km, ks, kr, kh) \
  return simd_tokens_as<V, km, ks, kr, kh>(old, b, full, keep, w, seq_rho, dl_cap, lane, probe)
#define XPLOR_TOKENS_MS_(km, ks)                                                        \
  {                                                                                     \
    if (ref_logp != nullptr && entropies != nullptr) XPLOR_TOKENS_(km, ks, true, true); \
    if (ref_logp != nullptr) XPLOR_TOKENS_(km, ks, true, false);                        \
    if (entropies != nullptr) XPLOR_TOKENS_(km, ks, false, true);                       \
    XPLOR_TOKENS_(km, ks, false, false);                                                \
  }
    if (mask != nullptr) {
      if (sequence_ratio) XPLOR_TOKENS_MS_(true, true)
      XPLOR_TOKENS_MS_(true, false)
    }
    if (sequence_ratio) XPLOR_TOKENS_MS_(false, true)
    XPLOR_TOKENS_MS_(false, false)
#undef XPLOR_TOKENS_MS_
#undef XPLOR_TOKENS_
  }
  /// The first pass (active tokens and the summed log-ratio) over the full groups of 8.
  template <class V>
  XPLOR_SIMD_INLINE void simd_first_pass(const float* old, std::int64_t b, std::int64_t full, float keep,
                                         float* act_lane, float* lrs_lane, float& probe) const {
    constexpr int n = simd::lanes<V>::n, parts = kLanes / n;
    V kv, act[parts] = {}, lrs[parts] = {}, bad = {};
    simd::splat(kv, keep);
    for (std::int64_t t0 = b; t0 < full; t0 += kLanes)
      for (int part = 0; part < parts; ++part) {
        const std::int64_t t = t0 + part * n;
        V m = kv, x, y;
        if (mask != nullptr) {
          simd::load(m, mask + t);
          bad += m - m;
          m = kv * m;
        }
        simd::load(x, logp + t);
        simd::load(y, old + t);
        bad += (x - x) + (y - y);
        act[part] += m;
        lrs[part] += m * (x - y);
      }
    for (int part = 0; part < parts; ++part) {
      simd::store(act_lane + part * n, act[part]);
      simd::store(lrs_lane + part * n, lrs[part]);
    }
    probe += simd::reduce_add(bad);
  }
#if XPLOR_HOST_SIMD8
  __attribute__((target("avx2"))) void simd_tokens8(const float* old, std::int64_t b, std::int64_t full,
                                                    float keep, float w, float seq_rho, float dl_cap,
                                                    float (*lane)[kLanes], float& probe) const {
    simd_tokens_in<simd::f8>(old, b, full, keep, w, seq_rho, dl_cap, lane, probe);
  }
  __attribute__((target("avx2"))) void simd_first_pass8(const float* old, std::int64_t b, std::int64_t full,
                                                        float keep, float* act_lane, float* lrs_lane,
                                                        float& probe) const {
    simd_first_pass<simd::f8>(old, b, full, keep, act_lane, lrs_lane, probe);
  }
#endif
#endif

  XPLOR_HD void operator()(std::int64_t s) const {
    const std::int64_t b = offsets[s], e = offsets[s + 1];
    const std::int64_t full = b + (e - b) / kLanes * kLanes;  // end of the full groups of 8
    const float keep = truncated != nullptr && truncated[s] ? 0.0f : 1.0f;
    // Missing old log-probs make the ratio exactly 1 (on-policy: the gradient still flows).
    const float* old_ptr = old_logp != nullptr ? old_logp : logp;
    auto mask_at = [&](std::int64_t t) { return keep * (mask != nullptr ? mask[t] : 1.0f); };

    // probe: the sum of x - x over every input value read (NaN iff one of them is NaN or
    // infinite), so validating the inputs costs no separate pass over memory.
    float probe = 0.0f;
    float act_lane[kLanes] = {}, lrs_lane[kLanes] = {};
#if XPLOR_HOST_SIMD
#if XPLOR_HOST_SIMD8
    if (simd::has_avx2())
      simd_first_pass8(old_ptr, b, full, keep, act_lane, lrs_lane, probe);
    else
#endif
      simd_first_pass<simd::f4>(old_ptr, b, full, keep, act_lane, lrs_lane, probe);
#else
    for (std::int64_t t0 = b; t0 < full; t0 += kLanes)
      for (int i = 0; i < kLanes; ++i) {
        const std::int64_t t = t0 + i;
        const float m = mask_at(t);
        probe +=
            (logp[t] - logp[t]) + (old_ptr[t] - old_ptr[t]) + (mask != nullptr ? mask[t] - mask[t] : 0.0f);
        act_lane[i] += m;
        lrs_lane[i] += m * (logp[t] - old_ptr[t]);
      }
#endif
    float active = lanes_sum(act_lane), log_ratio_sum = lanes_sum(lrs_lane);
    for (std::int64_t t = full; t < e; ++t) {
      const float m = mask_at(t);
      probe += (logp[t] - logp[t]) + (old_ptr[t] - old_ptr[t]) + (mask != nullptr ? mask[t] - mask[t] : 0.0f);
      active += m;
      log_ratio_sum += m * (logp[t] - old_ptr[t]);
    }
    const float denom = active > 1.0f ? active : 1.0f;
    // Weight of token t in the aggregate: m_t * w.
    const auto w = static_cast<float>(type == loss_type::grpo ? 1.0 / (double(denom) * num_sequences)
                                                              : 1.0 / global_norm);
    const float seq_rho = exp_fast(log_ratio_sum / denom);
    const float dl_cap = delta > 0.0f ? delta : 3.4e38f;

    // Per-token math in float; exp_fast is the same arithmetic on every backend, so CPU and GPU
    // ratios agree bit for bit. lane[q]: the lane sums of quantity q (token_terms' q).
    float lane[8][kLanes] = {};
#if XPLOR_HOST_SIMD
#if XPLOR_HOST_SIMD8
    if (simd::has_avx2())
      simd_tokens8(old_ptr, b, full, keep, w, seq_rho, dl_cap, lane, probe);
    else
#endif
      simd_tokens_in<simd::f4>(old_ptr, b, full, keep, w, seq_rho, dl_cap, lane, probe);
#else
    for (std::int64_t t0 = b; t0 < full; t0 += kLanes)
      for (int i = 0; i < kLanes; ++i) {
        float q[8];
        token_terms(t0 + i, mask_at(t0 + i), w, seq_rho, dl_cap, old_ptr, q, probe);
        for (int k = 0; k < 8; ++k) lane[k][i] += q[k];
      }
#endif
    float sums[8];  // total, policy, kl, entropy, clip_low, clip_high, ratio, d_seq_rho
    for (int k = 0; k < 8; ++k) sums[k] = lanes_sum(lane[k]);
    for (std::int64_t t = full; t < e; ++t) {
      float q[8];
      token_terms(t, mask_at(t), w, seq_rho, dl_cap, old_ptr, q, probe);
      for (int k = 0; k < 8; ++k) sums[k] += q[k];
    }
    const float d_seq_rho = sums[7];
    if (dentropy != nullptr)
      for (std::int64_t k = b; k < e; ++k) dentropy[k] = -mask_at(k) * w * entropy_coef;
    if (sequence_ratio && active > 0.0f) {
      // rho_seq = exp(sum_t m_t (logp_t - old_t) / max(1, active)): d rho / d logp_t = rho m_t / max(1,
      // active).
      const float g = d_seq_rho * seq_rho / denom;
      for (std::int64_t k = b; k < e; ++k) dlogp[k] += g * mask_at(k);
    }
    const float clipped_tokens = sums[4] + sums[5];
    if (sequence_ratio && e > b) {  // TRL counts a sequence-level ratio's clipping once per sequence
      sums[4] = adv[b] < 0.0f && seq_rho < lo ? 1.0f : 0.0f;
      sums[5] = adv[b] > 0.0f && seq_rho > hi ? 1.0f : 0.0f;
    }
    out[s] = {sums[0],
              sums[1],
              sums[2],
              sums[3],
              sums[4],
              sums[5],
              sums[6],
              active,
              probe != probe ? 1.0 : 0.0,
              double(w) * sums[2],
              double(w) * sums[3],
              log_ratio_sum,
              clipped_tokens};
  }
};

struct read_sums {
  const loss_sums* sums;
  XPLOR_HD loss_sums operator()(std::int64_t s) const { return sums[s]; }
};

struct broadcast_kernel {
  const float* values;
  const std::int64_t* offsets;
  float* out;
  XPLOR_HD void operator()(std::int64_t s) const {
    for (std::int64_t t = offsets[s]; t < offsets[s + 1]; ++t) out[t] = values[s];
  }
};

/// Index t when x[t] < 0, else -1 (reduced with min_valid_code).
struct negative_at {
  const float* x;
  XPLOR_HD std::int64_t operator()(std::int64_t t) const { return x[t] < 0.0f ? t : -1; }
};

inline void check_extended_options(const loss_options& o, const char* fn) {
  auto positive = [&](float v, const char* name) {
    detail::require(std::isfinite(v) && v > 0.0f, fn, name, " = ", v, " must be finite and positive");
  };
  if (o.log_ratio_clamp) positive(*o.log_ratio_clamp, "log_ratio_clamp");
  if (o.sequence_log_ratio_max)
    detail::require(std::isfinite(*o.sequence_log_ratio_max), fn,
                    "sequence_log_ratio_max = ", *o.sequence_log_ratio_max, " is not finite");
  positive(o.sapo_tau_pos, "sapo_tau_pos");
  positive(o.sapo_tau_neg, "sapo_tau_neg");
  positive(o.clip_cov_ratio, "clip_cov_ratio");
  positive(o.kl_cov_ratio, "kl_cov_ratio");
  detail::require(
      std::isfinite(o.clip_cov_lb) && std::isfinite(o.clip_cov_ub) && o.clip_cov_lb < o.clip_cov_ub, fn,
      "clip_cov_lb = ", o.clip_cov_lb, " must be below clip_cov_ub = ", o.clip_cov_ub);
  detail::require(std::isfinite(o.kl_cov_coef), fn, "kl_cov_coef = ", o.kl_cov_coef, " is not finite");
  detail::require(o.top_entropy_quantile > 0.0f && o.top_entropy_quantile <= 1.0f, fn,
                  "top_entropy_quantile = ", o.top_entropy_quantile, " is outside (0, 1]");
  if (o.off_policy_mask_threshold)
    detail::require(std::isfinite(*o.off_policy_mask_threshold), fn,
                    "off_policy_mask_threshold = ", *o.off_policy_mask_threshold, " is not finite");
  auto positive_d = [&](const std::optional<double>& v, const char* name) {
    detail::require(!v || (std::isfinite(*v) && *v > 0.0), fn, name, " = ", v.value_or(0.0),
                    " must be finite and positive");
  };
  positive_d(o.num_sequences_in_batch, "num_sequences_in_batch");
  positive_d(o.loss_scale_factor, "loss_scale_factor");
  detail::require(std::isfinite(o.dp_size) && o.dp_size >= 1.0, fn, "dp_size = ", o.dp_size, " must be >= 1");
}

/// The vectorised kernel above covers TRL's clipped surrogate (token- or sequence-level ratio
/// with TRL's gradient form, delta) without a dual clip, the KL term off or plain (k1/k2/k3
/// without bias correction or clamps), entropy aggregated like the loss, and TRL's
/// aggregations; everything else takes the general kernel of loss_terms.hpp. Both give the same
/// numbers where both apply (loss_modes_test.cpp compares them).
template <class Batch>
bool vectorised_path_applies(const loss_options& o, const Batch& batch, bool no_token_loss) {
  const bool plain_kl = o.beta == 0.0f || (!o.kl_bias_correction && !o.kl_clamp && !o.kl_straight_through &&
                                           o.kl != kl_estimator::abs);
  return o.mode == policy_loss_mode::clip && !o.policy_type && !o.log_ratio_clamp &&
         !o.sequence_log_ratio_max && !o.sequence_ratio_token_gradient && !o.dual_clip && plain_kl &&
         (o.entropy_coef == 0.0f || o.entropy_agg == entropy_aggregation::loss_type) &&
         o.top_entropy_quantile >= 1.0f && !o.off_policy_mask_threshold && !o.exclude_empty_sequences &&
         !o.num_sequences_in_batch && o.dp_size == 1.0 && batch.is_weights.empty() && no_token_loss;
}

/// torch.lerp(a, b, w) as ATen computes it (the two halves of w take different forms).
inline double torch_lerp(double a, double b, double w) {
  return w < 0.5 ? a + w * (b - a) : b - (b - a) * (1.0 - w);
}

/// The general path of policy_loss: token flags (TRL's top-entropy set, the covariance
/// selections), the batch-wide normalisers, then general_sequence_loss over the sequences.
template <execution_tag Exec>
loss_result general_policy_loss(Exec exec, const basic_policy_batch<memory_of<Exec>>& batch,
                                span_for<Exec, float> dlogp, const loss_options& options,
                                span_for<Exec, float> dentropy, span_for<Exec, float> token_loss,
                                const std::int64_t* offsets, const std::uint8_t* trunc) {
  const auto T = static_cast<std::int64_t>(batch.logp.size());
  const auto S = static_cast<std::int64_t>(batch.sequence_offsets.size()) - 1;
  const float lo = 1.0f - options.epsilon, hi = 1.0f + options.epsilon_high.value_or(options.epsilon);
  auto m_buf = make_buffer<float>(exec, static_cast<std::size_t>(T));
  const float* m = m_buf.data();
  for_each_index(
      exec, S, effective_mask{batch.mask.empty() ? nullptr : batch.mask.data(), offsets, trunc, m_buf.data()},
      T / (S > 0 ? S : 1));

  const bool cov = options.mode == policy_loss_mode::clip_cov || options.mode == policy_loss_mode::kl_cov;
  const bool top_entropy = options.top_entropy_quantile < 1.0f;
  auto flag_buf = make_buffer<std::uint8_t>(exec, static_cast<std::size_t>(cov || top_entropy ? T : 0));
  std::uint8_t* flags = cov || top_entropy ? flag_buf.data() : nullptr;
  if (top_entropy) {
    // TRL: torch.quantile(entropies of the active tokens, 1 - top_entropy_quantile), linear
    // interpolation between the order statistics around (n - 1) q.
    const entropy_key key{m, batch.entropies.data()};
    const std::int64_t n = transform_reduce(exec, T, std::int64_t{0}, xplor::detail::plus_count{},
                                            xplor::detail::count_keys_at_least<entropy_key>{key, 1});
    double threshold = 0.0;
    if (n > 0) {
      const double pos = double(1.0f - options.top_entropy_quantile) * double(n - 1);
      const auto below = static_cast<std::int64_t>(std::floor(pos));
      const std::int64_t above = std::min<std::int64_t>(below + 1, n - 1);
      const double v_below = xplor::detail::rank_key_value(kth_largest_key(exec, T, key, n - below));
      const double v_above = xplor::detail::rank_key_value(kth_largest_key(exec, T, key, n - above));
      threshold = torch_lerp(v_below, v_above, pos - double(below));
    }
    for_each_index(exec, T, mark_entropy{m, batch.entropies.data(), threshold, flags});
  } else if (cov) {
    for_each_index(exec, T, fill_flags{flags, flag_entropy});
  }
  if (cov) {
    const bool clip_cov = options.mode == policy_loss_mode::clip_cov;
    const cov_moments mom =
        transform_reduce(exec, T, cov_moments{}, add_cov_moments{},
                         token_cov_moments{m, batch.advantages.data(), batch.logp.data(), clip_cov});
    // verl: masked_mean (sum / (sum m + 1e-8)) for Clip-Cov, a plain mean over m > 0 for KL-Cov.
    const double n = clip_cov ? mom.weight + 1e-8 : mom.weight;
    const cov_key key{m,
                      batch.advantages.data(),
                      batch.logp.data(),
                      batch.old_logp.empty() ? batch.logp.data() : batch.old_logp.data(),
                      n > 0.0 ? mom.adv / n : 0.0,
                      n > 0.0 ? mom.logp / n : 0.0,
                      clip_cov,
                      lo,
                      hi,
                      options.clip_cov_lb,
                      options.clip_cov_ub,
                      options.clip_cov_seed};
    const std::int64_t candidates =
        transform_reduce(exec, T, std::int64_t{0}, xplor::detail::plus_count{}, count_nonzero_keys{key});
    // Clip-Cov: max(int(ratio * sum m), 1) tokens; KL-Cov: max(1, int(valid tokens * ratio)).
    const double base = clip_cov ? mom.weight : double(candidates);
    const auto k = std::max<std::int64_t>(
        1,
        static_cast<std::int64_t>(double(clip_cov ? options.clip_cov_ratio : options.kl_cov_ratio) * base));
    if (candidates > 0) {
      const std::uint64_t threshold = candidates <= k ? 1 : kth_largest_key(exec, T, key, k);
      for_each_index(exec, T, mark_cov{key, threshold, flags});
    }
  }

  const active_pair act =
      transform_reduce(exec, S, active_pair{}, add_active_pair{}, sequence_active{m, offsets});
  auto make_agg = [&](loss_type type) {
    aggregate_weight a{};
    a.type = type;
    a.verl_denominators = options.exclude_empty_sequences;
    const double seqs = options.exclude_empty_sequences ? act.nonempty : double(S);
    a.sequences = options.num_sequences_in_batch.value_or((seqs > 0.0 ? seqs : 1.0) / options.dp_size);
    a.tokens = options.num_items_in_batch.value_or((act.active > 1.0 ? act.active : 1.0) / options.dp_size);
    if (type == loss_type::bnpo) a.tokens = act.active > 1.0 ? act.active : 1.0;
    a.fixed = type == loss_type::dr_grpo ? double(S) * double(options.max_completion_length)
                                         : options.loss_scale_factor.value_or(1.0);
    a.dp = options.dp_size;
    return a;
  };
  double entropy_tokens = act.active;
  if (flags != nullptr && top_entropy)
    entropy_tokens = transform_reduce(exec, T, 0.0, plus_double{}, entropy_set_weight{m, flags});
  if (entropy_tokens < 1.0) entropy_tokens = 1.0;

  auto scratch = make_buffer<term_sums>(exec, static_cast<std::size_t>(S));
  for_each_index(
      exec, S,
      general_sequence_loss{batch.logp.data(),
                            batch.old_logp.empty() ? nullptr : batch.old_logp.data(),
                            options.beta != 0.0f ? batch.ref_logp.data() : nullptr,
                            batch.advantages.data(),
                            batch.mask.empty() ? nullptr : batch.mask.data(),
                            batch.entropies.empty() ? nullptr : batch.entropies.data(),
                            batch.is_weights.empty() ? nullptr : batch.is_weights.data(),
                            options.off_policy_mask_threshold
                                ? (batch.sampling_logp.empty()
                                       ? (batch.old_logp.empty() ? batch.logp.data() : batch.old_logp.data())
                                       : batch.sampling_logp.data())
                                : nullptr,
                            flags,
                            offsets,
                            trunc,
                            dlogp.data(),
                            dentropy.empty() ? nullptr : dentropy.data(),
                            token_loss.empty() ? nullptr : token_loss.data(),
                            scratch.data(),
                            resolve_terms(options),
                            make_agg(options.policy_type.value_or(options.type)),
                            make_agg(options.type),
                            entropy_tokens,
                            double(S > 0 ? S : 1),
                            lo,
                            hi},
      T / (S > 0 ? S : 1));
  const term_sums total =
      transform_reduce(exec, S, term_sums{}, add_term_sums{}, read_term_sums{scratch.data()});
  loss_result r;
  r.loss = total.loss;
  r.policy_loss = total.policy;
  const double n = total.active > 0.0 ? total.active : 1.0;
  r.kl = total.kl / n;
  r.kl_loss = total.kl_term;
  r.entropy = total.entropy / n;
  r.entropy_loss = total.entropy_term;
  const double clip_n =
      options.importance_sampling_level == ratio_level::sequence ? double(S > 0 ? S : 1) : n;
  r.clip_low_fraction = total.clip_low / clip_n;
  r.clip_high_fraction = total.clip_high / clip_n;
  r.pg_clipfrac = total.pg_clipfrac / n;
  r.pg_clipfrac_lower = total.pg_clipfrac_lower / n;
  r.ppo_kl = total.ppo_kl / n;
  r.mean_ratio = total.ratio / n;
  r.active_tokens = total.active;
  return r;
}

}  // namespace kernels

/// The loss and d loss / d logp [T] (written to `dlogp`, backend memory); `dentropy` (optional,
/// [T]) receives d loss / d entropy_t for logits_gradient().
template <execution_tag Exec>
loss_result policy_loss(Exec exec, const basic_policy_batch<memory_of<Exec>>& batch,
                        span_for<Exec, float> dlogp, const loss_options& options = {},
                        span_for<Exec, float> dentropy = {}, span_for<Exec, float> token_loss = {}) {
  constexpr const char* fn = "xplor::rl::policy_loss";
  const auto T = static_cast<std::int64_t>(batch.logp.size());
  const ragged_groups sequences(batch.sequence_offsets, T);
  const std::int64_t S = sequences.num_groups();
  auto same_size = [&](span_for<Exec, const float> x, const char* name, bool optional) {
    detail::require((optional && x.empty()) || static_cast<std::int64_t>(x.size()) == T, fn, name, " has ",
                    x.size(), " elements for ", T, " tokens");
  };
  same_size(batch.old_logp, "old_logp", true);
  same_size(batch.ref_logp, "ref_logp", true);
  same_size(batch.advantages, "advantages", false);
  same_size(batch.mask, "mask", true);
  same_size(batch.entropies, "entropies", true);
  same_size(batch.is_weights, "is_weights", true);
  same_size(batch.sampling_logp, "sampling_logp", true);
  detail::require(token_loss.empty() || static_cast<std::int64_t>(token_loss.size()) == T, fn,
                  "token_loss has ", token_loss.size(), " elements for ", T, " tokens");
  detail::require(static_cast<std::int64_t>(dlogp.size()) == T, fn, "dlogp has ", dlogp.size(),
                  " elements for ", T, " tokens");
  detail::require(dentropy.empty() || static_cast<std::int64_t>(dentropy.size()) == T, fn, "dentropy has ",
                  dentropy.size(), " elements for ", T, " tokens");
  detail::require(batch.truncated.empty() || static_cast<std::int64_t>(batch.truncated.size()) == S, fn,
                  "truncated has ", batch.truncated.size(), " elements for ", S, " sequences");
  const float hi_eps = options.epsilon_high.value_or(options.epsilon);
  detail::require(std::isfinite(options.epsilon) && options.epsilon > 0.0f && options.epsilon <= 1.0f, fn,
                  "epsilon = ", options.epsilon, " is outside (0, 1]");
  // CISPO caps the ratio at 1 + epsilon_high, which TRL sets below 1 + epsilon for some runs.
  detail::require(
      std::isfinite(hi_eps) &&
          (options.mode == policy_loss_mode::cispo ? 1.0f + hi_eps > 1.0f - options.epsilon : hi_eps > 0.0f),
      fn, "epsilon_high = ", hi_eps,
      options.mode == policy_loss_mode::cispo ? " leaves no ratio in [1 - epsilon, 1 + epsilon_high]"
                                              : " must be positive");
  kernels::check_extended_options(options, fn);
  detail::require(options.top_entropy_quantile >= 1.0f || !batch.entropies.empty(), fn,
                  "top_entropy_quantile = ", options.top_entropy_quantile, " needs entropies");
  detail::require(
      options.type != loss_type::seq_mean_token_sum_norm || options.loss_scale_factor, fn,
      "loss_type seq_mean_token_sum_norm needs loss_scale_factor (verl's default is the padded length)");
  detail::require(!options.delta || (std::isfinite(*options.delta) && *options.delta > 1.0f + hi_eps), fn,
                  "delta = ", options.delta.value_or(0.0f),
                  " must exceed 1 + epsilon_high = ", 1.0f + hi_eps);
  detail::require(!options.dual_clip || (std::isfinite(*options.dual_clip) && *options.dual_clip > 1.0f), fn,
                  "dual_clip = ", options.dual_clip.value_or(0.0f), " must exceed 1");
  detail::require(std::isfinite(options.beta) && options.beta >= 0.0f, fn, "beta = ", options.beta,
                  " must be >= 0");
  detail::require(options.beta == 0.0f || !batch.ref_logp.empty(), fn, "beta = ", options.beta,
                  " needs ref_logp");
  detail::require(std::isfinite(options.entropy_coef), fn, "entropy_coef = ", options.entropy_coef,
                  " is not finite");
  detail::require(options.entropy_coef == 0.0f || !batch.entropies.empty(), fn,
                  "entropy_coef = ", options.entropy_coef, " needs entropies");
  detail::require(options.type != loss_type::dr_grpo || options.max_completion_length > 0, fn,
                  "loss_type dr_grpo needs max_completion_length > 0, got ", options.max_completion_length);
  detail::require(!options.num_items_in_batch ||
                      (std::isfinite(*options.num_items_in_batch) && *options.num_items_in_batch > 0.0),
                  fn, "num_items_in_batch = ", options.num_items_in_batch.value_or(0.0),
                  " must be finite and positive");
  // Mask weights in [0, 1]: 0 drops a token, a fraction scales its term (and counts as that
  // fraction of a token in bnpo/dapo's normaliser); -1 or 2 would flip or inflate its gradient.
  if (!batch.mask.empty()) {
    const std::int64_t bad = transform_reduce(exec, T, std::int64_t{-1}, detail::min_valid_code{},
                                              kernels::mask_outside_unit{batch.mask.data()});
    detail::require(bad < 0, fn, "mask[", bad,
                    "] is outside [0, 1] (or NaN); mask weights must lie in [0, 1]");
  }
  // The token arrays are checked for NaN and infinities by the loss pass itself (one read of the
  // tokens instead of two); when it finds one, check_inputs names the first bad index, in this
  // order, and dlogp / dentropy are left unspecified.
  auto check_inputs = [&] {
    check_finite(exec, batch.logp, fn, "logp");
    check_finite(exec, batch.advantages, fn, "advantages");
    if (!batch.old_logp.empty()) check_finite(exec, batch.old_logp, fn, "old_logp");
    if (!batch.ref_logp.empty()) check_finite(exec, batch.ref_logp, fn, "ref_logp");
    if (!batch.mask.empty()) check_finite(exec, batch.mask, fn, "mask");
    if (!batch.entropies.empty()) check_finite(exec, batch.entropies, fn, "entropies");
  };

  if (!batch.is_weights.empty()) {
    check_finite(exec, batch.is_weights, fn, "is_weights");
    const std::int64_t bad = transform_reduce(exec, T, std::int64_t{-1}, detail::min_valid_code{},
                                              kernels::negative_at{batch.is_weights.data()});
    detail::require(bad < 0, fn, "is_weights[", bad, "] is negative");
  }

  const auto offsets = stage(exec, batch.sequence_offsets);
  const auto truncated = stage(exec, batch.truncated);
  const std::uint8_t* trunc =
      options.mask_truncated_completions && !batch.truncated.empty() ? truncated.data() : nullptr;
  if (!kernels::vectorised_path_applies(options, batch, token_loss.empty())) {
    check_inputs();
    if (!batch.sampling_logp.empty()) check_finite(exec, batch.sampling_logp, fn, "sampling_logp");
    return kernels::general_policy_loss(exec, batch, dlogp, options, dentropy, token_loss, offsets.data(),
                                        trunc);
  }
  const float* mask = batch.mask.empty() ? nullptr : batch.mask.data();
  // bnpo and dapo normalise by the batch's active tokens: one pass over the mask first.
  const bool count_tokens =
      options.type == loss_type::bnpo || (options.type == loss_type::dapo && !options.num_items_in_batch);
  const double active = count_tokens ? transform_reduce(exec, S, 0.0, kernels::plus_double{},
                                                        kernels::active_count{mask, offsets.data(), trunc})
                                     : 0.0;
  double norm = 1.0;
  switch (options.type) {
    case loss_type::bnpo:
      norm = active > 1.0 ? active : 1.0;
      break;
    case loss_type::dapo:
      norm = options.num_items_in_batch.value_or(active > 1.0 ? active : 1.0);
      break;
    case loss_type::dr_grpo:
      norm = double(S) * double(options.max_completion_length);
      break;
    case loss_type::seq_mean_token_sum:
      norm = double(S > 0 ? S : 1);
      break;
    case loss_type::seq_mean_token_sum_norm:
      norm = double(S > 0 ? S : 1) * *options.loss_scale_factor;
      break;
    case loss_type::token_sum:
      norm = 1.0;
      break;
    case loss_type::grpo:
      break;
  }
  auto scratch = make_buffer<kernels::loss_sums>(exec, static_cast<std::size_t>(S));
  kernels::loss_sums* sums = scratch.data();
  for_each_index(exec, S,
                 kernels::sequence_loss{batch.logp.data(),
                                        batch.old_logp.empty() ? nullptr : batch.old_logp.data(),
                                        options.beta != 0.0f ? batch.ref_logp.data() : nullptr,
                                        batch.advantages.data(),
                                        mask,
                                        batch.entropies.empty() ? nullptr : batch.entropies.data(),
                                        offsets.data(),
                                        trunc,
                                        dlogp.data(),
                                        dentropy.empty() ? nullptr : dentropy.data(),
                                        sums,
                                        options.type,
                                        norm,
                                        double(S > 0 ? S : 1),
                                        1.0f - options.epsilon,
                                        1.0f + hi_eps,
                                        options.delta.value_or(0.0f),
                                        options.importance_sampling_level == ratio_level::sequence,
                                        options.beta,
                                        options.kl,
                                        options.entropy_coef},
                 T / (S > 0 ? S : 1));
  const kernels::loss_sums total =
      transform_reduce(exec, S, kernels::loss_sums{}, kernels::add_loss_sums{}, kernels::read_sums{sums});
  if (total.nonfinite != 0.0) check_inputs();
  // ref_logp is read by the loss pass only when beta != 0.
  if (options.beta == 0.0f && !batch.ref_logp.empty()) check_finite(exec, batch.ref_logp, fn, "ref_logp");
  loss_result r;
  r.loss = total.loss;
  r.policy_loss = total.policy;
  const double n = total.active > 0.0 ? total.active : 1.0;
  r.kl = total.kl / n;
  r.entropy = total.entropy / n;
  const double clip_n =
      options.importance_sampling_level == ratio_level::sequence ? double(S > 0 ? S : 1) : n;
  r.clip_low_fraction = total.clip_low / clip_n;
  r.clip_high_fraction = total.clip_high / clip_n;
  // Without a dual clip (this path's condition) verl's pg_clipfrac counts the tokens of both clip tests.
  r.pg_clipfrac = total.clipped_tokens / n;
  r.ppo_kl = -total.log_ratio / n;
  r.kl_loss = total.kl_term;
  r.entropy_loss = options.entropy_agg == entropy_aggregation::token_mean ? r.entropy : total.entropy_term;
  r.mean_ratio = total.ratio / n;
  r.active_tokens = total.active;
  return r;
}

/// A batch as trainers hold it: padded [B, L] per-token arrays with a mask, in any layout a view
/// describes (row-major, column-major, Eigen blocks, xtensor, device tensors through the
/// adapters). Sequence b is row b; padding has mask 0. Views live in the backend's memory;
/// `truncated` is host memory. Optional views may be left empty (default-constructed).
template <class Space>
struct basic_padded_policy_batch {
  view2d<const float, Space> logp = {};        // [B, L] log pi_theta(token)
  view2d<const float, Space> old_logp = {};    // [B, L] log pi_old; empty: on-policy
  view2d<const float, Space> ref_logp = {};    // [B, L] log pi_ref; needed when beta != 0
  view2d<const float, Space> advantages = {};  // [B, L] per token; or empty with sequence_advantages
  span_in<Space, const float> sequence_advantages = {};  // [B] one advantage per sequence
  view2d<const float, Space> mask = {};                  // [B, L] in [0, 1]: required (it marks the padding)
  view2d<const float, Space> entropies = {};             // [B, L]; needed when entropy_coef != 0
  std::span<const std::uint8_t> truncated = {};          // [B] host; empty: none truncated
  view2d<const float, Space> is_weights = {};            // [B, L] importance weights of the policy term
  view2d<const float, Space> sampling_logp = {};         // [B, L] the sampler's log-probs (off-policy mask)
};
using padded_policy_batch = basic_padded_policy_batch<host_memory>;
using device_padded_policy_batch = basic_padded_policy_batch<device_memory>;

namespace kernels {
/// out[t] = in(t / L, t % L): a [B, L] view of any strides into row-major scratch.
struct gather_padded {
  view2d<const float> in;
  float* out;
  std::int64_t L;
  XPLOR_HD void operator()(std::int64_t t) const { out[t] = in(t / L, t % L); }
};
/// out(t / L, t % L) = in[t]: row-major scratch back into a [B, L] view of any strides.
struct scatter_padded {
  const float* in;
  view2d<float> out;
  std::int64_t L;
  XPLOR_HD void operator()(std::int64_t t) const { out(t / L, t % L) = in[t]; }
};
/// out(t / L, t % L) = values[t / L].
struct broadcast_padded {
  const float* values;
  view2d<float> out;
  std::int64_t L;
  XPLOR_HD void operator()(std::int64_t t) const { out(t / L, t % L) = values[t / L]; }
};
/// Row b of a row-major [B, L] array = values[b]: one loop per row on the host, where the
/// per-element form above spends a 64-bit division and modulo on every token.
struct broadcast_rows {
  const float* values;
  float* out;
  std::int64_t L;
  void operator()(std::int64_t b) const { std::fill_n(out + b * L, L, values[b]); }
};
}  // namespace kernels

/// The loss of a padded batch and d loss / d logp written into `dlogp` ([B, L], any layout
/// without overlap; padding gets 0). The views are read through their strides, so a
/// column-major [B, L] matrix gives the same loss as its row-major copy; shapes that differ
/// from logp's are errors. Same options and result as the flat policy_loss (the per-token math
/// is that function's: the views are gathered into row-major scratch on the backend).
template <execution_tag Exec>
loss_result policy_loss(Exec exec, const basic_padded_policy_batch<memory_of<Exec>>& batch,
                        view2d_for<Exec, float> dlogp, const loss_options& options = {},
                        view2d_for<Exec, float> dentropy = {}, view2d_for<Exec, float> token_loss = {}) {
  constexpr const char* fn = "xplor::rl::policy_loss(padded)";
  const std::int64_t B = batch.logp.rows();
  const std::int64_t L = batch.logp.cols();
  const std::int64_t T = B * L;
  auto same_shape = [&](auto v, const char* name, bool optional) {
    const bool empty = v.data() == nullptr && v.rows() == 0 && v.cols() == 0;
    detail::require(
        (optional && empty) || (v.rows() == B && v.cols() == L && (T == 0 || v.data() != nullptr)), fn, name,
        " is ", v.rows(), " x ", v.cols(), ", logp is ", B, " x ", L);
    return !empty;
  };
  const bool has_old = same_shape(batch.old_logp, "old_logp", true);
  const bool has_ref = same_shape(batch.ref_logp, "ref_logp", true);
  const bool has_adv = same_shape(batch.advantages, "advantages", true);
  same_shape(batch.mask, "mask", false);
  const bool has_ent = same_shape(batch.entropies, "entropies", true);
  same_shape(dlogp, "dlogp", false);
  const bool has_dent = same_shape(dentropy, "dentropy", true);
  const bool has_isw = same_shape(batch.is_weights, "is_weights", true);
  const bool has_samp = same_shape(batch.sampling_logp, "sampling_logp", true);
  const bool has_tl = same_shape(token_loss, "token_loss", true);
  detail::require(has_adv != !batch.sequence_advantages.empty(), fn,
                  "give either advantages [B, L] or sequence_advantages [B], not ",
                  has_adv ? "both" : "neither");
  detail::require(has_adv || static_cast<std::int64_t>(batch.sequence_advantages.size()) == B, fn,
                  "sequence_advantages has ", batch.sequence_advantages.size(), " elements for ", B,
                  " sequences");
  detail::require_distinct_elements(dlogp, fn, "dlogp");
  if (has_dent) detail::require_distinct_elements(dentropy, fn, "dentropy");
  if (has_tl) detail::require_distinct_elements(token_loss, fn, "token_loss");

  // Views already in row-major order (a contiguous [B, L] array, the common case) are read and
  // written in place; the others go through row-major scratch on the backend.
  const auto row_major = [&](const auto& v) {
    return (L <= 1 || v.stride(1) == 1) && (B <= 1 || v.stride(0) == L);
  };
  int slots = has_adv ? 0 : 1;  // sequence advantages are broadcast into scratch
  // (One call per view, not a loop over a braced list: nvcc's host pass rejects that form.)
  const auto count = [&](bool has, const auto& v) { slots += has && !row_major(v); };
  count(true, batch.logp);
  count(has_old, batch.old_logp);
  count(has_ref, batch.ref_logp);
  count(has_adv, batch.advantages);
  count(true, batch.mask);
  count(has_ent, batch.entropies);
  count(has_isw, batch.is_weights);
  count(has_samp, batch.sampling_logp);
  count(true, dlogp);
  count(has_dent, dentropy);
  count(has_tl, token_loss);
  auto scratch = make_buffer<float>(exec, static_cast<std::size_t>(slots * T));
  int next = 0;
  const auto take = [&] {
    return backend_span(exec, scratch.data() + (next++) * T, static_cast<std::size_t>(T));
  };
  const std::int64_t Lk = L > 0 ? L : 1;
  auto input = [&](view2d_for<Exec, const float> v) -> span_for<Exec, const float> {
    if (row_major(v)) return backend_span(exec, v.data(), static_cast<std::size_t>(T));
    const auto s = take();
    for_each_index(exec, T, kernels::gather_padded{xplor::detail::kernel_view(v), s.data(), Lk});
    return s;
  };
  auto output = [&](view2d_for<Exec, float> v) -> span_for<Exec, float> {
    return row_major(v) ? backend_span(exec, v.data(), static_cast<std::size_t>(T)) : take();
  };
  auto write_back = [&](span_for<Exec, float> s, view2d_for<Exec, float> v) {
    if (s.data() != v.data())
      for_each_index(exec, T, kernels::scatter_padded{s.data(), xplor::detail::kernel_view(v), Lk});
  };
  basic_policy_batch<memory_of<Exec>> flat;
  flat.logp = input(batch.logp);
  if (has_old) flat.old_logp = input(batch.old_logp);
  if (has_ref) flat.ref_logp = input(batch.ref_logp);
  if (has_adv) {
    flat.advantages = input(batch.advantages);
  } else {
    const auto s = take();
    if constexpr (std::is_same_v<Exec, cpu_t>)
      for_each_index(exec, B, kernels::broadcast_rows{batch.sequence_advantages.data(), s.data(), L}, L);
    else
      for_each_index(exec, T,
                     kernels::broadcast_padded{batch.sequence_advantages.data(),
                                               view2d<float>(s.data(), {B, L}, {L, 1}), Lk});
    flat.advantages = s;
  }
  flat.mask = input(batch.mask);
  if (has_ent) flat.entropies = input(batch.entropies);
  if (has_isw) flat.is_weights = input(batch.is_weights);
  if (has_samp) flat.sampling_logp = input(batch.sampling_logp);
  std::vector<std::int64_t> offsets(static_cast<std::size_t>(B + 1));
  for (std::int64_t b = 0; b <= B; ++b) offsets[static_cast<std::size_t>(b)] = b * L;
  flat.sequence_offsets = offsets;
  flat.truncated = batch.truncated;
  // verl's seq-mean-token-sum-norm divides by the padded length unless told otherwise.
  loss_options o = options;
  if (o.type == loss_type::seq_mean_token_sum_norm && !o.loss_scale_factor) o.loss_scale_factor = double(Lk);
  const span_for<Exec, float> d = output(dlogp);
  const span_for<Exec, float> de = has_dent ? output(dentropy) : span_for<Exec, float>();
  const span_for<Exec, float> tl = has_tl ? output(token_loss) : span_for<Exec, float>();
  const loss_result r = policy_loss(exec, flat, d, o, de, tl);
  write_back(d, dlogp);
  if (has_dent) write_back(de, dentropy);
  if (has_tl) write_back(tl, token_loss);
  return r;
}

/// out(b, j) = values[b] for a padded [B, L] output of any layout without overlap.
template <execution_tag Exec>
void broadcast_to_tokens(Exec exec, span_for<Exec, const float> values, view2d_for<Exec, float> out) {
  constexpr const char* fn = "xplor::rl::broadcast_to_tokens(padded)";
  detail::require(static_cast<std::int64_t>(values.size()) == out.rows(), fn, "values has ", values.size(),
                  " elements for ", out.rows(), " rows");
  detail::require_distinct_elements(out, fn, "out");
  for_each_index(exec, out.size(),
                 kernels::broadcast_padded{values.data(), xplor::detail::kernel_view(out),
                                           out.cols() > 0 ? out.cols() : 1});
}

/// out[t] = values[s] for every token t of sequence s (per-sequence advantages to tokens).
template <execution_tag Exec>
void broadcast_to_tokens(Exec exec, span_for<Exec, const float> values,
                         std::span<const std::int64_t> sequence_offsets, span_for<Exec, float> out) {
  constexpr const char* fn = "xplor::rl::broadcast_to_tokens";
  const ragged_groups sequences(sequence_offsets, static_cast<std::int64_t>(out.size()));
  detail::require(static_cast<std::int64_t>(values.size()) == sequences.num_groups(), fn, "values has ",
                  values.size(), " elements for ", sequences.num_groups(), " sequences");
  const auto offsets = stage(exec, sequence_offsets);
  for_each_index(exec, sequences.num_groups(),
                 kernels::broadcast_kernel{values.data(), offsets.data(), out.data()},
                 static_cast<std::int64_t>(out.size()) / std::max<std::int64_t>(1, sequences.num_groups()));
}

namespace kernels {
struct bad_target {
  const std::int32_t* targets;
  std::int64_t vocab;
  XPLOR_HD std::int64_t operator()(std::int64_t t) const {
    return targets[t] < 0 || targets[t] >= vocab ? t : -1;
  }
};
/// Row t of the logits gradient: dlogp_t (onehot(y_t) - p) + dentropy_t dH/dz, with
/// dH/dz_k = -p_k (log p_k + H).
struct logits_grad_row {
  view2d<const float> logits;
  const std::int32_t* targets;
  const float* dlogp;
  const float* dentropy;  // may be null
  view2d<float> out;
  XPLOR_HD void operator()(std::int64_t t) const {
    const std::int64_t V = logits.cols();
    const xplor::detail::logits_row row{&logits(t, 0), V, logits.stride(1)};
    // log p in the shifted domain, (z - m) - log sum exp(z - m): exact at any logit scale
    // (z - logsumexp(z) loses everything when |z| ~ 1e8).
    const float m = xplor::detail::row_max(row);
    const float log_s = std::log(xplor::detail::row_shifted_sum(row, m));
    const float g = dlogp[t];
    const float de = dentropy != nullptr ? dentropy[t] : 0.0f;
    float h = 0.0f;
    if (de != 0.0f) h = xplor::detail::row_entropy(row);
    for (std::int64_t k = 0; k < V; ++k) {
      const float lp = xplor::detail::row_log_softmax_at(row, k, m, log_s);
      const float p = std::exp(lp);
      float d = -g * p;
      if (de != 0.0f && p > 0.0f) d -= de * p * (lp + h);
      out(t, k) = d;
    }
    out(t, targets[t]) += g;
  }
};
}  // namespace kernels

/// Gradient of sum_t dlogp[t] log softmax(logits_t)[targets_t] + sum_t dentropy[t] H(logits_t)
/// with respect to the logits [T, V], for frameworks that differentiate from the logits.
template <execution_tag Exec>
void logits_gradient(Exec exec, view2d_for<Exec, const float> logits,
                     span_for<Exec, const std::int32_t> targets, span_for<Exec, const float> dlogp,
                     span_for<Exec, const float> dentropy, view2d_for<Exec, float> out) {
  constexpr const char* fn = "xplor::rl::logits_gradient";
  detail::check_logits(exec, logits, fn, "logits");
  detail::require(out.rows() == logits.rows() && out.cols() == logits.cols(), fn, "out is ", out.rows(),
                  " x ", out.cols(), " for logits ", logits.rows(), " x ", logits.cols());
  detail::require(static_cast<std::int64_t>(targets.size()) == logits.rows() &&
                      static_cast<std::int64_t>(dlogp.size()) == logits.rows(),
                  fn, "targets/dlogp have ", targets.size(), "/", dlogp.size(), " elements for ",
                  logits.rows(), " rows");
  detail::require(dentropy.empty() || static_cast<std::int64_t>(dentropy.size()) == logits.rows(), fn,
                  "dentropy has ", dentropy.size(), " elements for ", logits.rows(), " rows");
  const std::int64_t bad =
      transform_reduce(exec, logits.rows(), std::int64_t{-1}, xplor::detail::min_valid_code{},
                       kernels::bad_target{targets.data(), logits.cols()});
  detail::require(bad < 0, fn, "targets[", bad, "] is outside [0, ", logits.cols(), ")");
  for_each_index(
      exec, logits.rows(),
      kernels::logits_grad_row{xplor::detail::kernel_view(logits), targets.data(), dlogp.data(),
                               dentropy.empty() ? nullptr : dentropy.data(), xplor::detail::kernel_view(out)},
      logits.cols());
}

}  // namespace xplor::rl
