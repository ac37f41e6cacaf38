// Advantage estimators for RL on language models, on either backend: GRPO-family group
// normalisation (TRL GRPOTrainer; Dr. GRPO's scale_rewards = none; verl's preset), RLOO,
// REINFORCE++ (group mean, then batch z-score; ProRL/BroRL), discounted returns and Return Batch
// Normalization (ReBN, GEM arXiv 2510.01051 §3). Formulas and defaults: docs/rl.md.
//
// Groups may be equal-size (group_size) or ragged (offsets, e.g. per-prompt rollout counts from
// the knapsack allocator). Every group is normalised by one XPLOR_HD kernel that runs unchanged on
// xplor::cpu and xplor::device; batch statistics accept an all-reduce callback so a distributed
// trainer normalises with the global (sum, sum of squares, count).
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <span>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/core/groups.hpp"
#include "xplor/core/numerics.hpp"

namespace xplor::rl {

/// TRL's scale_rewards: divide by the group's std, the batch's std, or not at all (Dr. GRPO).
enum class scale_rewards { group, batch, none };
/// Standard deviation with Bessel's correction (n - 1; TRL, verl, torch.std) or population (n).
enum class std_kind { unbiased, population };
/// A group of one response: TRL gets std = NaN and turns A into 0; verl uses mean 0, std 1.
enum class single_response { zero_advantage, mean0_std1 };
/// Outcome estimators (one reward per response, docs/rl.md has each formula and source):
///   grpo          (r - mean_g) / (std_g + eps), per options.scale              TRL, verl grpo
///   rloo          r - mean of the other responses of the group                  verl rloo
///   reinforce_pp  r - mean_g, then a z-score over the batch's responses         ProRL / BroRL
///   opo           r - sum_g(len r) / sum_g(len), lengths given                  verl opo (arXiv 2505.23585)
///   pass_at_k     the group's best response gets r_max - r_second (/ (std_g + eps)), others 0
///                                                                               verl grpo_passk (arXiv
///                                                                               2503.19595)
///   gpg           alpha (r - mean_g), alpha = n / (responses with r != 0)      verl gpg (arXiv 2504.02546)
enum class estimator { grpo, rloo, reinforce_pp, opo, pass_at_k, gpg };

/// All-reduce of batch statistics across ranks: receives this rank's (sum, sum of squares, count)
/// and must replace them by the totals over all ranks (MPI_Allreduce, NCCL, torch.distributed).
using allreduce_fn = std::function<void(std::span<double, 3>)>;

/// Defaults are TRL's GRPOTrainer: group scaling, Bessel std, eps 1e-4 added to the std.
struct advantage_options {
  scale_rewards scale = scale_rewards::group;
  std_kind std = std_kind::unbiased;
  float eps = 1e-4f;  // added to the std, not inside the sqrt (TRL grpo_trainer.py)
  single_response group_of_one = single_response::zero_advantage;
  /// A group whose std is <= this is "degenerate" (no learning signal; DAPO dynamic sampling
  /// drops it). TRL counts torch.isclose(std, 0), i.e. std <= 1e-8.
  float degenerate_threshold = 1e-8f;
  allreduce_fn allreduce = {};  // batch statistics across ranks (scale = batch, reinforce_pp)
};

/// verl's GRPO: unbiased std, eps 1e-6, a group of one gets mean 0 and std 1.
inline advantage_options verl_options() {
  advantage_options o;
  o.eps = 1e-6f;
  o.group_of_one = single_response::mean0_std1;
  return o;
}

/// What a normalisation saw: degenerate groups (TRL logs frac_reward_zero_std) and the batch
/// statistics it used.
struct advantage_report {
  std::int64_t num_groups = 0;
  std::int64_t degenerate_groups = 0;
  double batch_mean = 0.0;
  double batch_std = 0.0;
  /// TRL's frac_reward_zero_std: with scale = batch TRL tests the batch's std (1 or 0), otherwise
  /// the fraction of degenerate groups.
  bool batch_scaled = false;
  double frac_zero_std() const {
    if (batch_scaled) return batch_std <= 1e-8 ? 1.0 : 0.0;
    return num_groups > 0 ? double(degenerate_groups) / double(num_groups) : 0.0;
  }
};

namespace kernels {

/// Mean and standard deviation of x[b, e) in double, two passes (every group statistic of this
/// header, and DeepSearch's); sd is 0 for fewer than two values.
template <class T>
XPLOR_HD inline void mean_std(const T* x, std::int64_t b, std::int64_t e, bool unbiased, double& mean,
                              double& sd) {
  const std::int64_t n = e - b;
  double sum = 0.0;
  for (std::int64_t i = b; i < e; ++i) sum += x[i];
  mean = n > 0 ? sum / double(n) : 0.0;
  double m2 = 0.0;
  for (std::int64_t i = b; i < e; ++i) m2 += (x[i] - mean) * (x[i] - mean);
  sd = n > 1 ? std::sqrt(m2 / double(unbiased ? n - 1 : n)) : 0.0;
}

/// a / (sd + eps); a constant group with eps = 0 is 0 / 0, which TRL's nan_to_num makes 0.
XPLOR_HD inline double divide_by_std(double a, double sd, float eps) {
  return sd + eps > 0.0 ? a / (sd + eps) : 0.0;
}

/// Per-group kernel: mean and std of the group (double accumulation, two passes), the group's
/// degenerate flag, and the advantages of its members before any batch scaling.
template <class Groups>
struct group_kernel {
  Groups groups;  // equal_groups, or offsets on the backend
  const float* rewards;
  const float* lengths;  // opo's response lengths; null otherwise
  double gpg_scale;      // gpg's alpha
  float* out;
  std::uint8_t* degenerate;  // may be null
  estimator kind;
  scale_rewards scale;
  bool unbiased;
  bool mean0_std1;
  float eps;
  float threshold;

  XPLOR_HD void operator()(std::int64_t g) const {
    const std::int64_t b = groups.begin(g), e = groups.end(g), n = e - b;
    if (n == 0) return;
    double mean = 0.0;
    double sd = 0.0;
    mean_std(rewards, b, e, unbiased, mean, sd);
    if (degenerate != nullptr) degenerate[g] = n == 1 || sd <= threshold;
    if (kind == estimator::pass_at_k) {  // n >= 2 (checked): only the first best response learns
      std::int64_t best = b;
      for (std::int64_t i = b + 1; i < e; ++i)
        if (rewards[i] > rewards[best]) best = i;
      double second = -3.4e38;
      for (std::int64_t i = b; i < e; ++i)
        if (i != best && rewards[i] > second) second = rewards[i];
      for (std::int64_t i = b; i < e; ++i) out[i] = 0.0f;
      double a = rewards[best] - second;
      if (scale == scale_rewards::group) a = divide_by_std(a, sd, eps);
      out[best] = static_cast<float>(a);
      return;
    }
    if (kind == estimator::opo && n > 1) {  // length-weighted baseline
      double num = 0.0, den = 0.0;
      for (std::int64_t i = b; i < e; ++i) {
        num += double(lengths[i]) * rewards[i];
        den += lengths[i];
      }
      mean = den > 0.0 ? num / den : 0.0;  // all responses empty: verl divides 0 by 0
    }
    if (n == 1) {
      if (!mean0_std1) {
        out[b] = 0.0f;
        return;
      }
      mean = 0.0;
      sd = 1.0;
    }
    for (std::int64_t i = b; i < e; ++i) {
      double a = rewards[i] - mean;
      if (kind == estimator::rloo && n > 1) a *= double(n) / double(n - 1);  // r_i - mean of the others
      if (kind == estimator::grpo && scale == scale_rewards::group) a = divide_by_std(a, sd, eps);
      if (kind == estimator::gpg) a *= gpg_scale;
      out[i] = static_cast<float>(a);
    }
  }
};

/// Ragged group boundaries read from offsets in backend memory.
struct offset_groups {
  const std::int64_t* offsets;
  XPLOR_HD std::int64_t begin(std::int64_t g) const { return offsets[g]; }
  XPLOR_HD std::int64_t end(std::int64_t g) const { return offsets[g + 1]; }
};
struct equal_bounds {
  std::int64_t size;
  XPLOR_HD std::int64_t begin(std::int64_t g) const { return g * size; }
  XPLOR_HD std::int64_t end(std::int64_t g) const { return (g + 1) * size; }
};

struct moments {
  double sum = 0.0, sumsq = 0.0, count = 0.0;
};
struct add_moments {
  XPLOR_HD moments operator()(const moments& a, const moments& b) const {
    return {a.sum + b.sum, a.sumsq + b.sumsq, a.count + b.count};
  }
};
struct value_moments {
  const float* x;
  XPLOR_HD moments operator()(std::int64_t i) const { return {double(x[i]), double(x[i]) * x[i], 1.0}; }
};
struct nonzero_reward {
  const float* x;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return x[i] != 0.0f ? 1 : 0; }
};
/// Index i when lengths[i] is negative, infinite or NaN, else -1.
struct bad_length_at {
  const float* x;
  XPLOR_HD std::int64_t operator()(std::int64_t i) const { return x[i] >= 0.0f && x[i] <= 3.4e38f ? -1 : i; }
};
struct count_flags {
  const std::uint8_t* flags;
  XPLOR_HD std::int64_t operator()(std::int64_t g) const { return flags[g] != 0; }
};
struct plus_i64 {
  XPLOR_HD std::int64_t operator()(std::int64_t a, std::int64_t b) const { return a + b; }
};
/// out[i] = (in[i] - mean) / (sd + eps)
struct copy_normalize {
  const float* in;
  float* out;
  double mean, sd;
  float eps;
  XPLOR_HD void operator()(std::int64_t i) const {
    out[i] = static_cast<float>(divide_by_std(in[i] - mean, sd, eps));
  }
};
/// out[i] = (out[i] - shift) / (scale + eps)
struct affine_normalize {
  float* out;
  double shift, scale;
  float eps;
  XPLOR_HD void operator()(std::int64_t i) const {
    out[i] = static_cast<float>(divide_by_std(out[i] - shift, scale, eps));
  }
};

/// Mean and std of values over the whole (possibly multi-rank) batch.
template <class Exec>
std::pair<double, double> batch_moments(Exec exec, const float* values, std::int64_t n, bool unbiased,
                                        const allreduce_fn& allreduce) {
  const moments m = transform_reduce(exec, n, moments{}, add_moments{}, value_moments{values});
  double stats[3] = {m.sum, m.sumsq, m.count};
  if (allreduce) allreduce(std::span<double, 3>(stats));
  const double count = stats[2];
  if (count <= 0.0) return {0.0, 0.0};
  const double mean = stats[0] / count;
  double var = stats[1] / count - mean * mean;  // population
  if (unbiased) var = count > 1.0 ? var * count / (count - 1.0) : 0.0;
  return {mean, var > 0.0 ? std::sqrt(var) : 0.0};
}

inline void check_options(const advantage_options& o, const char* fn) {
  detail::require(std::isfinite(o.eps) && o.eps >= 0.0f, fn, "options.eps = ", o.eps,
                  " must be finite and >= 0");
  detail::require(std::isfinite(o.degenerate_threshold) && o.degenerate_threshold >= 0.0f, fn,
                  "options.degenerate_threshold = ", o.degenerate_threshold, " must be finite and >= 0");
}

}  // namespace kernels

/// Advantages of `rewards` [n] grouped by `groups` (equal_groups or ragged_groups), written to
/// `out` [n]; `degenerate` [groups] (optional) receives per-group flags. rewards, out and
/// degenerate live in the backend's memory; ragged offsets are host memory.
///   grpo:         A = (r - mean_g) / (std_g + eps)  [scale group]; r - mean_g [none];
///                 (r - mean_g) / (std_batch(r) + eps) [batch]                    (TRL 6.2)
///   rloo:         A = n/(n-1) (r - mean_g) = r - mean of the other responses     (verl)
///   reinforce_pp: A = r - mean_g, then (A - mean_batch(A)) / (std_batch(A) + eps) (ProRL, BroRL)
template <execution_tag Exec, group_layout Groups>
advantage_report compute_advantages(Exec exec, estimator kind, span_for<Exec, const float> rewards,
                                    const Groups& groups, span_for<Exec, float> out,
                                    const advantage_options& options = {},
                                    span_for<Exec, std::uint8_t> degenerate = {},
                                    span_for<Exec, const float> lengths = {}) {
  constexpr const char* fn = "xplor::rl::compute_advantages";
  kernels::check_options(options, fn);
  const std::int64_t n = static_cast<std::int64_t>(rewards.size());
  detail::require(groups.num_elements() == n, fn, "the groups cover ", groups.num_elements(),
                  " rewards, rewards has ", n);
  detail::require(out.size() == rewards.size(), fn, "out has ", out.size(), " elements for ", n, " rewards");
  detail::require(degenerate.empty() || static_cast<std::int64_t>(degenerate.size()) == groups.num_groups(),
                  fn, "degenerate has ", degenerate.size(), " elements for ", groups.num_groups(), " groups");
  check_finite(exec, rewards, fn, "rewards");
  detail::require(kind == estimator::opo || lengths.empty(), fn, "lengths are for estimator opo only");
  if (kind == estimator::opo) {
    detail::require(lengths.size() == rewards.size(), fn, "opo needs lengths: ", lengths.size(), " for ", n,
                    " rewards");
    const std::int64_t bad = transform_reduce(exec, n, std::int64_t{-1}, detail::min_valid_code{},
                                              kernels::bad_length_at{lengths.data()});
    detail::require(bad < 0, fn, "lengths[", bad, "] must be finite and >= 0");
  }
  if (kind == estimator::pass_at_k)
    for (std::int64_t g = 0; g < groups.num_groups(); ++g)
      detail::require(groups.end(g) - groups.begin(g) >= 2, fn,
                      "pass_at_k needs two responses per group; group ", g, " has ",
                      groups.end(g) - groups.begin(g));
  // GPG's alpha: the batch size over the responses with a nonzero reward (verl: n / max(1, m)).
  double gpg_scale = 1.0;
  if (kind == estimator::gpg) {
    const std::int64_t nonzero = transform_reduce(exec, n, std::int64_t{0}, kernels::plus_i64{},
                                                  kernels::nonzero_reward{rewards.data()});
    gpg_scale = double(n) / double(nonzero > 1 ? nonzero : 1);
  }

  auto run = [&](auto bounds) {
    for_each_index(exec, groups.num_groups(),
                   kernels::group_kernel<decltype(bounds)>{
                       bounds, rewards.data(), lengths.empty() ? nullptr : lengths.data(), gpg_scale,
                       out.data(), degenerate.empty() ? nullptr : degenerate.data(), kind, options.scale,
                       options.std == std_kind::unbiased, options.group_of_one == single_response::mean0_std1,
                       options.eps, options.degenerate_threshold},
                   n / std::max<std::int64_t>(1, groups.num_groups()));
  };
  if constexpr (std::is_same_v<Groups, equal_groups>) {
    run(kernels::equal_bounds{groups.size});
  } else {
    const auto offsets = stage(exec, groups.offsets);
    run(kernels::offset_groups{offsets.data()});
  }

  advantage_report report;
  report.num_groups = groups.num_groups();
  if (!degenerate.empty())
    report.degenerate_groups = transform_reduce(exec, groups.num_groups(), std::int64_t{0},
                                                kernels::plus_i64{}, kernels::count_flags{degenerate.data()});
  const bool unbiased = options.std == std_kind::unbiased;
  if (kind == estimator::grpo && options.scale == scale_rewards::batch) {
    const auto [mean, sd] = kernels::batch_moments(exec, rewards.data(), n, unbiased, options.allreduce);
    report.batch_mean = mean;
    report.batch_std = sd;
    report.batch_scaled = true;
    for_each_index(exec, n, kernels::affine_normalize{out.data(), 0.0, sd, options.eps});
  } else if (kind == estimator::reinforce_pp) {
    const auto [mean, sd] = kernels::batch_moments(exec, out.data(), n, unbiased, options.allreduce);
    report.batch_mean = mean;
    report.batch_std = sd;
    for_each_index(exec, n, kernels::affine_normalize{out.data(), mean, sd, options.eps});
  }
  return report;
}

/// The statistics of one group of scores as the GRPO kernel computes them (double, two passes,
/// options.std), and the advantage of a value against them: value - mean, divided by
/// (std + options.eps) when options.scale is group. For callers whose advantages are not the
/// group's own rewards (DeepSearch gives a node's value minus the mean terminal score).
struct group_baseline {
  double mean = 0.0;
  double std = 0.0;
  scale_rewards scale = scale_rewards::group;
  float eps = 1e-4f;
  double advantage(double value) const {
    const double a = value - mean;
    return scale == scale_rewards::group ? kernels::divide_by_std(a, std, eps) : a;
  }
};
template <class T>
group_baseline make_group_baseline(std::span<const T> scores, const advantage_options& options = {}) {
  constexpr const char* fn = "xplor::rl::make_group_baseline";
  kernels::check_options(options, fn);
  detail::require(!scores.empty(), fn, "scores is empty");
  for (std::size_t i = 0; i < scores.size(); ++i)
    detail::require(std::isfinite(static_cast<double>(scores[i])), fn, "scores[", i, "] = ", scores[i],
                    " is not finite");
  group_baseline b;
  kernels::mean_std(scores.data(), 0, static_cast<std::int64_t>(scores.size()),
                    options.std == std_kind::unbiased, b.mean, b.std);
  b.scale = options.scale;
  b.eps = options.eps;
  return b;
}

/// GRPO advantages over equal groups of `group_size` consecutive rewards (TRL defaults); the
/// report holds frac_zero_std (DAPO's dynamic sampling) and the batch statistics used.
template <execution_tag Exec>
advantage_report group_advantages(Exec exec, span_for<Exec, const float> rewards, std::int64_t group_size,
                                  span_for<Exec, float> out, const advantage_options& options = {}) {
  constexpr const char* fn = "xplor::rl::group_advantages";
  detail::require(group_size > 0, fn, "group_size = ", group_size, " must be positive");
  detail::require(static_cast<std::int64_t>(rewards.size()) % group_size == 0, fn, "rewards has ",
                  rewards.size(), " elements, not a multiple of group_size = ", group_size);
  const auto groups = equal_groups(static_cast<std::int64_t>(rewards.size()) / group_size, group_size);
  auto degenerate = make_buffer<std::uint8_t>(exec, static_cast<std::size_t>(groups.num_groups()));
  return compute_advantages(exec, estimator::grpo, rewards, groups, out, options,
                            backend_span(exec, degenerate.data(), degenerate.size()));
}

/// GRPO advantages over ragged groups: group g is rewards[offsets[g] .. offsets[g+1]).
template <execution_tag Exec>
advantage_report group_advantages(Exec exec, span_for<Exec, const float> rewards,
                                  std::span<const std::int64_t> group_offsets, span_for<Exec, float> out,
                                  const advantage_options& options = {}) {
  const ragged_groups groups(group_offsets, static_cast<std::int64_t>(rewards.size()));
  auto degenerate = make_buffer<std::uint8_t>(exec, static_cast<std::size_t>(groups.num_groups()));
  return compute_advantages(exec, estimator::grpo, rewards, groups, out, options,
                            backend_span(exec, degenerate.data(), degenerate.size()));
}

// ---------------------------------------------------------------------------------------------
// Multi-turn returns and ReBN (GEM §3: G_t = r_t + gamma G_{t+1}; A = (G - mean) / (std + 1e-9)
// over all turns of the batch, population std).

namespace kernels {
struct discount_kernel {
  const float* rewards;
  const std::int64_t* offsets;
  float gamma;
  float* out;
  XPLOR_HD void operator()(std::int64_t e) const {
    double g = 0.0;
    for (std::int64_t t = offsets[e + 1]; t-- > offsets[e];) {
      g = rewards[t] + double(gamma) * g;
      out[t] = static_cast<float>(g);
    }
  }
};
}  // namespace kernels

/// Discounted returns per episode: out[t] = sum_{k >= t in the episode} gamma^(k-t) rewards[k].
/// Episode e covers [episode_offsets[e], episode_offsets[e+1]) (host offsets).
template <execution_tag Exec>
void discounted_returns(Exec exec, span_for<Exec, const float> rewards,
                        std::span<const std::int64_t> episode_offsets, float gamma,
                        span_for<Exec, float> out) {
  constexpr const char* fn = "xplor::rl::discounted_returns";
  detail::require(std::isfinite(gamma) && gamma >= 0.0f && gamma <= 1.0f, fn, "gamma = ", gamma,
                  " is outside [0, 1]");
  detail::require(out.size() == rewards.size(), fn, "out has ", out.size(), " elements for ", rewards.size(),
                  " rewards");
  const ragged_groups episodes(episode_offsets, static_cast<std::int64_t>(rewards.size()));
  check_finite(exec, rewards, fn, "rewards");
  const auto offsets = stage(exec, episodes.offsets);
  for_each_index(exec, episodes.num_groups(),
                 kernels::discount_kernel{rewards.data(), offsets.data(), gamma, out.data()});
}
inline void discounted_returns(std::span<const float> rewards, std::span<const std::int64_t> episode_offsets,
                               float gamma, std::span<float> out) {
  discounted_returns(cpu, rewards, episode_offsets, gamma, out);
}

/// ReBN options: GEM's population std and eps 1e-9; an optional all-reduce for multi-rank batches.
struct rebn_options {
  float eps = 1e-9f;
  std_kind std = std_kind::population;
  allreduce_fn allreduce = {};
};

/// A = (G - mean(G)) / (std(G) + eps) over all returns of the batch (every turn of every episode).
template <execution_tag Exec>
advantage_report rebn_advantages(Exec exec, span_for<Exec, const float> returns, span_for<Exec, float> out,
                                 const rebn_options& options) {
  constexpr const char* fn = "xplor::rl::rebn_advantages";
  detail::require(out.size() == returns.size(), fn, "out has ", out.size(), " elements for ", returns.size(),
                  " returns");
  detail::require(std::isfinite(options.eps) && options.eps >= 0.0f, fn, "options.eps = ", options.eps,
                  " must be finite and >= 0");
  check_finite(exec, returns, fn, "returns");
  const auto n = static_cast<std::int64_t>(returns.size());
  const auto [mean, sd] =
      kernels::batch_moments(exec, returns.data(), n, options.std == std_kind::unbiased, options.allreduce);
  for_each_index(exec, n, kernels::copy_normalize{returns.data(), out.data(), mean, sd, options.eps});
  advantage_report report;
  report.batch_mean = mean;
  report.batch_std = sd;
  return report;
}
template <execution_tag Exec>
void rebn_advantages(Exec exec, span_for<Exec, const float> returns, span_for<Exec, float> out) {
  rebn_advantages(exec, returns, out, rebn_options{});
}

}  // namespace xplor::rl
