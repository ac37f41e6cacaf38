// Several weighted reward functions evaluated per sample with TRL's conventions (GRPOConfig
// `reward_weights`): a function returns std::optional<float>, and std::nullopt ("not applicable",
// TRL's None) leaves it out of that sample's sum. Turning the [samples, functions] values into
// advantages (TRL `multi_objective_aggregation`) is xplor::rl::aggregate_rewards. Also DAPO's
// soft overlong penalty. See docs/reward.md.
#pragma once

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"

namespace xplor::reward {

/// A reward function over samples of type Sample: called with a const Sample&, it returns a
/// reward, or std::nullopt where it does not apply (anything convertible to std::optional<float>).
template <class F, class Sample>
concept reward_function = std::invocable<const F&, const Sample&> &&
    std::convertible_to<std::invoke_result_t<const F&, const Sample&>, std::optional<float>>;

/// Named, weighted reward functions over samples of type `Sample` (a completion plus whatever the
/// functions need: prompt, gold answers, token count ...). A function returns std::nullopt where
/// it does not apply and must not return NaN or infinity (checked; the error names the function
/// and the sample).
template <class Sample>
class composite_reward {
 public:
  using function_type = std::function<std::optional<float>(const Sample&)>;

  /// Adds a function with its weight; returns *this for chaining.
  template <reward_function<Sample> F>
  composite_reward& add(std::string name, F function, float weight = 1.0f) {
    constexpr const char* fn = "xplor::reward::composite_reward::add";
    function_type wrapped = std::move(function);
    xplor::detail::require(static_cast<bool>(wrapped), fn, "function \"", name, "\" is empty");
    xplor::detail::require(std::isfinite(weight), fn, "weight = ", weight, " of function \"", name,
                           "\" is not finite");
    names_.push_back(std::move(name));
    functions_.push_back(std::move(wrapped));
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

/// DAPO's soft overlong penalty for a response of `length` tokens, added to the reward (docs/methods.md
/// §0): 0 for length <= max_length - buffer_length, then linear down to -factor at
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
