// Several weighted reward functions combined into one reward and one advantage per sample, with
// TRL's conventions (GRPOConfig `reward_weights`, `multi_objective_aggregation`, `scale_rewards`):
// a function returns std::optional<float>, and std::nullopt ("not applicable", TRL's None) leaves
// it out of that sample's sum. Also DAPO's soft overlong penalty. See docs/reward.md.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/groups.hpp"

namespace xplor::reward {

/// TRL `multi_objective_aggregation`.
enum class aggregation {
  /// r_i = sum_k w_k r_ik (not-applicable terms left out), then A_i = (r_i - mean_group(r)) scaled
  /// by `scale` (TRL's default).
  sum_then_normalize,
  /// Each function z-scored within its group, z_ik = (r_ik - mean_gk) / (std_gk + eps); then
  /// r_i = sum_k w_k z_ik and A_i = (r_i - mean_batch(r)) / (std_batch(r) + eps) (GDPO / MO-GRPO).
  normalize_then_sum,
};

/// TRL `scale_rewards` for sum_then_normalize: divide by the group std + eps, by the batch std +
/// eps (still centred on the group mean), or not at all (Dr. GRPO).
enum class scale_rewards { group, batch, none };

struct aggregate_options {
  aggregation mode = aggregation::sum_then_normalize;
  scale_rewards scale = scale_rewards::group;  ///< sum_then_normalize only; normalize_then_sum always scales
  float eps = 1e-4f;                           ///< added to the std (not inside the sqrt), as TRL
};

struct aggregate_result {
  std::vector<float> rewards;     ///< per sample: the weighted sum (of rewards, or of z-scores)
  std::vector<float> advantages;  ///< per sample
  /// Fraction of samples whose scaling std is zero (<= 1e-8, torch.isclose), TRL's
  /// `frac_reward_zero_std`: the group std for sum_then_normalize, the batch std otherwise.
  double frac_zero_std = 0.0;
};

namespace detail {

/// Mean and Bessel-corrected std (n - 1) of `count` values; std is 0 for fewer than 2 values (TRL
/// uses zeros for a group of one).
struct moments {
  double mean = 0.0;
  double std = 0.0;
};

template <class Get>
moments mean_std(std::size_t count, Get get) {
  moments m;
  if (count == 0) return m;
  double sum = 0.0;
  for (std::size_t i = 0; i < count; ++i) sum += get(i);
  m.mean = sum / static_cast<double>(count);
  if (count < 2) return m;
  double sq = 0.0;
  for (std::size_t i = 0; i < count; ++i) {
    const double d = get(i) - m.mean;
    sq += d * d;
  }
  m.std = std::sqrt(sq / static_cast<double>(count - 1));
  return m;
}

inline constexpr double zero_std_tolerance = 1e-8;

/// A NaN advantage (0 / 0 when eps = 0 and a group is constant) becomes 0, as in TRL.
inline float finite_or_zero(double v) { return std::isnan(v) ? 0.0f : static_cast<float>(v); }

template <class Groups>
aggregate_result aggregate(std::span<const std::optional<float>> rewards_per_func,
                           std::span<const float> weights, const Groups& groups,
                           const aggregate_options& options) {
  constexpr const char* fn = "xplor::reward::aggregate_rewards";
  const std::size_t k_funcs = weights.size();
  const std::size_t n = static_cast<std::size_t>(groups.num_elements());
  xplor::detail::require(k_funcs > 0, fn, "weights is empty; give one weight per reward function");
  for (std::size_t k = 0; k < k_funcs; ++k)
    xplor::detail::require(std::isfinite(weights[k]), fn, "weights[", k, "] = ", weights[k],
                           " is not finite");
  xplor::detail::require(rewards_per_func.size() == n * k_funcs, fn, "rewards_per_func has ",
                         rewards_per_func.size(), " values; expected ", n, " samples x ", k_funcs,
                         " functions = ", n * k_funcs);
  for (std::size_t i = 0; i < rewards_per_func.size(); ++i) {
    const std::optional<float>& v = rewards_per_func[i];
    xplor::detail::require(!v || std::isfinite(*v), fn, "rewards_per_func[", i / k_funcs, ", ", i % k_funcs,
                           "] = ", v ? *v : 0.0f,
                           " is not finite; return std::nullopt for a reward that does not apply");
  }
  xplor::detail::require(std::isfinite(options.eps) && options.eps >= 0.0f, fn, "eps = ", options.eps,
                         " must be finite and >= 0");
  const int mode = static_cast<int>(options.mode);
  const int scale = static_cast<int>(options.scale);
  xplor::detail::require(mode >= 0 && mode <= 1, fn, "mode = ", mode, " is not an aggregation (0..1)");
  xplor::detail::require(scale >= 0 && scale <= 2, fn, "scale = ", scale, " is not a scale_rewards (0..2)");

  aggregate_result result;
  result.rewards.assign(n, 0.0f);
  result.advantages.assign(n, 0.0f);
  std::vector<double> r(n, 0.0);
  const std::int64_t num_groups = groups.num_groups();
  std::size_t zero_std = 0;

  if (options.mode == aggregation::sum_then_normalize) {
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t k = 0; k < k_funcs; ++k)
        if (const auto& v = rewards_per_func[i * k_funcs + k]) r[i] += static_cast<double>(weights[k]) * *v;
    const moments batch = mean_std(n, [&](std::size_t i) { return r[i]; });
    for (std::int64_t g = 0; g < num_groups; ++g) {
      const std::size_t b = static_cast<std::size_t>(groups.begin(g));
      const std::size_t e = static_cast<std::size_t>(groups.end(g));
      const moments m = mean_std(e - b, [&](std::size_t i) { return r[b + i]; });
      for (std::size_t i = b; i < e; ++i) {
        double a = r[i] - m.mean;
        if (options.scale == scale_rewards::group) a /= m.std + options.eps;
        if (options.scale == scale_rewards::batch) a /= batch.std + options.eps;
        result.advantages[i] = finite_or_zero(a);
        if (m.std <= zero_std_tolerance) ++zero_std;
      }
    }
  } else {
    std::vector<double> present;
    for (std::int64_t g = 0; g < num_groups; ++g) {
      const std::size_t b = static_cast<std::size_t>(groups.begin(g));
      const std::size_t e = static_cast<std::size_t>(groups.end(g));
      for (std::size_t k = 0; k < k_funcs; ++k) {
        present.clear();
        for (std::size_t i = b; i < e; ++i)
          if (const auto& v = rewards_per_func[i * k_funcs + k]) present.push_back(*v);
        // TRL: nanstd of a single applicable value is NaN (0 * 1/0), so the z-score is NaN and
        // nansum drops it; a group of one has std 0 and z = 0. Either way: no contribution.
        if (present.size() < 2) continue;
        const moments m = mean_std(present.size(), [&](std::size_t i) { return present[i]; });
        for (std::size_t i = b; i < e; ++i)
          if (const auto& v = rewards_per_func[i * k_funcs + k])
            r[i] += static_cast<double>(weights[k]) * ((*v - m.mean) / (m.std + options.eps));
      }
    }
    const moments batch = mean_std(n, [&](std::size_t i) { return r[i]; });
    for (std::size_t i = 0; i < n; ++i)
      result.advantages[i] = finite_or_zero((r[i] - batch.mean) / (batch.std + options.eps));
    if (batch.std <= zero_std_tolerance) zero_std = n;
  }
  for (std::size_t i = 0; i < n; ++i) result.rewards[i] = static_cast<float>(r[i]);
  result.frac_zero_std = n == 0 ? 0.0 : static_cast<double>(zero_std) / static_cast<double>(n);
  return result;
}

}  // namespace detail

/// Combines K reward functions over the samples of `groups` (contiguous groups of completions of
/// one prompt). `rewards_per_func` is row-major [samples, K], nullopt where a function does not
/// apply; `weights` has one weight per function (TRL `reward_weights`; all 1 by default there).
/// Throws xplor::error on a size mismatch, a non-finite reward or weight, or a bad option.
inline aggregate_result aggregate_rewards(std::span<const std::optional<float>> rewards_per_func,
                                          std::span<const float> weights, const equal_groups& groups,
                                          const aggregate_options& options = {}) {
  return detail::aggregate(rewards_per_func, weights, groups, options);
}

/// aggregate_rewards over ragged groups (one group per prompt, sizes from a budget allocator).
inline aggregate_result aggregate_rewards(std::span<const std::optional<float>> rewards_per_func,
                                          std::span<const float> weights, const ragged_groups& groups,
                                          const aggregate_options& options = {}) {
  return detail::aggregate(rewards_per_func, weights, groups, options);
}

/// Named, weighted reward functions over samples of type `Sample` (a completion plus whatever the
/// functions need: prompt, gold answers, token count ...). A function returns std::nullopt where
/// it does not apply and must not return NaN or infinity (checked; the error names the function
/// and the sample).
template <class Sample>
class composite_reward {
 public:
  using function_type = std::function<std::optional<float>(const Sample&)>;

  /// Adds a function with its weight; returns *this for chaining.
  composite_reward& add(std::string name, function_type function, float weight = 1.0f) {
    constexpr const char* fn = "xplor::reward::composite_reward::add";
    xplor::detail::require(static_cast<bool>(function), fn, "function \"", name, "\" is empty");
    xplor::detail::require(std::isfinite(weight), fn, "weight = ", weight, " of function \"", name,
                           "\" is not finite");
    names_.push_back(std::move(name));
    functions_.push_back(std::move(function));
    weights_.push_back(weight);
    return *this;
  }

  std::size_t size() const { return functions_.size(); }
  const std::vector<std::string>& names() const { return names_; }
  std::span<const float> weights() const { return weights_; }

  /// Every function on every sample: row-major [samples, size()].
  std::vector<std::optional<float>> evaluate(std::span<const Sample> samples) const {
    constexpr const char* fn = "xplor::reward::composite_reward::evaluate";
    xplor::detail::require(!functions_.empty(), fn, "no reward functions; add() at least one");
    std::vector<std::optional<float>> out;
    out.reserve(samples.size() * functions_.size());
    for (std::size_t i = 0; i < samples.size(); ++i) {
      for (std::size_t k = 0; k < functions_.size(); ++k) {
        const std::optional<float> v = functions_[k](samples[i]);
        xplor::detail::require(!v || std::isfinite(*v), fn, "function \"", names_[k], "\" returned ",
                               v ? *v : 0.0f, " for samples[", i,
                               "]; return std::nullopt for a reward that does not apply");
        out.push_back(v);
      }
    }
    return out;
  }

  /// The weighted sum per sample, not-applicable terms left out (0 when none applies).
  std::vector<float> sum(std::span<const Sample> samples) const {
    const std::vector<std::optional<float>> values = evaluate(samples);
    std::vector<float> out(samples.size(), 0.0f);
    for (std::size_t i = 0; i < samples.size(); ++i) {
      double s = 0.0;
      for (std::size_t k = 0; k < functions_.size(); ++k)
        if (const auto& v = values[i * functions_.size() + k]) s += static_cast<double>(weights_[k]) * *v;
      out[i] = static_cast<float>(s);
    }
    return out;
  }

  /// Evaluates and aggregates (aggregate_rewards) over `groups` (equal_groups or ragged_groups).
  template <class Groups>
  aggregate_result operator()(std::span<const Sample> samples, const Groups& groups,
                              const aggregate_options& options = {}) const {
    xplor::detail::require(static_cast<std::int64_t>(samples.size()) == groups.num_elements(),
                           "xplor::reward::composite_reward", "samples has ", samples.size(),
                           " elements but the groups cover ", groups.num_elements());
    const std::vector<std::optional<float>> values = evaluate(samples);
    return aggregate_rewards(values, weights_, groups, options);
  }

 private:
  std::vector<std::string> names_;
  std::vector<function_type> functions_;
  std::vector<float> weights_;
};

/// What overlong_penalty does past max_length.
enum class overlong_mode {
  /// The DAPO reference code (verl `DAPORewardManager`): min(-(L - (L_max - L_buf)) / L_buf * f, 0)
  /// everywhere, so the penalty keeps decreasing linearly past L_max (-f at L_max, -2f at
  /// L_max + L_buf). verl never reaches that region because generation stops at L_max.
  linear,
  /// DAPO paper Eq. 13 and TRL `get_soft_overlong_punishment`: -f for every L > L_max.
  clipped,
};

/// DAPO's soft overlong penalty for a response of `length` tokens, added to the reward (rl-methods
/// section 0): 0 for length <= max_length - buffer_length, then linear down to -factor at
/// max_length, then per `mode`. Requires 0 < buffer_length <= max_length (verl asserts the same),
/// length >= 0 and a finite factor >= 0.
inline float overlong_penalty(std::int64_t length, std::int64_t max_length, std::int64_t buffer_length,
                              float factor = 1.0f, overlong_mode mode = overlong_mode::linear) {
  constexpr const char* fn = "xplor::reward::overlong_penalty";
  xplor::detail::require(length >= 0, fn, "length = ", length, " is negative");
  xplor::detail::require(max_length > 0, fn, "max_length = ", max_length, " must be positive");
  xplor::detail::require(buffer_length > 0, fn, "buffer_length = ", buffer_length, " must be positive");
  xplor::detail::require(buffer_length <= max_length, fn, "buffer_length = ", buffer_length,
                         " exceeds max_length = ", max_length);
  xplor::detail::require(std::isfinite(factor) && factor >= 0.0f, fn, "factor = ", factor,
                         " must be finite and >= 0");
  const int m = static_cast<int>(mode);
  xplor::detail::require(m >= 0 && m <= 1, fn, "mode = ", m, " is not an overlong_mode (0..1)");
  if (mode == overlong_mode::clipped && length > max_length) return -factor;
  const double exceed = static_cast<double>(length - (max_length - buffer_length));
  const double penalty = -exceed / static_cast<double>(buffer_length) * static_cast<double>(factor);
  return static_cast<float>(penalty < 0.0 ? penalty : 0.0);
}

}  // namespace xplor::reward
