// Chain-of-thought scaffolds for SFT targets ("Debunk the Myth of SFT Generalization", Lin et
// al., arXiv 2510.00237: reasoning-trace supervision is what makes SFT generalise to harder
// instances). A target is the answer alone or a trace of steps (from the task's own solver)
// followed by the answer, in the paper's tag format or in the \boxed{} format of xplor's
// flagship example and of answer checkers (reward/answer.hpp extracts the last box).
#pragma once

#include <span>
#include <string>
#include <string_view>

#include "xplor/core/error.hpp"

namespace xplor::data {

enum class cot_style {
  tags,   // "<think>s1 s2</think> <answer>A</answer>"  (the paper's Qwen-style format)
  boxed,  // "s1 s2 \boxed{A}"                         (the flagship's, for \boxed{} checkers)
};

struct cot_options {
  cot_style style = cot_style::tags;
  bool with_trace = true;            // false: the answer-only target
  std::string step_separator = " ";  // between steps (and before \boxed{} in the boxed style)
};

/// The SFT target for `answer` with the reasoning `steps` (ignored when options.with_trace is false).
inline std::string sft_target(std::span<const std::string> steps, std::string_view answer,
                              const cot_options& options = {}) {
  constexpr const char* fn = "xplor::data::sft_target";
  xplor::detail::require(!answer.empty(), fn, "the answer is empty");
  xplor::detail::require(!options.with_trace || !steps.empty(), fn, "with_trace needs at least one step");
  std::string trace;
  if (options.with_trace)
    for (std::size_t k = 0; k < steps.size(); ++k) {
      if (k > 0) trace += options.step_separator;
      trace += steps[k];
    }
  if (options.style == cot_style::tags) {
    std::string out;
    if (options.with_trace) out += "<think>" + trace + "</think> ";
    return out + "<answer>" + std::string(answer) + "</answer>";
  }
  std::string out = options.with_trace ? trace + options.step_separator : std::string();
  return out + "\\boxed{" + std::string(answer) + "}";
}

}  // namespace xplor::data
