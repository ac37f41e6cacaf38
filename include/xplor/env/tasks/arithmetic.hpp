// Arithmetic: a single-turn verifiable task, "compute 482 - 17 * 903", with a difficulty set by
// the number of digits per operand, the number of operands and the operators allowed.
//
// Ids (the scheme shared by the built-in tasks, docs/env_tasks.md): `math:Arithmetic-v0-<spec>`
// where <spec> is a level name or a '-'-separated list of key<value> tokens:
//   easy   = d2-n2-ops+-      two 2-digit operands, + and -
//   medium = d3-n3-ops+-*     three 3-digit operands, + - *
//   hard   = d4-n4-ops+-*/    four 4-digit operands, + - * / (exact fractions)
//   d<1..9>  digits per operand; n<2..8>  operands (d * n <= 18); ops<chars>  a non-empty subset
//   of "+-*/", always the last token. Missing tokens take the defaults of arithmetic_options.
//   Example: `math:Arithmetic-v0-d3-n2-ops*`.
//
// Episode: reset(seed) draws the operands (uniform d-digit integers; 1-9 for d = 1, so there is
// never a division by zero) and operators from a Philox stream keyed by the seed; the expression
// uses standard precedence and is evaluated exactly by xplor::env::evaluate. The answer is the
// content of the last \boxed{} of the response, compared with xplor::reward::answers_equivalent
// (so 7/2, \frac{7}{2}, 3.5 and 14/4 all match 7/2). Reward: `correct_reward` = +1 when
// equivalent, `wrong_reward` = 0 otherwise (wrong, missing or malformed answer); the step always
// terminates. info: "answer" (the exact value, "n" or "n/d"), "expression"; after the step also
// "extracted" (when a box was found) and "correct" ("1"/"0").
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/env/env.hpp"
#include "xplor/env/tasks/common.hpp"
#include "xplor/env/tools/calculator.hpp"
#include "xplor/reward/verify.hpp"

namespace xplor::env {

struct arithmetic_options {
  int digits = 2;          // digits per operand, 1..9
  int terms = 2;           // operands, 2..8, with digits * terms <= 18 (no overflow)
  std::string ops = "+-";  // operators to draw from: a non-empty subset of "+-*/"
  float correct_reward = 1.0f;
  float wrong_reward = 0.0f;
};

/// The options of a level ("easy", "medium", "hard") or key<value> spec ("d3-n2-ops+-*").
inline arithmetic_options arithmetic_spec(std::string_view spec, std::string_view id = {}) {
  constexpr const char* fn = "xplor::env::arithmetic_spec";
  arithmetic_options o;
  if (spec == "easy") return o;
  if (spec == "medium") {
    o.digits = 3;
    o.terms = 3;
    o.ops = "+-*";
    return o;
  }
  if (spec == "hard") {
    o.digits = 4;
    o.terms = 4;
    o.ops = "+-*/";
    return o;
  }
  if (spec.empty()) xplor::detail::fail(fn, "empty spec in id '", id, "' (levels: easy, medium, hard)");
  for (const detail::id_param& p : detail::split_id_params(spec, fn, id)) {
    if (p.key == "d") {
      o.digits = detail::id_param_int(p, 1, 9, fn, id);
    } else if (p.key == "n") {
      o.terms = detail::id_param_int(p, 2, 8, fn, id);
    } else if (p.key == "ops") {
      o.ops = p.value;
    } else {
      xplor::detail::fail(fn, "unknown parameter '", p.key, "' in id '", id,
                          "' (known: d, n, ops; levels: easy, medium, hard)");
    }
  }
  return o;
}

class arithmetic final : public single_turn_task {
 public:
  static constexpr std::uint64_t stream = 0x417269746844ull;  // "AritH"
  static constexpr std::string_view id_prefix = "math:Arithmetic-v0";

  explicit arithmetic(arithmetic_options options = {}, std::string id = "math:Arithmetic-v0-easy")
      : options_(std::move(options)), id_(std::move(id)) {
    constexpr const char* fn = "xplor::env::arithmetic";
    xplor::detail::require(options_.digits >= 1 && options_.digits <= 9, fn, "digits = ", options_.digits,
                           " is outside [1, 9]");
    xplor::detail::require(options_.terms >= 2 && options_.terms <= 8, fn, "terms = ", options_.terms,
                           " is outside [2, 8]");
    xplor::detail::require(options_.digits * options_.terms <= 18, fn,
                           "digits * terms = ", options_.digits * options_.terms,
                           " is over 18 (results could overflow)");
    xplor::detail::require(!options_.ops.empty(), fn, "ops is empty");
    for (char c : options_.ops)
      xplor::detail::require(c == '+' || c == '-' || c == '*' || c == '/', fn, "ops = '", options_.ops,
                             "' holds '", c, "', not one of + - * /");
  }

  /// Builds the environment of an id `math:Arithmetic-v0-<spec>`.
  static std::unique_ptr<environment> from_id(std::string_view id) {
    if (!id.starts_with(id_prefix) || id.size() < id_prefix.size() + 2 || id[id_prefix.size()] != '-')
      xplor::detail::fail("xplor::env::arithmetic::from_id", "id '", id, "' is not ", id_prefix,
                          "-<spec> (levels: easy, medium, hard, or e.g. d3-n2-ops+-*)");
    return std::make_unique<arithmetic>(arithmetic_spec(id.substr(id_prefix.size() + 1), id),
                                        std::string(id));
  }

  reset_result reset(std::uint64_t seed) override {
    philox_stream gen(seed, stream);
    std::int64_t lo = 1, hi = 9;
    if (options_.digits > 1) {
      lo = 1;
      for (int i = 1; i < options_.digits; ++i) lo *= 10;
      hi = lo * 10 - 1;
    }
    // With digits * terms <= 18 no draw overflows in practice; redraw (deterministically) if one did.
    for (int attempt = 0;; ++attempt) {
      xplor::detail::require(attempt < 64, "xplor::env::arithmetic::reset",
                             "no expression without overflow for seed ", seed);
      expression_.clear();
      for (int t = 0; t < options_.terms; ++t) {
        if (t > 0) {
          const auto k = detail::uniform_int(gen, 0, static_cast<std::int64_t>(options_.ops.size()) - 1);
          expression_ += ' ';
          expression_ += options_.ops[static_cast<std::size_t>(k)];
          expression_ += ' ';
        }
        expression_ += std::to_string(detail::uniform_int(gen, lo, hi));
      }
      const calc_result value = evaluate(expression_);
      if (value.ok) {
        answer_ = value.value.to_string();
        break;
      }
    }
    begin_episode();
    std::string obs = "Compute the exact value of ";
    obs += expression_;
    obs +=
        ". Standard precedence applies: * and / before + and -, left to right. Give the result as an integer "
        "or a fraction a/b, inside \\boxed{}, e.g. \\boxed{-7} or \\boxed{3/4}.";
    return {std::move(obs), info()};
  }

  std::unique_ptr<environment> clone() const override { return std::make_unique<arithmetic>(*this); }
  std::string id() const override { return id_; }

  const arithmetic_options& options() const { return options_; }
  /// The current episode's expression and exact answer ("n" or "n/d").
  const std::string& expression() const { return expression_; }
  const std::string& answer() const { return answer_; }

 private:
  std::string grade(std::string_view boxed) const override {
    return reward::answers_equivalent(boxed, answer_) ? "" : "not equivalent to the answer";
  }
  float correct_reward() const override { return options_.correct_reward; }
  float wrong_reward() const override { return options_.wrong_reward; }
  info_map episode_info() const override { return info(); }
  info_map info() const { return {{"answer", answer_}, {"expression", expression_}}; }

  arithmetic_options options_;
  std::string id_;
  std::string expression_;
  std::string answer_;
};

static_assert(environment_like<arithmetic>);

}  // namespace xplor::env
