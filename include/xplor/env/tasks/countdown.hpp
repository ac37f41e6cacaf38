// Countdown: a single-turn verifiable task (as in TinyZero / Reasoning Gym): reach a target from
// given numbers with + - * / and parentheses, each number used at most once.
//
// Ids (docs/env_tasks.md): `math:Countdown-v0-<spec>`, <spec> a level or key<value> tokens:
//   easy   = n3-max10     three numbers in [1, 10]
//   medium = n4-max25     four numbers in [1, 25]
//   hard   = n5-max100    five numbers in [1, 100]
//   n<2..6>  how many numbers; max<2..1000>  the largest number. Example: `math:Countdown-v0-n4-max50`.
//
// Instances are solvable by construction: reset(seed) draws the numbers (Philox, keyed by the
// seed) and combines all of them into a random expression tree, choosing at each node two
// remaining values and an operator that keeps every intermediate value a positive integer ('-'
// takes the larger minus the smaller, '/' only divides exactly). The tree's value is the target
// when it lies in [1, max_target] and differs from every given number; otherwise the tree is
// redrawn (up to 256 times, then the target falls back to the sum of the numbers). The tree is
// returned in info["solution"].
//
// Answer: the expression inside the last \boxed{} of the response; text from the first '=' on is
// ignored (so "\boxed{(3 + 7) * 2 = 20}" is read as "(3 + 7) * 2"). It is accepted when it holds
// only digits, whitespace, + - * / ( ) (no '**', '^' or decimals), each integer literal in it is
// one of the given numbers (a number given once may be used once), and xplor::env::evaluate gives
// exactly the target (intermediate fractions are fine). Reward: `correct_reward` = +1 when
// accepted, `wrong_reward` = 0 otherwise; info["error"] says why an answer was rejected. The step
// always terminates.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/env/env.hpp"
#include "xplor/env/tasks/common.hpp"
#include "xplor/env/tools/calculator.hpp"
#include "xplor/reward/verify.hpp"

namespace xplor::env {

struct countdown_options {
  int count = 3;          // how many numbers are given, 2..6
  int max_number = 10;    // numbers are drawn uniformly in [1, max_number], 2..1000
  int max_target = 1000;  // targets lie in [1, max_target] (unless the sum fallback is taken)
  float correct_reward = 1.0f;
  float wrong_reward = 0.0f;
};

/// The options of a level ("easy", "medium", "hard") or key<value> spec ("n4-max25").
inline countdown_options countdown_spec(std::string_view spec, std::string_view id = {}) {
  constexpr const char* fn = "xplor::env::countdown_spec";
  countdown_options o;
  if (spec == "easy") return o;
  if (spec == "medium") {
    o.count = 4;
    o.max_number = 25;
    return o;
  }
  if (spec == "hard") {
    o.count = 5;
    o.max_number = 100;
    return o;
  }
  if (spec.empty()) xplor::detail::fail(fn, "empty spec in id '", id, "' (levels: easy, medium, hard)");
  for (const detail::id_param& p : detail::split_id_params(spec, fn, id)) {
    if (p.key == "n") {
      o.count = detail::id_param_int(p, 2, 6, fn, id);
    } else if (p.key == "max") {
      o.max_number = detail::id_param_int(p, 2, 1000, fn, id);
    } else {
      xplor::detail::fail(fn, "unknown parameter '", p.key, "' in id '", id,
                          "' (known: n, max; levels: easy, medium, hard)");
    }
  }
  return o;
}

/// Checks a countdown answer expression against the numbers and the target. Returns the empty
/// string when it is accepted, otherwise the reason it is not.
inline std::string countdown_check(std::string_view expr, const std::vector<std::int64_t>& numbers,
                                   std::int64_t target) {
  if (const std::size_t eq = expr.find('='); eq != std::string_view::npos) expr = expr.substr(0, eq);
  std::vector<bool> used(numbers.size(), false);
  for (std::size_t i = 0; i < expr.size();) {
    const char c = expr[i];
    if (c >= '0' && c <= '9') {
      std::size_t j = i;
      while (j < expr.size() && expr[j] >= '0' && expr[j] <= '9') ++j;
      const std::optional<std::int64_t> v = detail::parse_plain_integer(expr.substr(i, j - i));
      if (!v) {
        std::string why = "the number ";
        why += expr.substr(i, j - i);
        why += " is too long";
        return why;
      }
      bool found = false;
      for (std::size_t k = 0; k < numbers.size() && !found; ++k)
        if (!used[k] && numbers[k] == *v) used[k] = found = true;
      if (!found) {
        std::string why = "the number ";
        why += std::to_string(*v);
        why += " is not among the given numbers (or is used too often)";
        return why;
      }
      i = j;
      continue;
    }
    const bool allowed = c == '+' || c == '-' || c == '*' || c == '/' || c == '(' || c == ')' || c == ' ' ||
                         c == '\t' || c == '\n' || c == '\r';
    if (!allowed || (c == '*' && i + 1 < expr.size() && expr[i + 1] == '*')) {
      std::string why = "the character '";
      why += c;
      why += "' at position ";
      why += std::to_string(i);
      why += " is not allowed (only digits, + - * / and parentheses)";
      return why;
    }
    ++i;
  }
  const calc_result r = evaluate(expr);
  if (!r.ok) {
    std::string why = "the expression does not evaluate: ";
    why += r.error;
    return why;
  }
  if (r.value != rational{target, 1}) {
    std::string why = "the expression equals ";
    why += r.value.to_string();
    why += ", not ";
    why += std::to_string(target);
    return why;
  }
  return {};
}

class countdown final : public single_turn_task {
 public:
  static constexpr std::uint64_t stream = 0x436f756e74ull;  // "Count"
  static constexpr std::string_view id_prefix = "math:Countdown-v0";

  explicit countdown(countdown_options options = {}, std::string id = "math:Countdown-v0-easy")
      : options_(options), id_(std::move(id)) {
    constexpr const char* fn = "xplor::env::countdown";
    xplor::detail::require(options_.count >= 2 && options_.count <= 6, fn, "count = ", options_.count,
                           " is outside [2, 6]");
    xplor::detail::require(options_.max_number >= 2 && options_.max_number <= 1000, fn,
                           "max_number = ", options_.max_number, " is outside [2, 1000]");
    xplor::detail::require(options_.max_target >= 1, fn, "max_target = ", options_.max_target, " is below 1");
  }

  /// Builds the environment of an id `math:Countdown-v0-<spec>`.
  static std::unique_ptr<environment> from_id(std::string_view id) {
    if (!id.starts_with(id_prefix) || id.size() < id_prefix.size() + 2 || id[id_prefix.size()] != '-')
      xplor::detail::fail("xplor::env::countdown::from_id", "id '", id, "' is not ", id_prefix,
                          "-<spec> (levels: easy, medium, hard, or e.g. n4-max25)");
    return std::make_unique<countdown>(countdown_spec(id.substr(id_prefix.size() + 1), id), std::string(id));
  }

  reset_result reset(std::uint64_t seed) override {
    philox_stream gen(seed, stream);
    numbers_.clear();
    for (int i = 0; i < options_.count; ++i)
      numbers_.push_back(detail::uniform_int(gen, 1, options_.max_number));
    bool found = false;
    for (int attempt = 0; attempt < 256 && !found; ++attempt) {
      std::vector<std::int64_t> values = numbers_;
      std::vector<std::string> exprs;
      for (std::int64_t v : numbers_) exprs.push_back(std::to_string(v));
      while (values.size() > 1) {
        const auto n = static_cast<std::int64_t>(values.size());
        const auto i = static_cast<std::size_t>(detail::uniform_int(gen, 0, n - 1));
        auto j = static_cast<std::size_t>(detail::uniform_int(gen, 0, n - 2));
        if (j >= i) ++j;
        std::int64_t a = values[i], b = values[j];
        std::string ea = exprs[i], eb = exprs[j];
        if (a < b) {
          std::swap(a, b);
          std::swap(ea, eb);
        }
        char ops[4];
        int n_ops = 0;
        ops[n_ops++] = '+';
        ops[n_ops++] = '*';
        if (a != b) ops[n_ops++] = '-';
        if (b > 1 && a % b == 0) ops[n_ops++] = '/';
        const char op = ops[detail::uniform_int(gen, 0, n_ops - 1)];
        const std::int64_t v = op == '+' ? a + b : op == '*' ? a * b : op == '-' ? a - b : a / b;
        std::string e = "(";
        e += ea;
        e += ' ';
        e += op;
        e += ' ';
        e += eb;
        e += ')';
        // Remove i and j (larger index first), append the combination.
        const std::size_t hi = i > j ? i : j, lo = i > j ? j : i;
        values.erase(values.begin() + static_cast<std::ptrdiff_t>(hi));
        values.erase(values.begin() + static_cast<std::ptrdiff_t>(lo));
        exprs.erase(exprs.begin() + static_cast<std::ptrdiff_t>(hi));
        exprs.erase(exprs.begin() + static_cast<std::ptrdiff_t>(lo));
        values.push_back(v);
        exprs.push_back(std::move(e));
      }
      const std::int64_t t = values[0];
      bool is_given = false;
      for (std::int64_t x : numbers_) is_given = is_given || x == t;
      if (t >= 1 && t <= options_.max_target && !is_given) {
        target_ = t;
        solution_ = exprs[0].substr(1, exprs[0].size() - 2);  // drop the outer parentheses
        found = true;
      }
    }
    if (!found) {
      target_ = 0;
      solution_.clear();
      for (std::int64_t x : numbers_) {
        target_ += x;
        if (!solution_.empty()) solution_ += " + ";
        solution_ += std::to_string(x);
      }
    }
    begin_episode();
    std::string obs = "Using the numbers ";
    obs += numbers_text(", ");
    obs +=
        " (each at most once; you need not use all of them), the operations + - * / and parentheses, write "
        "an "
        "expression whose value is exactly ";
    obs += std::to_string(target_);
    obs += ". Put only the expression inside \\boxed{}, e.g. \\boxed{(1 + 2) * 3}.";
    return {std::move(obs), info()};
  }

  std::unique_ptr<environment> clone() const override { return std::make_unique<countdown>(*this); }
  std::string id() const override { return id_; }

  const countdown_options& options() const { return options_; }
  const std::vector<std::int64_t>& numbers() const { return numbers_; }
  std::int64_t target() const { return target_; }
  /// An expression reaching the target (the generating tree).
  const std::string& solution() const { return solution_; }

 private:
  std::string grade(std::string_view boxed) const override {
    return countdown_check(boxed, numbers_, target_);
  }
  std::string missing_answer_text() const override { return "no \\boxed{} expression in the response"; }
  float correct_reward() const override { return options_.correct_reward; }
  float wrong_reward() const override { return options_.wrong_reward; }
  info_map episode_info() const override { return info(); }
  std::string numbers_text(std::string_view sep) const {
    std::string s;
    for (std::size_t i = 0; i < numbers_.size(); ++i) {
      if (i > 0) s += sep;
      s += std::to_string(numbers_[i]);
    }
    return s;
  }
  info_map info() const {
    return {{"numbers", numbers_text(" ")}, {"target", std::to_string(target_)}, {"solution", solution_}};
  }

  countdown_options options_;
  std::string id_;
  std::vector<std::int64_t> numbers_;
  std::int64_t target_ = 0;
  std::string solution_;
};

static_assert(environment_like<countdown>);

}  // namespace xplor::env
