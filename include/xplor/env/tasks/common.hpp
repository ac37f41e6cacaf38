// Helpers shared by the built-in tasks: uniform integers from Philox words, the parser of the
// "<family>:<Name>-v0-<spec>" id specs and the single-turn step result.
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "xplor/core/error.hpp"
#include "xplor/core/random.hpp"
#include "xplor/env/env.hpp"
#include "xplor/reward/verify.hpp"

namespace xplor::env {

namespace detail {

/// Uniform integer in [lo, hi] (hi - lo < 2^32) from 32-bit words of `gen`, by rejection of the
/// words at or above the largest multiple of the range size: exact and the same on every platform
/// (std::uniform_int_distribution is implementation-defined). Shared by the task headers.
inline std::int64_t uniform_int(philox_stream& gen, std::int64_t lo, std::int64_t hi) {
  xplor::detail::require(lo <= hi && static_cast<std::uint64_t>(hi - lo) < (std::uint64_t{1} << 32),
                         "xplor::env::detail::uniform_int", "bad range [", lo, ", ", hi, "]");
  const std::uint64_t n = static_cast<std::uint64_t>(hi - lo) + 1;
  const std::uint64_t words = std::uint64_t{1} << 32;
  const std::uint64_t limit = words - words % n;  // accept w < limit: limit is a multiple of n
  for (;;) {
    const std::uint64_t w = gen();
    if (w < limit) return lo + static_cast<std::int64_t>(w % n);
  }
}

/// The integer a whole string holds: optional surrounding whitespace, an optional sign and 1-18
/// ASCII digits; nullopt otherwise.
inline std::optional<std::int64_t> parse_plain_integer(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  std::size_t b = 0, e = s.size();
  while (b < e && space(s[b])) ++b;
  while (e > b && space(s[e - 1])) --e;
  s = s.substr(b, e - b);
  bool negative = false;
  if (!s.empty() && (s[0] == '+' || s[0] == '-')) {
    negative = s[0] == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 18) return std::nullopt;
  std::int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + (c - '0');
  }
  return negative ? -v : v;
}

/// One `key<value>` token of a task id's parameter list (see docs/env_tasks.md): "d3" is
/// {"d", "3"}.
struct id_param {
  std::string key = {};
  std::string value = {};
};

/// Splits a parameter list "d3-n2-ops+-*" into tokens at '-': each token is a run of lowercase
/// letters (the key) followed by its value; the key "ops" takes the whole rest of the list (its
/// value may hold '-'). Throws xplor::error naming `fn` and `id` for an empty or keyless token.
inline std::vector<id_param> split_id_params(std::string_view params, std::string_view fn,
                                             std::string_view id) {
  std::vector<id_param> out = {};
  while (!params.empty()) {
    std::size_t k = 0;
    while (k < params.size() && params[k] >= 'a' && params[k] <= 'z') ++k;
    id_param p;
    p.key = std::string(params.substr(0, k));
    std::size_t end = p.key == "ops" ? params.size() : params.find('-', k);
    if (end == std::string_view::npos) end = params.size();
    p.value = std::string(params.substr(k, end - k));
    if (p.key.empty() || p.value.empty())
      xplor::detail::fail(fn, "bad parameter '", params.substr(0, end), "' in id '", id,
                          "' (expected key<value> tokens separated by '-')");
    out.push_back(std::move(p));
    params.remove_prefix(end == params.size() ? end : end + 1);
  }
  return out;
}

/// The integer value of parameter `p`, required to lie in [lo, hi].
inline int id_param_int(const id_param& p, int lo, int hi, std::string_view fn, std::string_view id) {
  const std::optional<std::int64_t> v = parse_plain_integer(p.value);
  if (!v || *v < lo || *v > hi)
    xplor::detail::fail(fn, "parameter ", p.key, " = '", p.value, "' in id '", id, "' is not an integer in [",
                        lo, ", ", hi, "]");
  return static_cast<int>(*v);
}

/// The single-turn verdict shared by the one-step tasks: terminated, with the observation
/// "Correct." or "Incorrect." and info "correct" = "1"/"0".
inline step_result single_turn_result(bool correct, float reward, info_map info) {
  step_result r;
  r.observation = correct ? "Correct." : "Incorrect.";
  r.reward = reward;
  r.terminated = true;
  r.info = std::move(info);
  r.info["correct"] = correct ? "1" : "0";
  return r;
}

}  // namespace detail

/// A single-turn verifiable task: reset() poses a problem (derived classes call begin_episode()),
/// step() grades the content of the response's last \boxed{} once and ends the episode
/// (terminated) with correct_reward or wrong_reward; info holds episode_info(), "extracted" and,
/// when wrong, "error".
class single_turn_task : public environment {
 public:
  step_result step(std::string_view action) final {
    const std::string fn = "xplor::env::" + id() + "::step";
    xplor::detail::require(started_, fn, "step called before reset");
    xplor::detail::require(!done_, fn, "step called after the episode ended; call reset");
    done_ = true;
    info_map inf = episode_info();
    const std::optional<std::string> boxed = reward::extract_boxed(action);
    std::string why = missing_answer_text();
    if (boxed) {
      inf["extracted"] = *boxed;
      why = grade(*boxed);
    }
    const bool correct = why.empty();
    if (!correct) inf["error"] = why;
    return detail::single_turn_result(correct, correct ? correct_reward() : wrong_reward(), std::move(inf));
  }

 protected:
  void begin_episode() {
    started_ = true;
    done_ = false;
  }
  /// "" when `boxed` answers the current problem, else why not.
  virtual std::string grade(std::string_view boxed) const = 0;
  virtual info_map episode_info() const = 0;
  virtual float correct_reward() const = 0;
  virtual float wrong_reward() const = 0;
  virtual std::string missing_answer_text() const { return "no \\boxed{} answer in the response"; }

 private:
  bool started_ = false;
  bool done_ = false;
};

}  // namespace xplor::env
