// TruthRL rewards (arXiv 2509.25760; reward code facebookresearch/TruthRL,
// training/verl/verl/utils/reward_score/truthrl_qa.py): a response is classified as correct, an
// abstention ("I don't know"), incorrect, or without a \boxed{} answer; the ternary reward then
// scores an abstention (0) above a hallucination (-1). Also the binary and knowledge-enhanced
// (out-of-knowledge) variants and the truthfulness metrics. See docs/reward.md.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/reward/outcome.hpp"
#include "xplor/reward/verify.hpp"

namespace xplor::reward {

namespace detail {
/// Whether an answer is plain text that SQuAD matching may decide: at least two letters, no
/// digit, and none of the characters that carry math meaning (a hyphen only inside a word).
inline bool is_text_answer(std::string_view s) {
  std::size_t letters = 0;
  for (std::size_t k = 0; k < s.size(); ++k) {
    const char c = s[k];
    if (is_alpha(c) || static_cast<unsigned char>(c) >= 0x80) {
      ++letters;
    } else if (c == '-') {
      if (k == 0 || k + 1 == s.size() || !is_alpha(s[k - 1]) || !is_alpha(s[k + 1])) return false;
    } else if (is_digit(c) || std::string_view("+*/^_=<>()[]{}\\|%$&~").find(c) != std::string_view::npos) {
      return false;
    }
  }
  return letters >= 2;
}

inline void check_outcome(outcome o, std::string_view fn) {
  const int v = static_cast<int>(o);
  xplor::detail::require(v >= 0 && v <= 3, fn, "o = ", v, " is not an outcome (0..3)");
}
}  // namespace detail

/// TruthRL's ternary reward (`..._ternary`): correct +1, abstain 0, incorrect -1, no_answer -1.
inline float ternary_reward(outcome o) {
  detail::check_outcome(o, "xplor::reward::ternary_reward");
  switch (o) {
    case outcome::correct:
      return 1.0f;
    case outcome::abstain:
      return 0.0f;
    default:
      return -1.0f;
  }
}

/// The binary reward of vanilla RL (`..._binary`): correct +1, everything else -1.
inline float binary_reward(outcome o) {
  detail::check_outcome(o, "xplor::reward::binary_reward");
  return o == outcome::correct ? 1.0f : -1.0f;
}

/// Knowledge-enhanced ternary reward (`..._ternary_OOK`). On an out-of-knowledge question (no
/// correct answer in 256 samples of the base model) an abstention gets +1 and every other outcome
/// -1 (a correct answer too, as in the reference code: it is treated as a lucky guess); on other
/// questions it is the ternary reward.
inline float ternary_ook_reward(outcome o, bool out_of_knowledge) {
  detail::check_outcome(o, "xplor::reward::ternary_ook_reward");
  if (out_of_knowledge) return o == outcome::abstain ? 1.0f : -1.0f;
  return ternary_reward(o);
}

/// Knowledge-enhanced binary reward (`..._binary_OOK`): on an out-of-knowledge question an
/// abstention gets +1 and everything else -1; on other questions it is the binary reward.
inline float binary_ook_reward(outcome o, bool out_of_knowledge) {
  detail::check_outcome(o, "xplor::reward::binary_ook_reward");
  if (out_of_knowledge) return o == outcome::abstain ? 1.0f : -1.0f;
  return binary_reward(o);
}

/// The reward variants of TruthRL's Table (docs/methods.md §4.3), for config-driven use.
enum class reward_variant { ternary, binary, ternary_ook, binary_ook };

/// The reward of `variant` for `o`; `out_of_knowledge` only matters for the _ook variants.
inline float truth_reward(outcome o, reward_variant variant, bool out_of_knowledge = false) {
  switch (variant) {
    case reward_variant::ternary:
      return ternary_reward(o);
    case reward_variant::binary:
      return binary_reward(o);
    case reward_variant::ternary_ook:
      return ternary_ook_reward(o, out_of_knowledge);
    case reward_variant::binary_ook:
      return binary_ook_reward(o, out_of_knowledge);
  }
  xplor::detail::fail("xplor::reward::truth_reward", "variant = ", static_cast<int>(variant),
                      " is not a reward_variant (0..3)");
}

/// A judge for answers that match no gold answer by rule (TruthRL calls an LLM): returns whether
/// `answer` (the trimmed content of the last box) is correct for `gold` (as given).
using judge_fn = std::function<bool(std::string_view answer, std::string_view gold)>;

struct classify_options {
  /// Phrases that mark an abstention when they occur in the SQuAD-normalised answer. Each phrase
  /// is SQuAD-normalised before matching, so "I don't know" and "i dont know" are the same; a
  /// phrase that normalises to nothing is an error.
  std::vector<std::string> abstention_phrases{"i dont know"};
  /// TruthRL's training reward treats an answer containing "invalid question" (CRAG's false-premise
  /// label) as a miss scored -1 in every variant (docs/methods.md §4.2 item 3), so it is classified
  /// `incorrect` without matching or judging. false: judge it like any other answer (as the
  /// TruthRL evaluation script does, where it is correct when the gold is "invalid question").
  bool invalid_question_is_miss = true;
  /// Called for each gold answer in turn when no rule matched, until one returns true; empty:
  /// unmatched answers are incorrect (TruthRL's exact-match-only `_ternary_EM`).
  judge_fn judge = {};
};

/// Classifies a response against its gold answers (aliases), in this order:
/// 1. no \boxed{} answer (extract_boxed) -> no_answer;
/// 2. the SQuAD-normalised answer contains an abstention phrase ("i dont know") -> abstain;
/// 3. it contains "invalid question" (when options.invalid_question_is_miss) -> incorrect;
/// 4. an empty answer (`\boxed{}`, `\boxed{  }`) -> incorrect, without calling the judge;
/// 5. answers_equivalent to a gold answer (the exact math verifier), or, when both are plain
///    text answers (detail::is_text_answer: letters, no digits, no signs, brackets or
///    operators), equal to it after SQuAD normalisation (non-empty: "the" does not match "a")
///    -> correct;
/// 6. options.judge returns true for some gold answer -> correct;
/// 7. otherwise incorrect.
/// Throws xplor::error when gold_answers is empty or an abstention phrase normalises to nothing.
inline outcome classify_response(std::string_view response, std::span<const std::string> gold_answers,
                                 const classify_options& options) {
  constexpr const char* fn = "xplor::reward::classify_response";
  xplor::detail::require(!gold_answers.empty(), fn, "gold_answers is empty; a question needs at least one");
  const std::optional<std::string> boxed = extract_boxed(response);
  if (!boxed) return outcome::no_answer;
  const std::string norm = squad_normalize(*boxed);
  for (std::size_t k = 0; k < options.abstention_phrases.size(); ++k) {
    const std::string phrase = squad_normalize(options.abstention_phrases[k]);
    xplor::detail::require(!phrase.empty(), fn, "abstention_phrases[", k, "] = \"",
                           options.abstention_phrases[k], "\" is empty after SQuAD normalisation");
    if (norm.find(phrase) != std::string::npos) return outcome::abstain;
  }
  if (options.invalid_question_is_miss && norm.find("invalid question") != std::string::npos)
    return outcome::incorrect;
  const std::string_view answer = detail::trim(*boxed);
  if (answer.empty()) return outcome::incorrect;
  // SQuAD normalisation deletes signs, brackets and operators ("[3,13]" would match "(3,13]",
  // "2+9\sqrt{3}" "2-9\sqrt{3}"), so it only decides between two short text answers.
  const bool text = detail::is_text_answer(answer);
  for (const std::string& gold : gold_answers) {
    if (answers_equivalent(answer, gold)) return outcome::correct;
    if (text && detail::is_text_answer(gold) && !norm.empty() && norm == squad_normalize(gold))
      return outcome::correct;
  }
  if (options.judge) {
    for (const std::string& gold : gold_answers) {
      if (detail::trim(gold).empty()) continue;
      if (options.judge(answer, gold)) return outcome::correct;
    }
  }
  return outcome::incorrect;
}

/// classify_response with the default options (abstention "i dont know", no judge).
inline outcome classify_response(std::string_view response, std::span<const std::string> gold_answers) {
  return classify_response(response, gold_answers, classify_options{});
}

/// classify_response with the default options and a judge.
inline outcome classify_response(std::string_view response, std::span<const std::string> gold_answers,
                                 judge_fn judge) {
  classify_options options;
  options.judge = std::move(judge);
  return classify_response(response, gold_answers, options);
}

/// Counts of outcomes and TruthRL's metrics (docs/methods.md §4.1): accuracy, abstention ("missing")
/// rate, hallucination rate (incorrect + no_answer, "include no boxed"), hallucination excluding
/// no-box responses, and truthfulness T = accuracy - hallucination = (2 correct + abstain - n) / n.
/// Rates of an empty accumulator are 0.
struct truth_metrics {
  std::int64_t correct = 0;
  std::int64_t abstain = 0;
  std::int64_t incorrect = 0;
  std::int64_t no_answer = 0;

  void add(outcome o) {
    detail::check_outcome(o, "xplor::reward::truth_metrics::add");
    switch (o) {
      case outcome::correct:
        ++correct;
        break;
      case outcome::abstain:
        ++abstain;
        break;
      case outcome::incorrect:
        ++incorrect;
        break;
      case outcome::no_answer:
        ++no_answer;
        break;
    }
  }
  truth_metrics& operator+=(const truth_metrics& other) {
    correct += other.correct;
    abstain += other.abstain;
    incorrect += other.incorrect;
    no_answer += other.no_answer;
    return *this;
  }
  std::int64_t total() const { return correct + abstain + incorrect + no_answer; }
  double accuracy() const { return rate(correct); }
  double abstention_rate() const { return rate(abstain); }
  double no_answer_rate() const { return rate(no_answer); }
  double hallucination_rate() const { return rate(incorrect + no_answer); }
  double hallucination_rate_excluding_no_answer() const { return rate(incorrect); }
  double truthfulness() const { return rate(correct - incorrect - no_answer); }

 private:
  double rate(std::int64_t count) const {
    const std::int64_t n = total();
    return n == 0 ? 0.0 : static_cast<double>(count) / static_cast<double>(n);
  }
};

}  // namespace xplor::reward
