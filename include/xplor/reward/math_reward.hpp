// The verifiable reward in one call: extract each response's final answer, check it against the
// gold answer exactly (check_answer), and map the result to a reward, keeping the verdict so a
// trainer can audit what was paid and why.
#pragma once

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/exec.hpp"
#include "xplor/reward/verify.hpp"

namespace xplor::reward {

/// Where a response's final answer is read.
enum class answer_extractor {
  boxed,               ///< the last outermost \boxed{} (MATH-style, DeepSeek-R1 and verl prompts)
  boxed_or_answer_is,  ///< the box, else the text after the last "answer is"
  gsm8k,               ///< the text after the last "####" (GSM8K's reference format)
};

/// Rewards per result; the defaults are the 1 / 0 of verl's and TRL's math rewards.
struct math_reward_options {
  float correct = 1.0f;
  float incorrect = 0.0f;  ///< an answer that is not equivalent (any reason but no_answer)
  float no_answer = 0.0f;  ///< nothing could be extracted
  answer_extractor extract = answer_extractor::boxed;
  /// Host threads over the responses (OpenMP; 0: OMP_NUM_THREADS). The strings stay on the host;
  /// hand the rewards or outcome codes to the device afterwards (reward/batch.hpp).
  int threads = 1;
};

/// The final answer of `response` by `how`, or nullopt.
inline std::optional<std::string> extract_answer(std::string_view response, answer_extractor how) {
  switch (how) {
    case answer_extractor::boxed:
      return extract_boxed(response);
    case answer_extractor::boxed_or_answer_is:
      if (auto b = extract_boxed(response)) return b;
      return extract_answer_is(response);
    case answer_extractor::gsm8k:
      return extract_gsm8k(response);
  }
  return std::nullopt;
}

/// out[i] = the reward of responses[i] against golds[i]; verdicts[i] (optional) receives the
/// verdict (reason no_answer when nothing was extracted). Throws xplor::error when the sizes
/// differ or a reward value is not finite.
inline void math_reward(std::span<const std::string> responses, std::span<const std::string> golds,
                        std::span<float> out, const math_reward_options& options = {},
                        std::span<verdict> verdicts = {}) {
  constexpr const char* fn = "xplor::reward::math_reward";
  xplor::detail::require(golds.size() == responses.size(), fn, "golds has ", golds.size(), " elements for ",
                         responses.size(), " responses");
  xplor::detail::require(out.size() == responses.size(), fn, "out has ", out.size(), " elements for ",
                         responses.size(), " responses");
  xplor::detail::require(verdicts.empty() || verdicts.size() == responses.size(), fn, "verdicts has ",
                         verdicts.size(), " elements for ", responses.size(), " responses");
  xplor::detail::require(
      std::isfinite(options.correct) && std::isfinite(options.incorrect) && std::isfinite(options.no_answer),
      fn, "rewards (", options.correct, ", ", options.incorrect, ", ", options.no_answer, ") must be finite");
  xplor::detail::require(options.threads >= 0, fn, "threads = ", options.threads, " is negative");
  // An exception must not leave an OpenMP region: each response's is kept, the first rethrown.
  std::vector<std::exception_ptr> errors(responses.size());
  const auto one = [&](std::int64_t k) {
    const auto i = static_cast<std::size_t>(k);
    try {
      const std::optional<std::string> answer = extract_answer(responses[i], options.extract);
      const verdict v = answer ? check_answer(*answer, golds[i]) : verdict{false, verdict_reason::no_answer};
      out[i] = v.equivalent ? options.correct : answer ? options.incorrect : options.no_answer;
      if (!verdicts.empty()) verdicts[i] = v;
    } catch (...) {
      errors[i] = std::current_exception();
    }
  };
  // A check costs far more than the loop's overhead: any batch of two or more is worth threads.
  for_each_index(cpu_t{options.threads}, static_cast<std::int64_t>(responses.size()), one, 1 << 20);
  for (const std::exception_ptr& e : errors)
    if (e) std::rethrow_exception(e);
}

}  // namespace xplor::reward
