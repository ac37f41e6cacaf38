// String tasks: reverse, or sort, a random lowercase string. Single-turn and verifiable; the
// difficulty is the string's length.
//
// Ids (docs/env_tasks.md): `text:Reverse-v0-<spec>` and `text:Sort-v0-<spec>`, <spec> a level or
// key<value> tokens:
//   easy = len5,  medium = len10,  hard = len20;   len<1..1000>. Example: `text:Sort-v0-len12`.
//
// Episode: reset(seed) draws `length` letters uniformly from 'a'..'z' (Philox, keyed by the seed).
// Reverse asks for the string backwards; Sort for its letters in ascending (alphabetical) order,
// repeated letters kept. The answer is the content of the last \boxed{} of the response with
// surrounding ASCII whitespace trimmed; it must equal the expected string exactly (case and inner
// spaces matter). Reward: `correct_reward` = +1 when equal, `wrong_reward` = 0 otherwise
// (wrong, missing or malformed); the step always terminates. info: "string", "answer"; after the
// step also "extracted" (when a box was found) and "correct" ("1"/"0").
#pragma once

#include <algorithm>
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
#include "xplor/reward/verify.hpp"

namespace xplor::env {

enum class string_op { reverse, sort };

struct string_task_options {
  string_op op = string_op::reverse;
  int length = 5;  // 1..1000
  float correct_reward = 1.0f;
  float wrong_reward = 0.0f;
};

/// The options of a level ("easy", "medium", "hard") or key<value> spec ("len12") for `op`.
inline string_task_options string_task_spec(string_op op, std::string_view spec, std::string_view id = {}) {
  constexpr const char* fn = "xplor::env::string_task_spec";
  string_task_options o;
  o.op = op;
  if (spec == "easy") return o;
  if (spec == "medium") {
    o.length = 10;
    return o;
  }
  if (spec == "hard") {
    o.length = 20;
    return o;
  }
  if (spec.empty()) xplor::detail::fail(fn, "empty spec in id '", id, "' (levels: easy, medium, hard)");
  for (const detail::id_param& p : detail::split_id_params(spec, fn, id)) {
    if (p.key == "len") {
      o.length = detail::id_param_int(p, 1, 1000, fn, id);
    } else {
      xplor::detail::fail(fn, "unknown parameter '", p.key, "' in id '", id,
                          "' (known: len; levels: easy, medium, hard)");
    }
  }
  return o;
}

class string_task final : public single_turn_task {
 public:
  static constexpr std::uint64_t stream = 0x537472696e67ull;  // "String"; + 1 for sort
  static constexpr std::string_view reverse_prefix = "text:Reverse-v0";
  static constexpr std::string_view sort_prefix = "text:Sort-v0";

  explicit string_task(string_task_options options = {}, std::string id = {})
      : options_(options), id_(std::move(id)) {
    xplor::detail::require(options_.length >= 1 && options_.length <= 1000, "xplor::env::string_task",
                           "length = ", options_.length, " is outside [1, 1000]");
    if (id_.empty()) {
      id_ = options_.op == string_op::reverse ? reverse_prefix : sort_prefix;
      id_ += "-easy";
    }
  }

  /// Builds the environment of an id `text:Reverse-v0-<spec>` or `text:Sort-v0-<spec>`.
  static std::unique_ptr<environment> from_id(std::string_view id) {
    for (const auto& [prefix, op] :
         {std::pair{reverse_prefix, string_op::reverse}, std::pair{sort_prefix, string_op::sort}})
      if (id.starts_with(prefix) && id.size() >= prefix.size() + 2 && id[prefix.size()] == '-')
        return std::make_unique<string_task>(string_task_spec(op, id.substr(prefix.size() + 1), id),
                                             std::string(id));
    xplor::detail::fail("xplor::env::string_task::from_id", "id '", id, "' is not ", reverse_prefix,
                        "-<spec> or ", sort_prefix, "-<spec> (levels: easy, medium, hard, or e.g. len12)");
  }

  reset_result reset(std::uint64_t seed) override {
    philox_stream gen(seed, stream + static_cast<std::uint64_t>(options_.op));  // reverse and sort differ
    string_.clear();
    for (int i = 0; i < options_.length; ++i)
      string_ += static_cast<char>('a' + detail::uniform_int(gen, 0, 25));
    answer_ = string_;
    if (options_.op == string_op::reverse) {
      std::reverse(answer_.begin(), answer_.end());
    } else {
      std::sort(answer_.begin(), answer_.end());
    }
    begin_episode();
    std::string obs =
        options_.op == string_op::reverse ? "Reverse the string \"" : "Sort the letters of the string \"";
    obs += string_;
    obs += options_.op == string_op::reverse ? "\" (write it backwards). "
                                             : "\" in alphabetical order (keep repeated letters). ";
    obs += "Put only the resulting string inside \\boxed{}, e.g. \\boxed{abc}.";
    return {std::move(obs), info()};
  }

  std::unique_ptr<environment> clone() const override { return std::make_unique<string_task>(*this); }
  std::string id() const override { return id_; }

  const string_task_options& options() const { return options_; }
  /// The current episode's string and expected answer.
  const std::string& text() const { return string_; }
  const std::string& answer() const { return answer_; }

 private:
  std::string grade(std::string_view boxed) const override {
    return reward::detail::trim(boxed) == answer_ ? "" : "not the expected string";
  }
  float correct_reward() const override { return options_.correct_reward; }
  float wrong_reward() const override { return options_.wrong_reward; }
  info_map episode_info() const override { return info(); }
  info_map info() const { return {{"string", string_}, {"answer", answer_}}; }

  string_task_options options_;
  std::string id_;
  std::string string_;
  std::string answer_;
};

static_assert(environment_like<string_task>);

}  // namespace xplor::env
